"""One post-flight upload, gate included: what `terrafix upload`, the end of `terrafix fly`
and the demo call (`upload_flight`).

Order: the flight-state gate on one FC reading and the flight's recorder footer (refusal:
`GateRefusedError`, nothing sent) → the flight store opened (its reconciliation repairs what a
kill -9 left) → the `Uploader` → its records into a recorder of its own,
`<recorder_root>/<flight_id>-upload-<UTC stamp>/` (the flight's log is closed and must stay
byte-identical: its clean footer is the gate), with the session key's fingerprint in the
header and a record per give-up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from terrafix.mapping.flight_store import open_flight_store
from terrafix.recorder import FlightRecorder
from terrafix.recorder.schemas import dataclass_schema, record_from
from terrafix.upload.config import UploadConfig
from terrafix.upload.errors import UploadError
from terrafix.upload.gate import FcStateReading, check_upload_gate
from terrafix.upload.keys import load_device_key
from terrafix.upload.protocol import fingerprint
from terrafix.upload.records import UPLOAD_RECORD_TYPES
from terrafix.upload.uploader import Uploader, UploadSummary

log = logging.getLogger(__name__)


def upload_flight(flight_store_root: Path, flight_id: str, config: UploadConfig,
                  reading: FcStateReading, recorder_folder: Path | None, *,
                  record_root: Path | None = None,
                  on_progress: Callable[[int, int], None] | None = None,
                  sleep: Callable[[float], None] = time.sleep) -> UploadSummary:
    """Gate, then upload the flight store's waiting tiles; returns the summary (raises
    `GateRefusedError`, `UploadRefusedError`, `RetryBudgetSpentError` or another `UploadError`).

    recorder_folder: the flight's recorder folder (its clean footer is required).
    record_root: where the upload's own recording goes (default: next to recorder_folder;
    None and no recorder_folder: not recorded)."""
    check_upload_gate(reading, recorder_folder)
    device_key = load_device_key(config.device_key)
    root = record_root or (recorder_folder.parent if recorder_folder is not None else None)
    recorder = None
    producers: dict[str, Any] = {}
    if root is not None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        recorder = FlightRecorder(Path(root) / f"{flight_id}-upload-{stamp}",
                                  flight_id=f"{flight_id}-upload",
                                  config_hash=config.model_dump_json(),
                                  key_fingerprints={"device": fingerprint(
                                      device_key.public_key())})

    def record(topic: str, data: dict[str, Any]) -> None:
        if recorder is None:
            return
        cls = UPLOAD_RECORD_TYPES.get(topic)
        if cls is None:
            raise UploadError(f"upload record on {topic!r}: expected one of "
                              f"{sorted(UPLOAD_RECORD_TYPES)}")
        prod = producers.get(topic)
        if prod is None:
            prod = producers[topic] = recorder.producer(topic, dataclass_schema(cls))
        prod.record(time.monotonic_ns(), record_from(cls, data, topic))

    store = open_flight_store(flight_store_root)
    try:
        uploader = Uploader(store, config, device_key, flight_id, on_record=record,
                            on_progress=on_progress, sleep=sleep)
        return uploader.run()
    finally:
        store.close()
        if recorder is not None:
            recorder.close()
