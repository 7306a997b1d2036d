"""Subprocess helpers for the contract tests (a writer that is killed, a concurrent writer).

Run as `python -m tests.tiles.worker <json>`; the JSON names the action, the cache root and,
for PostgreSQL, the DSN and schema.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from datetime import date

from terrafix.geo.tiles import TileId
from terrafix.tiles import NewTile, open_store
from tests.tiles.conftest import jpeg


def main(args: dict) -> None:
    kwargs = {"dsn": args["dsn"], "schema": args["schema"]} if args.get("dsn") else {}
    store = open_store(args["root"], **kwargs)
    tiles = [TileId(*t) for t in args["tiles"]]
    items = [NewTile(t, jpeg(args["seed"] + i), date(2024, 5, 1), "worker")
             for i, t in enumerate(tiles)]
    if args["action"] == "put_then_die":
        # Die the hard way (no cleanup, no rollback) after the files are in place and before
        # the metadata commit: the worst moment for atomicity.
        store.before_commit = lambda: os.kill(os.getpid(), signal.SIGKILL)
        store.put_many(items, on_conflict=args.get("on_conflict", "error"))
        sys.exit(3)  # not reached
    if args["action"] == "write_batches":
        batch = args["batch"]
        for i in range(0, len(items), batch):
            store.put_many(items[i:i + batch], on_conflict="replace")
        store.close()
        print("done", flush=True)
        return
    raise SystemExit(f"unknown action {args['action']!r}")


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
