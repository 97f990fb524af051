"""The embedded exchange simulator: a matching engine built from the shared ITCH and OUCH codecs, plus background flow.

:class:`MatchingEngine` takes OUCH 4.2 requests and answers with OUCH
responses and ITCH 5.0 messages; :class:`BackgroundFlow` keeps a realistic
book moving through it.  The network side (MoldUDP64 publisher, SoupBinTCP
order gateway) wires these to sockets.
"""

from efsdk.sim.engine import (
    DAY,
    IOC,
    EngineStats,
    Fill,
    MatchingEngine,
    RestingOrder,
    Response,
    SimStateError,
    on_tick_grid,
)
from efsdk.sim.flow import BackgroundFlow, FlowConfig, FlowStats

__all__ = [
    "DAY",
    "IOC",
    "BackgroundFlow",
    "EngineStats",
    "Fill",
    "FlowConfig",
    "FlowStats",
    "MatchingEngine",
    "RestingOrder",
    "Response",
    "SimStateError",
    "on_tick_grid",
]
