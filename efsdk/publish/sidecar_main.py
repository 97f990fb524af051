"""The publisher sidecar's process: ``python -m efsdk.publish.sidecar_main CONTROL CONFIG_JSON PARENT_PID RCVHWM``.

Started by :class:`efsdk.publish.sidecar.PublisherSidecar` (its own module so
that running it never imports itself twice); the protocol is described there.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys

import zmq

from efsdk.errors import PublishError
from efsdk.pipeline import FeedHandler
from efsdk.publish.publisher import BookPublisher, PublisherConfig
from efsdk.publish.sidecar import (
    ATTACH,
    DATA,
    ERROR,
    FINISH,
    QUIT,
    READY,
    SIDECAR_IDLE_S,
    SIDECAR_RCVHWM,
    STATS,
)

log = logging.getLogger("efsdk.publish.sidecar")


def main(control: str, config_json: str, parent_pid: int, rcvhwm: int = SIDECAR_RCVHWM) -> None:
    """The sidecar process: books from the forwarded bytes, published by an ordinary BookPublisher.

    It runs in its own session and ignores SIGINT: the parent decides when it
    finishes (Ctrl-C or a group SIGTERM reach the parent only); it exits by
    itself if the parent dies.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="efsdk sidecar: %(levelname)s %(name)s: %(message)s")
    ctx = zmq.Context()
    pair = ctx.socket(zmq.PAIR)
    pair.setsockopt(zmq.RCVHWM, rcvhwm)
    pair.setsockopt(zmq.LINGER, 5000)
    pair.connect(control)
    try:
        cfg = PublisherConfig.model_validate_json(config_json)
        publisher = BookPublisher(cfg)
    except Exception as exc:  # reported to the parent, which raises it
        pair.send(ERROR + str(exc).encode())
        pair.close()
        ctx.term()
        return
    feed: FeedHandler | None = None
    pair.send(READY + json.dumps({"endpoint": publisher.endpoint, "snapshot_endpoint": publisher.snapshot_endpoint}).encode())
    # Every chunk is whole messages (the feed forwards only what it consumed), so a remainder
    # is a truncated message (a replay's truncated tail): counted and dropped, never glued to
    # the next chunk, where it would misframe every message after it.
    unconsumed = 0
    try:
        while True:
            if not pair.poll(int(SIDECAR_IDLE_S * 1000), zmq.POLLIN):
                if os.getppid() != parent_pid:
                    log.warning("the feed process %d is gone; stopping", parent_pid)
                    return
                publisher.poll(0.0)
                continue
            msg = pair.recv(copy=False)
            kind = bytes(msg.buffer[:1])
            if kind == QUIT:
                return
            if kind == ATTACH:
                # Build the books the feed builds (the publisher's own symbol filter then applies),
                # or with an unfiltered feed, only the ones the publisher publishes.
                filters = json.loads(bytes(msg.buffer[1:]))
                wanted = filters["symbols"]
                if wanted is None and filters["locates"] is None:
                    wanted = cfg.symbols
                feed = FeedHandler(symbols=wanted, locates=filters["locates"], message_types=filters["message_types"])
                publisher.attach(feed)
            elif kind == DATA:
                if feed is None:
                    raise PublishError("sidecar: feed bytes before the feed was attached")
                data = msg.buffer[1:]
                left = len(data) - feed.process(data)
                if left:
                    if not unconsumed:
                        log.warning("dropped %d bytes of an incomplete ITCH message at the end of a chunk "
                                    "(a truncated tail); counted in feed_summary['unconsumed_bytes']", left)
                    unconsumed += left
                publisher.poll(0.0)
            elif kind == STATS:
                pair.send(STATS + json.dumps(publisher.stats.as_dict()).encode())
            elif kind == FINISH:
                stats = feed.refresh_stats() if feed is not None else None
                final = publisher.finish()
                pair.send(FINISH + json.dumps({
                    "final_snapshots": final,
                    "stats": publisher.stats.as_dict(),
                    "expected_l2": publisher.expected_l2(),
                    "feed": {
                        "messages": stats.messages if stats else 0,
                        "anomalies": stats.anomalies if stats else 0,
                        "unconsumed_bytes": unconsumed,
                    },
                }).encode())  # fmt: skip
            else:
                raise PublishError(f"sidecar: unknown control message {kind!r}")
    finally:
        publisher.close()
        pair.close()
        ctx.term()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), *(int(a) for a in sys.argv[4:5]))
