"""MoldUDP64: packet codec (this package's one copy of the wire format).

The session layer (sequence tracking, gaps, re-requests, A/B arbitration),
publisher and request server build on :mod:`efsdk.moldudp64.codec`.
"""

from efsdk.moldudp64.codec import (
    DEFAULT_MAX_PAYLOAD,
    END_OF_SESSION_COUNT,
    HEADER_SIZE,
    HEARTBEAT_COUNT,
    PacketHeader,
    iter_blocks,
    pack_end_of_session,
    pack_heartbeat,
    pack_packet,
    pack_request,
    packetize,
    unpack_header,
    unpack_packet,
)
from efsdk.moldudp64.publisher import Impairment, MessageHistory, MoldPublisher
from efsdk.moldudp64.request_server import MoldRequestServer
from efsdk.moldudp64.rerequest import MoldRerequester
from efsdk.moldudp64.session import MoldSession, Request, RetryPolicy, SessionStats

__all__ = [
    "Impairment",
    "MessageHistory",
    "MoldPublisher",
    "MoldRequestServer",
    "MoldRerequester",
    "MoldSession",
    "Request",
    "RetryPolicy",
    "SessionStats",
    "DEFAULT_MAX_PAYLOAD",
    "END_OF_SESSION_COUNT",
    "HEADER_SIZE",
    "HEARTBEAT_COUNT",
    "PacketHeader",
    "iter_blocks",
    "pack_end_of_session",
    "pack_heartbeat",
    "pack_packet",
    "pack_request",
    "packetize",
    "unpack_header",
    "unpack_packet",
]
