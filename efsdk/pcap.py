"""Classic pcap files: a nanosecond writer, a reader, and Ethernet/IPv4/UDP frames.

The writer always produces the nanosecond variant of classic pcap (magic
``0xa1b23c4d``, little-endian), because ITCH timestamps are nanoseconds and a
microsecond file would throw that resolution away.  The reader accepts classic
pcap in microseconds (``0xa1b2c3d4``) or nanoseconds, in either byte order, and
always reports timestamps in nanoseconds.  It also reads pcapng (the default
of Wireshark, dumpcap and recent tcpdump), told apart by the magic, through the
same API: see :class:`PcapReader`.

:func:`udp_frame` builds Ethernet II / IPv4 / UDP frames with correct IPv4 and
UDP checksums (multicast destinations get the RFC 1112 MAC ``01:00:5e`` + low 23
bits of the group); :func:`write_moldudp64_pcap` writes a MoldUDP64 ITCH feed
with packet times taken from the ITCH timestamps.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, NamedTuple

from efsdk.resource import Resource
from efsdk.errors import ConfigError, ProtocolError
from efsdk.moldudp64.codec import iter_blocks

__all__ = [
    "DEFAULT_SOURCE_IP",
    "DEFAULT_TRADING_DATE",
    "LINKTYPE_ETHERNET",
    "PCAP_MAGIC_NS",
    "PCAP_MAGIC_US",
    "PCAPNG_MAGIC",
    "PcapPacket",
    "PcapReader",
    "PcapSummary",
    "PcapWriter",
    "PcapngInterface",
    "UdpDatagram",
    "UdpFrameBuilder",
    "internet_checksum",
    "midnight_epoch_ns",
    "multicast_mac",
    "parse_udp_frame",
    "read_pcap",
    "udp_frame",
    "write_moldudp64_pcap",
]

PCAP_MAGIC_US = 0xA1B2C3D4  # classic pcap, microsecond timestamps
PCAP_MAGIC_NS = 0xA1B23C4D  # classic pcap, nanosecond timestamps
PCAPNG_MAGIC = 0x0A0D0D0A  # pcapng Section Header Block type (same in both byte orders)
LINKTYPE_ETHERNET = 1
PCAP_VERSION = (2, 4)
# 262,144 is tcpdump's default snap length; nothing we write comes close.
DEFAULT_SNAPLEN = 262_144

_FILE_HEADER_LE = struct.Struct("<IHHiIII")  # magic, major, minor, thiszone, sigfigs, snaplen, linktype
_RECORD_LE = struct.Struct("<IIII")  # ts_sec, ts_frac, incl_len, orig_len
_RECORD_BE = struct.Struct(">IIII")

# pcapng (draft-ietf-opsawg-pcapng): block types, option codes, limits.
PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D
_BT_IDB = 0x00000001  # Interface Description Block
_BT_PB = 0x00000002  # Packet Block (obsolete, still read)
_BT_SPB = 0x00000003  # Simple Packet Block
_BT_EPB = 0x00000006  # Enhanced Packet Block
_OPT_ENDOFOPT = 0
_OPT_IF_TSRESOL = 9
_OPT_IF_TSOFFSET = 14
# Wireshark refuses blocks over 16 MiB; a larger length is corruption, and
# reading it would allocate that much before noticing the file is shorter.
_PCAPNG_MAX_BLOCK = 64 << 20
_SHB_TYPE = PCAPNG_MAGIC.to_bytes(4, "little")  # a palindrome: the same in both byte orders

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_VLAN = 0x8100
IPPROTO_UDP = 17
_ETH = struct.Struct("!6s6sH")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")
_PSEUDO = struct.Struct("!4s4sBBH")  # UDP checksum pseudo-header
_MAX_UDP_PAYLOAD = 0xFFFF - 20 - 8  # IPv4 total length is a u16

# The benchmarking range (RFC 2544, 198.18.0.0/15): never a real host's address,
# so a replayed capture cannot be mistaken for production traffic.
DEFAULT_SOURCE_IP = "198.18.0.1"
# Locally administered unicast MAC (bit 1 of the first octet set, bit 0 clear).
DEFAULT_SOURCE_MAC = bytes.fromhex("020000000001")
# Market-data multicast is scoped to a few router hops; 32 leaves ample margin.
DEFAULT_TTL = 32
# A fixed date so generated captures are byte-identical from run to run.
DEFAULT_TRADING_DATE = _dt.date(2024, 1, 30)
# ITCH timestamps are nanoseconds since midnight in New York.
EXCHANGE_TZ = "America/New_York"

_NS_PER_S = 1_000_000_000


# ---------------------------------------------------------------------------
# Checksums and frames
# ---------------------------------------------------------------------------


def internet_checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """RFC 1071 one's-complement checksum of ``data`` (odd length padded with 0).

    Uses the identity that the one's-complement sum of 16-bit words equals the
    big integer formed by the bytes, modulo 0xFFFF (since 2**16 == 1 mod 0xFFFF),
    which lets ``int.from_bytes`` do the whole sum in C.  ``initial`` adds an
    already-summed prefix (e.g. a pseudo-header).
    """
    if len(data) & 1:
        data = bytes(data) + b"\x00"
    total = int.from_bytes(data, "big") + initial
    folded = total % 0xFFFF
    if folded == 0 and total != 0:
        folded = 0xFFFF  # one's-complement sum of non-zero data is never +0
    return ~folded & 0xFFFF


def multicast_mac(group: str | ipaddress.IPv4Address) -> bytes:
    """RFC 1112 Ethernet address of an IPv4 multicast group: 01:00:5e + low 23 bits."""
    addr = ipaddress.IPv4Address(group)
    if not addr.is_multicast:
        raise ValueError(f"{addr} is not an IPv4 multicast group")
    low23 = int(addr) & 0x7FFFFF
    return b"\x01\x00\x5e" + low23.to_bytes(3, "big")


class UdpFrameBuilder:
    """Ethernet II / IPv4 / UDP framing for one flow, with the constant parts precomputed.

    ``build(payload, ip_id)`` returns a complete frame with correct IPv4 header
    and UDP checksums.  ``dst_mac`` defaults to the multicast MAC of ``dst_ip``;
    unicast destinations must give it.  ``src_port`` 0 means "use ``dst_port``",
    which is what most feed publishers do.
    """

    def __init__(
        self,
        dst_ip: str,
        dst_port: int,
        *,
        src_ip: str = DEFAULT_SOURCE_IP,
        src_port: int = 0,
        dst_mac: bytes | None = None,
        src_mac: bytes = DEFAULT_SOURCE_MAC,
        ttl: int = DEFAULT_TTL,
    ) -> None:
        dst_addr = ipaddress.IPv4Address(dst_ip)
        if dst_mac is None:
            if not dst_addr.is_multicast:
                raise ValueError(f"dst_mac is required for unicast destination {dst_addr}")
            dst_mac = multicast_mac(dst_addr)
        if len(dst_mac) != 6 or len(src_mac) != 6:
            raise ValueError("MAC addresses are 6 bytes")
        if not (0 < dst_port <= 0xFFFF and 0 <= src_port <= 0xFFFF):
            raise ValueError(f"bad UDP ports {src_port} -> {dst_port}")
        self.src = ipaddress.IPv4Address(src_ip).packed
        self.dst = dst_addr.packed
        self.dst_port = dst_port
        self.src_port = src_port or dst_port
        self.ttl = ttl
        self._eth = _ETH.pack(dst_mac, src_mac, ETHERTYPE_IPV4)
        # Pseudo-header without the length (added per packet): src, dst, 0, proto.
        self._pseudo_sum = int.from_bytes(_PSEUDO.pack(self.src, self.dst, 0, IPPROTO_UDP, 0), "big")

    def build(self, payload: bytes, ip_id: int = 0) -> bytes:
        """Frame ``payload``; raises :class:`ValueError` if it cannot fit one IPv4 datagram."""
        if len(payload) > _MAX_UDP_PAYLOAD:
            raise ValueError(f"UDP payload of {len(payload)} bytes does not fit in an IPv4 datagram")
        udp_len = 8 + len(payload)
        udp_hdr = _UDP.pack(self.src_port, self.dst_port, udp_len, 0)
        udp_csum = internet_checksum(udp_hdr + payload, self._pseudo_sum + udp_len)
        if udp_csum == 0:
            udp_csum = 0xFFFF  # RFC 768: a computed 0 is sent as all ones (0 means "no checksum")
        # Version 4, IHL 5 words; DSCP 0; no fragmentation flags (multicast is not PMTU-probed).
        ip_hdr = _IPV4.pack(0x45, 0, 20 + udp_len, ip_id & 0xFFFF, 0, self.ttl, IPPROTO_UDP, 0, self.src, self.dst)
        ip_csum = internet_checksum(ip_hdr)
        return b"".join(
            (
                self._eth,
                ip_hdr[:10],
                ip_csum.to_bytes(2, "big"),
                ip_hdr[12:],
                _UDP.pack(self.src_port, self.dst_port, udp_len, udp_csum),
                payload,
            )
        )


def udp_frame(
    payload: bytes,
    dst_ip: str,
    dst_port: int,
    *,
    src_ip: str = DEFAULT_SOURCE_IP,
    src_port: int = 0,
    dst_mac: bytes | None = None,
    src_mac: bytes = DEFAULT_SOURCE_MAC,
    ttl: int = DEFAULT_TTL,
    ip_id: int = 0,
) -> bytes:
    """Build one Ethernet II / IPv4 / UDP frame around ``payload`` (see :class:`UdpFrameBuilder`)."""
    builder = UdpFrameBuilder(
        dst_ip, dst_port, src_ip=src_ip, src_port=src_port, dst_mac=dst_mac, src_mac=src_mac, ttl=ttl
    )
    return builder.build(payload, ip_id)


class UdpDatagram(NamedTuple):
    """A UDP datagram found in an Ethernet frame."""

    src_ip: str
    dst_ip: str
    src_port: int
    dst_port: int
    payload: bytes


def parse_udp_frame(frame: bytes) -> UdpDatagram | None:
    """Extract the UDP datagram from an Ethernet II (optionally one 802.1Q tag) / IPv4 frame.

    Returns ``None`` for anything that is not an unfragmented IPv4/UDP packet.
    Checksums are not verified (capture NICs often offload them).
    """
    if len(frame) < 14:
        return None
    ethertype = int.from_bytes(frame[12:14], "big")
    off = 14
    if ethertype == ETHERTYPE_VLAN:
        if len(frame) < 18:
            return None
        ethertype = int.from_bytes(frame[16:18], "big")
        off = 18
    if ethertype != ETHERTYPE_IPV4 or len(frame) < off + 20:
        return None
    vihl = frame[off]
    ihl = (vihl & 0x0F) * 4
    if vihl >> 4 != 4 or ihl < 20 or frame[off + 9] != IPPROTO_UDP:
        return None
    flags_frag = int.from_bytes(frame[off + 6 : off + 8], "big")
    if flags_frag & 0x3FFF:  # more-fragments flag or a fragment offset
        return None
    total_len = int.from_bytes(frame[off + 2 : off + 4], "big")
    src = ipaddress.IPv4Address(frame[off + 12 : off + 16])
    dst = ipaddress.IPv4Address(frame[off + 16 : off + 20])
    u = off + ihl
    if len(frame) < u + 8:
        return None
    sport, dport, ulen, _ = _UDP.unpack_from(frame, u)
    end = min(u + ulen, off + total_len, len(frame))
    return UdpDatagram(str(src), str(dst), sport, dport, bytes(frame[u + 8 : end]))


# ---------------------------------------------------------------------------
# Writer
# ---------------------------------------------------------------------------


class PcapWriter(Resource):
    """Write a classic nanosecond pcap (little-endian, magic ``0xa1b23c4d``).

    Use as a context manager; ``close()`` is safe to call twice.  Pass a path
    (the file is created) or a binary file object (left open on close).
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | BinaryIO,
        *,
        linktype: int = LINKTYPE_ETHERNET,
        snaplen: int = DEFAULT_SNAPLEN,
    ) -> None:
        if isinstance(target, (str, os.PathLike)):
            self._file: BinaryIO = open(target, "wb")  # noqa: SIM115 - closed in close()
            self._owns = True
        else:
            self._file = target
            self._owns = False
        self.snaplen = snaplen
        self.linktype = linktype
        self.packets = 0
        self.bytes_written = _FILE_HEADER_LE.size
        self._opened()
        self._write = self._file.write
        self._pack_record = _RECORD_LE.pack
        self._write(_FILE_HEADER_LE.pack(PCAP_MAGIC_NS, *PCAP_VERSION, 0, 0, snaplen, linktype))

    def write(self, ts_ns: int, frame: bytes, orig_len: int | None = None) -> None:
        """Append one record; ``ts_ns`` is nanoseconds since the Unix epoch.

        Frames longer than the snap length are truncated, as a capture would be.
        """
        if ts_ns < 0:
            raise ValueError(f"pcap timestamp {ts_ns} is before the epoch")
        wire_len = len(frame) if orig_len is None else orig_len
        if len(frame) > self.snaplen:
            frame = frame[: self.snaplen]
        sec, ns = divmod(ts_ns, _NS_PER_S)
        self._write(self._pack_record(sec, ns, len(frame), wire_len))
        self._write(frame)
        self.packets += 1
        self.bytes_written += 16 + len(frame)

    def _release(self) -> None:
        """Close the file if this writer opened it, else flush it."""
        if self._owns:
            self._file.close()
        else:
            self._file.flush()


    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<PcapWriter {state} linktype={self.linktype} packets={self.packets}>"


# ---------------------------------------------------------------------------
# Reader
# ---------------------------------------------------------------------------


class PcapPacket(NamedTuple):
    """One pcap record: capture time in ns since the epoch, captured bytes, wire length."""

    ts_ns: int
    data: bytes
    orig_len: int


class PcapngInterface(NamedTuple):
    """One pcapng Interface Description Block, with its timestamp conversion.

    A packet timestamp ``t`` (in units of ``10**-n`` or ``2**-n`` s, per
    ``if_tsresol``; microseconds by default) is ``t * ts_mul // ts_div +
    offset_ns`` nanoseconds since the epoch (``if_tsoffset`` seconds, default 0).
    Resolutions finer than a nanosecond are truncated to it.
    """

    linktype: int
    snaplen: int
    ts_mul: int
    ts_div: int
    offset_ns: int


def _tsresol(value: int) -> tuple[int, int]:
    """``(mul, div)`` turning ticks of ``if_tsresol`` ``value`` into ns."""
    exp = value & 0x7F
    if value & 0x80:  # 2**-exp seconds
        return _NS_PER_S, 1 << exp
    if exp <= 9:
        return 10 ** (9 - exp), 1
    return 1, 10 ** (exp - 9)


class PcapReader(Resource):
    """Read classic pcap (µs or ns timestamps, either byte order) or pcapng.

    The format is told by the magic, so callers need not care.  Iterating
    yields :class:`PcapPacket` with timestamps converted to nanoseconds;
    ``format`` is ``"pcap"`` or ``"pcapng"``.  Raises :class:`ProtocolError`
    for an unknown magic, malformed pcapng (with the byte offset), or a file
    truncated inside a record or block.

    pcapng: every section (Section Header Block, version 1.x, either byte
    order; one file may hold several) and its Interface Description Blocks are
    honoured: ``if_tsresol`` (decimal or binary; µs when absent) and
    ``if_tsoffset`` apply per interface.  Enhanced Packet Blocks, the obsolete
    Packet Blocks and Simple Packet Blocks are packets; a Simple Packet Block
    has no timestamp, so it gets the previous packet's ``ts_ns`` (0 if it is the
    first).  Every other block (name resolution, interface statistics, custom,
    decryption secrets, ...) is skipped by its length.  ``linktype`` and
    ``snaplen`` are those of the first interface (Ethernet if the file
    declares none, which then has no packets either); a packet on an interface
    of another link type is a :class:`ProtocolError`, since the records of one
    reader all share ``linktype``.  ``interfaces`` lists the current section's.
    """

    def __init__(self, source: str | os.PathLike[str] | BinaryIO) -> None:
        if isinstance(source, (str, os.PathLike)):
            self._file: BinaryIO = open(source, "rb")  # noqa: SIM115 - closed in close()
            self._owns = True
            self.name = os.fspath(source)
        else:
            self._file = source
            self._owns = False
            self.name = getattr(source, "name", "<stream>")
        if self._owns:  # a borrowed stream is the caller's to close: nothing to leak here
            self._opened()
        try:
            head = self._file.read(_FILE_HEADER_LE.size)
            if len(head) >= 4 and int.from_bytes(head[:4], "little") == PCAPNG_MAGIC:
                self._start_pcapng(head)
            else:
                self._parse_header(head)
        except BaseException:
            self.close()
            raise

    def _parse_header(self, head: bytes) -> None:
        if len(head) < _FILE_HEADER_LE.size:
            raise ProtocolError(f"{self.name}: {len(head)} bytes is too short for a pcap file header")
        magic_le = int.from_bytes(head[:4], "little")
        magic_be = int.from_bytes(head[:4], "big")
        if magic_le in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            order, magic = "<", magic_le
        elif magic_be in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            order, magic = ">", magic_be
        else:
            raise ProtocolError(
                f"{self.name}: unknown pcap magic 0x{magic_le:08x} (neither classic pcap nor pcapng)"
            )
        _, major, minor, _zone, _sigfigs, snaplen, linktype = struct.unpack(order + "IHHiIII", head)
        self.format = "pcap"
        self.byte_order = "little" if order == "<" else "big"
        self.nanosecond = magic == PCAP_MAGIC_NS
        self.version = (major, minor)
        self.snaplen = snaplen
        # The upper 16 bits of the link-type field may carry FCS information.
        self.linktype = linktype & 0xFFFF
        self._record = _RECORD_LE if order == "<" else _RECORD_BE
        self._frac_to_ns = 1 if self.nanosecond else 1000

    def __iter__(self) -> Iterator[PcapPacket]:
        if self.format == "pcapng":
            return self._iter_pcapng()
        return self._iter_classic()

    def _iter_classic(self) -> Iterator[PcapPacket]:
        read = self._file.read
        unpack = self._record.unpack
        mult = self._frac_to_ns
        index = 0
        while True:
            rec = read(16)
            if not rec:
                return
            if len(rec) < 16:
                raise ProtocolError(f"{self.name}: truncated record header after packet {index}")
            sec, frac, incl, orig = unpack(rec)
            data = read(incl)
            if len(data) < incl:
                raise ProtocolError(
                    f"{self.name}: packet {index} truncated ({len(data)} of {incl} bytes present)"
                )
            yield PcapPacket(sec * _NS_PER_S + frac * mult, data, orig)
            index += 1

    # -- pcapng ---------------------------------------------------------------

    def _start_pcapng(self, head: bytes) -> None:
        self.format = "pcapng"
        self.nanosecond = False
        self.linktype: int | None = None  # set before __init__ returns
        self.snaplen = 0
        self.interfaces: list[PcapngInterface] = []
        self._offset = 0  # of the next block
        self._packets = 0
        self._last_ts = 0
        self._read_shb(head)
        self.byte_order = "little" if self._order == "<" else "big"
        self.version = self._version
        # Read up to the first interface, so linktype and snaplen are known now.
        while self.linktype is None:
            block = self._next_block()
            if block is None:
                self.linktype = LINKTYPE_ETHERNET
                break
            btype, body = block
            if btype == _BT_IDB:
                self._add_interface(body, self._offset - len(body) - 12)
                self.linktype, self.snaplen = self.interfaces[0].linktype, self.interfaces[0].snaplen
                mul, div = self.interfaces[0].ts_mul, self.interfaces[0].ts_div
                self.nanosecond = mul < 1000 * div  # ticks finer than a microsecond
            elif btype in (_BT_EPB, _BT_PB, _BT_SPB):
                raise ProtocolError(
                    f"{self.name}: pcapng packet block at offset {self._offset - len(body) - 12} "
                    "before any Interface Description Block"
                )
            # a new section (already parsed by _next_block) or any other block: go on

    def _fail(self, offset: int, what: str) -> ProtocolError:
        return ProtocolError(f"{self.name}: malformed pcapng at offset {offset}: {what}")

    def _read_shb(self, head: bytes) -> None:
        """Parse a Section Header Block whose first ``len(head)`` bytes were read (>= 0)."""
        at = self._offset
        if len(head) < 12:
            head += self._file.read(12 - len(head))
            if len(head) < 12:
                raise ProtocolError(
                    f"{self.name}: truncated pcapng Section Header Block at offset {at} "
                    f"({len(head)} of at least 28 bytes present)"
                )
        bom = head[8:12]
        if bom == PCAPNG_BYTE_ORDER_MAGIC.to_bytes(4, "little"):
            order = "<"
        elif bom == PCAPNG_BYTE_ORDER_MAGIC.to_bytes(4, "big"):
            order = ">"
        else:
            raise self._fail(at, f"bad byte-order magic 0x{bom.hex()} in the Section Header Block")
        (length,) = struct.unpack_from(order + "I", head, 4)
        if length < 28 or length % 4 or length > _PCAPNG_MAX_BLOCK:
            raise self._fail(at, f"Section Header Block length {length}")
        if len(head) < length:
            rest = self._file.read(length - len(head))
            head += rest
            if len(head) < length:
                raise ProtocolError(
                    f"{self.name}: truncated pcapng Section Header Block at offset {at} "
                    f"({len(head)} of {length} bytes present)"
                )
        major, minor = struct.unpack_from(order + "HH", head, 12)
        if major != 1:
            raise self._fail(at, f"pcapng version {major}.{minor} (only 1.x is defined)")
        (trailer,) = struct.unpack_from(order + "I", head, length - 4)
        if trailer != length:
            raise self._fail(at, f"block lengths {length} and {trailer} differ")
        self._order = order
        self._u32 = struct.Struct(order + "I").unpack_from
        self._hdr = struct.Struct(order + "II").unpack
        self._epb = struct.Struct(order + "IIIII").unpack_from
        self._pb = struct.Struct(order + "HHIIII").unpack_from
        self._version = (major, minor)
        self.interfaces = []  # interface ids restart with each section
        self._offset = at + length

    def _next_block(self) -> tuple[int, bytes] | None:
        """``(type, body)`` of the next block (body: after the length, before the trailer), or ``None`` at EOF.

        A Section Header Block is parsed here (its byte order applies from
        then on) and returned with an empty body.
        """
        at = self._offset
        head = self._file.read(8)
        if not head:
            return None
        if head[:4] == _SHB_TYPE or len(head) < 8:
            self._read_head(at, head)
            return PCAPNG_MAGIC, b""
        btype, length = self._hdr(head)
        return btype, self._read_rest(at, btype, length)[:-4]

    def _read_head(self, at: int, head: bytes) -> None:
        """A block whose 8-byte head is short (truncation) or is a Section Header Block."""
        if head[:4] == _SHB_TYPE:
            self._read_shb(head)
            return
        raise ProtocolError(
            f"{self.name}: truncated pcapng block header at offset {at} after packet {self._packets}"
        )

    def _read_rest(self, at: int, btype: int, length: int) -> bytes:
        """The block after its 8-byte head, trailer included (``length - 8`` bytes), checked."""
        if length < 12 or length % 4 or length > _PCAPNG_MAX_BLOCK:
            raise self._fail(at, f"block type 0x{btype:08x} with length {length}")
        rest = self._file.read(length - 8)
        if len(rest) < length - 8:
            raise ProtocolError(
                f"{self.name}: pcapng block at offset {at} truncated "
                f"({len(rest) + 8} of {length} bytes present) after packet {self._packets}"
            )
        if self._u32(rest, length - 12)[0] != length:
            raise self._fail(at, f"block lengths {length} and {self._u32(rest, length - 12)[0]} differ")
        self._offset = at + length
        return rest

    def _add_interface(self, body: bytes, at: int) -> None:
        if len(body) < 8:
            raise self._fail(at, "Interface Description Block shorter than 20 bytes")
        order = self._order
        linktype, _reserved, snaplen = struct.unpack_from(order + "HHI", body, 0)
        mul, div, offset_s = 1000, 1, 0  # microseconds unless if_tsresol says otherwise
        pos, end = 8, len(body)
        while pos + 4 <= end:
            code, olen = struct.unpack_from(order + "HH", body, pos)
            if code == _OPT_ENDOFOPT:
                break
            value = body[pos + 4 : pos + 4 + olen]
            if len(value) < olen:
                raise self._fail(at, f"interface option {code} of {olen} bytes overruns the block")
            if code == _OPT_IF_TSRESOL:
                if olen != 1:
                    raise self._fail(at, f"if_tsresol of {olen} bytes (must be 1)")
                mul, div = _tsresol(value[0])
            elif code == _OPT_IF_TSOFFSET:
                if olen != 8:
                    raise self._fail(at, f"if_tsoffset of {olen} bytes (must be 8)")
                (offset_s,) = struct.unpack(order + "q", value)
            pos += 4 + ((olen + 3) & ~3)
        self.interfaces.append(PcapngInterface(linktype, snaplen, mul, div, offset_s * _NS_PER_S))

    def _interface(self, iface_id: int, at: int) -> PcapngInterface:
        try:
            iface = self.interfaces[iface_id]
        except IndexError:
            raise self._fail(
                at, f"packet on interface {iface_id}, but the section declares {len(self.interfaces)}"
            ) from None
        if iface.linktype != self.linktype:
            raise ProtocolError(
                f"{self.name}: pcapng packet at offset {at} on interface {iface_id} with link type "
                f"{iface.linktype}, but the capture's first interface has {self.linktype}; one reader "
                "reads one link type (split it with: editcap or tshark -Y frame.interface_id==N)"
            )
        return iface

    def _iter_pcapng(self) -> Iterator[PcapPacket]:
        read = self._file.read
        read_rest = self._read_rest
        while True:  # once per section (byte order) and per new interface
            hdr, epb, interfaces = self._hdr, self._epb, self.interfaces
            while True:  # once per block
                at = self._offset
                head = read(8)
                if len(head) < 8 or head[:4] == _SHB_TYPE:
                    if not head:
                        return
                    self._read_head(at, head)
                    break
                btype, length = hdr(head)
                rest = read_rest(at, btype, length)  # body + trailer
                if btype == _BT_EPB or btype == _BT_PB:
                    if length < 32:
                        raise self._fail(at, f"packet block of {length} bytes")
                    if btype == _BT_EPB:
                        iface_id, hi, lo, caplen, orig = epb(rest, 0)
                    else:
                        iface_id, _drops, hi, lo, caplen, orig = self._pb(rest, 0)
                    if caplen > length - 32:
                        raise self._fail(at, f"captured length {caplen} overruns the block")
                    iface = interfaces[iface_id] if iface_id < len(interfaces) else None
                    if iface is None or iface.linktype != self.linktype:
                        iface = self._interface(iface_id, at)  # raises
                    ts = ((hi << 32) | lo) * iface.ts_mul // iface.ts_div + iface.offset_ns
                    self._last_ts = ts
                    self._packets += 1
                    yield PcapPacket(ts, rest[20 : 20 + caplen], orig)
                elif btype == _BT_SPB:
                    if length < 16:
                        raise self._fail(at, "Simple Packet Block shorter than 16 bytes")
                    snaplen = self._interface(0, at).snaplen
                    (orig,) = self._u32(rest, 0)
                    caplen = min(orig, snaplen) if snaplen else orig  # the SPB has no captured length
                    if caplen > length - 16:
                        raise self._fail(at, f"Simple Packet Block of {length} bytes for {caplen} captured")
                    self._packets += 1
                    yield PcapPacket(self._last_ts, rest[4 : 4 + caplen], orig)
                elif btype == _BT_IDB:
                    self._add_interface(rest[:-4], at)
                # anything else: skipped by its length

    def _release(self) -> None:
        """Close the file if this reader opened it."""
        if self._owns and not self._file.closed:
            self._file.close()


    def __repr__(self) -> str:
        fmt = getattr(self, "format", "pcap")
        res = "ns" if getattr(self, "nanosecond", False) else "us"
        return f"<PcapReader {self.name!r} {fmt} {res} linktype={getattr(self, 'linktype', '?')}>"


def read_pcap(source: str | os.PathLike[str] | BinaryIO) -> Iterator[PcapPacket]:
    """Iterate over the packets of a classic pcap or pcapng file (timestamps in ns)."""
    with PcapReader(source) as reader:
        yield from reader


# ---------------------------------------------------------------------------
# MoldUDP64 feed captures
# ---------------------------------------------------------------------------


def midnight_epoch_ns(date: _dt.date, tz: str = EXCHANGE_TZ) -> int:
    """Nanoseconds since the Unix epoch of local midnight of ``date`` in ``tz``.

    Raises :class:`ConfigError` if the system has no time-zone database.
    """
    try:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    except ImportError as exc:  # pragma: no cover - Python < 3.9
        raise ConfigError("zoneinfo is unavailable; pass epoch_midnight_ns explicitly") from exc
    try:
        zone = ZoneInfo(tz)
    except ZoneInfoNotFoundError as exc:
        raise ConfigError(f"time zone {tz!r} not found; install tzdata or pass epoch_midnight_ns") from exc
    midnight = _dt.datetime(date.year, date.month, date.day, tzinfo=zone)
    return int(midnight.timestamp()) * _NS_PER_S


@dataclass(frozen=True)
class PcapSummary:
    """What :func:`write_moldudp64_pcap` wrote."""

    path: str
    packets: int
    messages: int
    bytes: int
    first_ts_ns: int
    last_ts_ns: int


# ITCH messages start: type 1, locate 2, tracking 2, timestamp 6.
_ITCH_TS_OFFSET = 5
_ITCH_TS_END = 11


def write_moldudp64_pcap(
    path: str | os.PathLike[str],
    packets: Iterable[bytes],
    group: str,
    port: int,
    *,
    src_ip: str = DEFAULT_SOURCE_IP,
    src_port: int = 0,
    trading_date: _dt.date = DEFAULT_TRADING_DATE,
    epoch_midnight_ns: int | None = None,
) -> PcapSummary:
    """Write MoldUDP64 packets carrying ITCH as UDP multicast frames in a ns pcap.

    Each packet is stamped with midnight of ``trading_date`` (New York time, or
    ``epoch_midnight_ns`` if given) plus the ITCH timestamp of its *last*
    message, since a publisher cannot send a packet before its last message
    exists.  Packets without messages (heartbeats, end of session) keep the
    previous packet's time; times never go backwards.  IPv4 ids count up.
    """
    base = midnight_epoch_ns(trading_date) if epoch_midnight_ns is None else epoch_midnight_ns
    builder = UdpFrameBuilder(group, port, src_ip=src_ip, src_port=src_port)
    build = builder.build
    ts = base
    first_ts: int | None = None
    n_msgs = 0
    ip_id = 0
    with PcapWriter(path) as writer:
        write = writer.write
        for packet in packets:
            blocks = iter_blocks(packet)  # validates the packet before it goes on the wire
            last = b""
            for last in blocks:
                n_msgs += 1
            if len(last) >= _ITCH_TS_END:
                msg_ts = base + int.from_bytes(last[_ITCH_TS_OFFSET:_ITCH_TS_END], "big")
                if msg_ts > ts:
                    ts = msg_ts
            if first_ts is None:
                first_ts = ts
            write(ts, build(packet, ip_id))
            ip_id = (ip_id + 1) & 0xFFFF
        return PcapSummary(os.fspath(path), writer.packets, n_msgs, writer.bytes_written, first_ts or base, ts)
