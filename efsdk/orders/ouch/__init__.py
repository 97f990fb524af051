"""NASDAQ OUCH 4.2 order entry messages: one layout table, encoder, decoders, order tokens.

Typical use::

    from efsdk.orders import ouch

    tokens = ouch.TokenGenerator("EF")
    wire = ouch.encode(ouch.enter_order(tokens.next(), ouch.Side.BUY, 100, "AAPL", 150_2500))
    msg = ouch.decode_outbound(payload)          # Accepted, Executed, Canceled, ...
"""

from efsdk.orders.ouch.codec import *  # noqa: F403
from efsdk.orders.ouch.codec import __all__ as _codec_all
from efsdk.orders.ouch.layouts import INBOUND, OUTBOUND, MessageLayout

__all__ = [*_codec_all, "INBOUND", "OUTBOUND", "MessageLayout"]
