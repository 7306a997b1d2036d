"""A quiet console and a detailed log file for the long commands (fly, demo).

The console gets what an operator reads at a glance (a few lines of config summary, a progress
line, the verdicts); the log file next to the outputs gets everything, the full config
included (one line per key, under the `terrafix.config` logger, which reaches the console only
with `-v`). The recorder gets the config as a record of its own (see `app/fly.py`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

CONFIG_LOGGER = "terrafix.config"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def verbose() -> bool:
    """`-v` was given (the root logger is at DEBUG)."""
    return logging.getLogger().isEnabledFor(logging.DEBUG)


def log_to_file(path: Path) -> logging.Handler:
    """Send every record (INFO and up; DEBUG with -v), the full config included, to `path`.
    Returns the handler (remove and close it when the job ends)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.setLevel(logging.DEBUG if verbose() else logging.INFO)
    logging.getLogger().addHandler(handler)
    cfg_log = logging.getLogger(CONFIG_LOGGER)
    cfg_log.propagate = verbose()
    if not cfg_log.propagate:
        cfg_log.addHandler(handler)
    cfg_log.setLevel(logging.INFO)
    return handler


def close_file_log(handler: logging.Handler) -> None:
    logging.getLogger().removeHandler(handler)
    logging.getLogger(CONFIG_LOGGER).removeHandler(handler)
    handler.close()


def config_summary_lines(cfg: Any) -> list[str]:
    """The few config values an operator checks before a flight (the rest is in the log
    file and the recorder). `cfg` is a FlyConfig."""
    nav = cfg.navigation
    cam = cfg.camera
    source = cam.source + (f" ({cam.dataset})" if cam.dataset is not None else
                           f" ({cam.device})" if cam.source == "device" else "")
    reg = "on" if nav.registration.enabled else "off"
    return [
        f"flight {cfg.flight_id or '(auto)'}: camera {source}",
        f"map {cfg.map.cache} (manifest {'required' if cfg.map.require_manifest else 'off'}), "
        f"registration {reg}, estimator {nav.estimation.estimator.backend}",
        f"autopilot {cfg.autopilot.connection} GPS_INPUT {cfg.autopilot.gps_input_rate_hz:g} Hz"
        f", recorder {cfg.recorder.folder}, outputs {cfg.output}",
    ]
