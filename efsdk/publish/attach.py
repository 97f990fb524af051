"""``--publish ENDPOINT`` for the commands that build books (run, demo): one publisher, attached and served."""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator
from typing import Any

from efsdk.errors import ConfigError

#: How often the idle hook serves snapshot requests: often enough for a late
#: subscriber, rare enough to cost the feed loop nothing measurable.
SERVE_EVERY_S = 0.005


def add_publish_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--publish", metavar="ENDPOINT",
                        help="also fan the books out over ZeroMQ PUB (tcp://HOST:PORT or ipc://PATH); "
                             "read them with `efsdk subscribe`")  # fmt: skip
    parser.add_argument("--publish-snapshots", metavar="ENDPOINT",
                        help="snapshot server endpoint (default: the stream's port + 1, or ipc PATH.snap)")  # fmt: skip
    parser.add_argument("--publish-depth", type=int, default=0, metavar="N",
                        help="publish only the top N levels per side (default 0: every level)")  # fmt: skip
    parser.add_argument("--publish-sidecar", action="store_true",
                        help="publish from a sidecar process that rebuilds the books from the forwarded ITCH bytes, "
                             "so publishing costs the feed almost nothing (needs a spare core)")  # fmt: skip


class AttachedPublisher:
    """``on_feed`` attaches the publisher to a feed handler, ``idle`` serves it between batches."""

    def __init__(self, publisher: Any) -> None:
        self.publisher = publisher
        self._next = 0.0
        # A sidecar gets what this turn gathered at once (one send, ~us), not every 5 ms.
        self._forward = getattr(publisher, "flush", None)

    def on_feed(self, feed: Any) -> None:
        self.publisher.attach(feed)

    def idle(self) -> None:
        if self._forward is not None:
            self._forward()
        now = time.monotonic()
        if now >= self._next:
            self._next = now + SERVE_EVERY_S
            self.publisher.poll(0.0)


@contextlib.contextmanager
def publisher_from_args(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """The driver hooks ``--publish`` asks for: ``{"on_feed": ..., "idle": ...}``, or ``{}`` without it.

    Final snapshots are sent on exit.
    """
    if not getattr(args, "publish", None):
        yield {}
        return
    from efsdk.publish.publisher import BookPublisher, PublisherConfig  # noqa: PLC0415
    from efsdk.publish.sidecar import PublisherSidecar  # noqa: PLC0415

    try:
        config = PublisherConfig(endpoint=args.publish, snapshot_endpoint=args.publish_snapshots, depth=args.publish_depth)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ConfigError(str(exc)) from None
    with (PublisherSidecar(config) if getattr(args, "publish_sidecar", False) else BookPublisher(config)) as pub:
        attached = AttachedPublisher(pub)
        try:
            yield {"on_feed": attached.on_feed, "idle": attached.idle}
        finally:
            pub.finish()
            pub.poll(0.0)
