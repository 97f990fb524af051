"""Entry point of a shard process: ``python -m efsdk.shard_main FD INDEX CPU|-`` (started by ShardedReplay).

Kept apart from :mod:`efsdk.shards` so the classes pickled between the
processes are ``efsdk.shards``' own, never ``__main__``'s.
"""

from __future__ import annotations

import sys
from multiprocessing.connection import Connection

from efsdk.shards import serve_shard


def main(argv: list[str]) -> int:
    fd, index, cpu = argv
    serve_shard(Connection(int(fd)), int(index), None if cpu == "-" else int(cpu))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
