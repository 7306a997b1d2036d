"""A real uploader process for the kill -9 tests and benchmark: `python -m
tests.upload.upload_worker STORE URL CA KEY BATCH` uploads the flight store once and exits
(0 done, 3 budget spent). It prints "started" once its session is being opened."""

from __future__ import annotations

import sys
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
        try:
            Uploader(store, cfg, load_device_key(Path(key)), Path(store_root).name).run()
        except RetryBudgetSpentError:
            return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
