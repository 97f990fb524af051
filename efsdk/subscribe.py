"""The public client API of the ZeroMQ fan-out: ``from efsdk.subscribe import subscribe``.

>>> with subscribe("tcp://127.0.0.1:5556", ["AAPL", "MSFT"]) as sub:   # doctest: +SKIP
...     sub.run(duration=5)
...     sub.book("AAPL").depth(5)

Re-exports :mod:`efsdk.publish.subscriber`; the wire format is documented in
:mod:`efsdk.publish.encoding`.
"""

from efsdk.publish.subscriber import (
    DEFAULT_RCVHWM,
    BookSubscriber,
    L2Book,
    SubscriberConfig,
    SubscriberStats,
    subscribe,
)

__all__ = ["DEFAULT_RCVHWM", "BookSubscriber", "L2Book", "SubscriberConfig", "SubscriberStats", "subscribe"]
