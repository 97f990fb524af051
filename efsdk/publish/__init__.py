"""ZeroMQ fan-out of book events: publisher, snapshot server, L2-rebuilding subscriber.

Wire format: :mod:`efsdk.publish.encoding`.  Publisher (and why it needs no
change to ``book/``): :mod:`efsdk.publish.publisher`; the same publisher in a
child process, off the feed path: :mod:`efsdk.publish.sidecar`.  Client:
:mod:`efsdk.publish.subscriber` (also exported as :mod:`efsdk.subscribe`).
"""

from efsdk.publish.publisher import (
    DEFAULT_SNDHWM,
    BookPublisher,
    PublisherConfig,
    PublisherStats,
    default_snapshot_endpoint,
)
from efsdk.publish.sidecar import PublisherSidecar, SidecarStats
from efsdk.publish.subscriber import DEFAULT_RCVHWM, BookSubscriber, L2Book, SubscriberConfig, SubscriberStats, subscribe

__all__ = [
    "DEFAULT_RCVHWM",
    "DEFAULT_SNDHWM",
    "BookPublisher",
    "BookSubscriber",
    "L2Book",
    "PublisherConfig",
    "PublisherSidecar",
    "PublisherStats",
    "SidecarStats",
    "SubscriberConfig",
    "SubscriberStats",
    "default_snapshot_endpoint",
    "subscribe",
]
