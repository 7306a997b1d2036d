"""A real uploader process for the kill -9 tests and benchmark: `python -m
tests.upload.upload_worker STORE URL CA KEY BATCH` uploads the flight store once and exits
(0 done, 3 budget spent). It prints "started" when it begins, and a JSON summary (wall_s
of the upload itself, counts) when done."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from terrafix.mapping.flight_store import open_flight_store
from terrafix.upload.config import UploadConfig
from terrafix.upload.errors import RetryBudgetSpentError
from terrafix.upload.keys import load_device_key
from terrafix.upload.uploader import Uploader


def main(argv: list[str]) -> int:
    store_root, url, ca, key, batch = argv
    cfg = UploadConfig(url=url, ca_cert=Path(ca), device_key=Path(key),
                       batch_tiles=int(batch),
                       retry={"max_in_call_retries": 2, "backoff_base_s": 1.0,
                              "backoff_cap_s": 0.2})
    with open_flight_store(Path(store_root)) as store:
        print("started", flush=True)
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            s = Uploader(store, cfg, load_device_key(Path(key)), Path(store_root).name).run()
        except RetryBudgetSpentError:
            return 3
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "accepted": s.accepted,
                      "duplicate": s.duplicate, "offered": s.offered}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
