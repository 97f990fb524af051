/*
 * Ethernet II (+ up to two 802.1Q/802.1ad tags) / IPv4 / UDP parsing for the
 * raw frame sources (AF_PACKET now, AF_XDP / ef_vi later).
 *
 * Header-only and allocation-free; reads only frame[0:caplen).  Checksums are
 * not verified: NICs and veth hand up CHECKSUM_PARTIAL/UNNECESSARY frames whose
 * UDP checksum field is not final, and the kernel already checked real ones.
 */
#ifndef EFSDK_NETPARSE_H
#define EFSDK_NETPARSE_H

#include <stdint.h>
#include <string.h>

#include "frame_source.h"

#define EFSDK_ETH_HLEN 14
#define EFSDK_ETHERTYPE_IPV4 0x0800
#define EFSDK_ETHERTYPE_VLAN 0x8100 /* 802.1Q */
#define EFSDK_ETHERTYPE_QINQ 0x88A8 /* 802.1ad outer tag */
#define EFSDK_IPPROTO_UDP 17

/* Parse results. */
#define EFSDK_PARSE_OK 0
#define EFSDK_PARSE_NON_UDP 1   /* not IPv4, or IPv4 but not UDP */
#define EFSDK_PARSE_FRAGMENT 2  /* IPv4 fragment (MF set or offset != 0) */
#define EFSDK_PARSE_MALFORMED 3 /* inconsistent lengths / bad header */
#define EFSDK_PARSE_TRUNCATED 4 /* headers fine, payload cut by the capture length */

typedef struct efsdk_udp_view {
    uint32_t payload_off; /* offset of the UDP payload in the frame */
    uint32_t payload_len; /* bytes of payload present in the capture */
    uint32_t udp_len;     /* UDP payload length claimed by the headers */
    uint32_t src_addr, dst_addr; /* network byte order */
    uint16_t src_port, dst_port; /* host byte order */
    uint16_t vlan_tci;
    uint8_t vlan; /* an inline tag was present */
} efsdk_udp_view;

static inline uint16_t efsdk_be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

/*
 * frame[0:caplen) is what was captured, wire_len the length on the wire.
 * Fills *v and returns EFSDK_PARSE_*; a TRUNCATED frame has usable UDP
 * fields (payload_off != 0) only when its headers were all captured.  Header fields past caplen make the
 * frame TRUNCATED when wire_len says they exist, MALFORMED otherwise.
 */
static inline int efsdk_parse_udp(const uint8_t *frame, uint32_t caplen, uint32_t wire_len, efsdk_udp_view *v)
{
    uint32_t cut = caplen < wire_len ? EFSDK_PARSE_TRUNCATED : EFSDK_PARSE_MALFORMED;
    memset(v, 0, sizeof *v); /* payload_off stays 0 unless the UDP header was reached */
    if (caplen < EFSDK_ETH_HLEN)
        return cut;
    uint32_t off = 12;
    uint16_t et = efsdk_be16(frame + off);
    for (int tags = 0; (et == EFSDK_ETHERTYPE_VLAN || et == EFSDK_ETHERTYPE_QINQ) && tags < 2; tags++) {
        if (caplen < off + 6)
            return cut;
        v->vlan = 1;
        v->vlan_tci = efsdk_be16(frame + off + 2); /* the innermost tag wins */
        off += 4;
        et = efsdk_be16(frame + off);
    }
    off += 2;
    if (et != EFSDK_ETHERTYPE_IPV4)
        return EFSDK_PARSE_NON_UDP;
    if (caplen < off + 20)
        return cut;
    const uint8_t *ip = frame + off;
    uint32_t ihl = (uint32_t)(ip[0] & 0x0F) * 4;
    if ((ip[0] >> 4) != 4 || ihl < 20)
        return EFSDK_PARSE_MALFORMED;
    if (ip[9] != EFSDK_IPPROTO_UDP)
        return EFSDK_PARSE_NON_UDP;
    if (efsdk_be16(ip + 6) & 0x3FFF) /* MF flag or fragment offset */
        return EFSDK_PARSE_FRAGMENT;
    uint32_t tot = efsdk_be16(ip + 2);
    if (tot < ihl + 8)
        return EFSDK_PARSE_MALFORMED;
    if (off + tot > wire_len)
        return EFSDK_PARSE_MALFORMED; /* claims more than arrived (padding is the other way round) */
    if (caplen < off + ihl + 8)
        return cut;
    const uint8_t *udp = ip + ihl;
    uint32_t ulen = efsdk_be16(udp + 4);
    if (ulen < 8 || ulen > tot - ihl)
        return EFSDK_PARSE_MALFORMED;
    memcpy(&v->src_addr, ip + 12, 4);
    memcpy(&v->dst_addr, ip + 16, 4);
    v->src_port = efsdk_be16(udp);
    v->dst_port = efsdk_be16(udp + 2);
    v->payload_off = off + ihl + 8;
    v->udp_len = ulen - 8;
    if (v->payload_off + v->udp_len > caplen) {
        v->payload_len = caplen - v->payload_off;
        return EFSDK_PARSE_TRUNCATED;
    }
    v->payload_len = v->udp_len;
    return EFSDK_PARSE_OK;
}

/*
 * Count a parse result in a source's stats (non_udp, fragments, truncated,
 * malformed); 1 when the frame is delivered: parsed, or truncated with its
 * payload located and the caller keeping truncated datagrams.
 */
static inline int efsdk_count_parse(int rc, const efsdk_udp_view *v, efsdk_source_stats *st, int keep_truncated)
{
    switch (rc) {
    case EFSDK_PARSE_OK:
        return 1;
    case EFSDK_PARSE_NON_UDP:
        st->non_udp++;
        return 0;
    case EFSDK_PARSE_FRAGMENT:
        st->fragments++;
        return 0;
    case EFSDK_PARSE_TRUNCATED:
        st->truncated++;
        return keep_truncated && v->payload_off != 0;
    default:
        st->malformed++;
        return 0;
    }
}

#endif /* EFSDK_NETPARSE_H */
