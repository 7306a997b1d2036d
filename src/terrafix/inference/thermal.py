"""Thermal/power state of the accelerator and the degrade policy that reacts to it.

A Jetson at 25 W throttles its clocks when hot; inference then slows and frames would be
dropped unpredictably. Instead the pipeline degrades on purpose (fewer keypoints, hence less
matching work) and says so in every result. The state comes from NVML (desktop/server GPUs,
`pynvml`) or jtop (Jetson) when either is importable and answers; otherwise it is reported as
"unavailable", which is the safe default: no claim about throttling is made and the nominal
budget is used.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ThermalState:
    """One poll. source: "nvml", "jtop" or "unavailable"; throttled None when unknown;
    temperature_c (°C) and power_w (W) None when the source does not report them."""

    t_ns: int
    source: str
    throttled: bool | None
    temperature_c: float | None = None
    power_w: float | None = None


class ThermalMonitor:
    """Polls the first working source among NVML and jtop, else reports "unavailable"."""

    def __init__(self) -> None:
        self._nvml: Any = None
        self._handle: Any = None
        self._jtop: Any = None
        self.source = "unavailable"
        if self._open_nvml():
            self.source = "nvml"
        elif self._open_jtop():
            self.source = "jtop"

    def _open_nvml(self) -> bool:
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self._nvml = pynvml
            return True
        except Exception as exc:  # library or GPU absent: not an error on a CPU host
            log.debug("NVML unavailable: %s", exc)
            return False

    def _open_jtop(self) -> bool:
        try:
            from jtop import jtop  # Jetson only; never a declared dependency

            handle = jtop()
            handle.start()
            self._jtop = handle
            return True
        except Exception as exc:
            log.debug("jtop unavailable: %s", exc)
            return False

    def poll(self) -> ThermalState:
        now = time.monotonic_ns()
        try:
            if self.source == "nvml":
                return self._poll_nvml(now)
            if self.source == "jtop":
                return self._poll_jtop(now)
        except Exception as exc:  # a source that stops answering is reported, not hidden
            log.warning("thermal source %s failed (%s); reporting unavailable", self.source, exc)
        return ThermalState(now, "unavailable", None)

    def _poll_nvml(self, now: int) -> ThermalState:
        nv, h = self._nvml, self._handle
        temp = float(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))
        power = float(nv.nvmlDeviceGetPowerUsage(h)) / 1000.0
        reasons = nv.nvmlDeviceGetCurrentClocksThrottleReasons(h)
        thermal_mask = (getattr(nv, "nvmlClocksThrottleReasonSwThermalSlowdown", 0x20)
                        | getattr(nv, "nvmlClocksThrottleReasonHwThermalSlowdown", 0x40)
                        | getattr(nv, "nvmlClocksThrottleReasonHwPowerBrakeSlowdown", 0x80)
                        | getattr(nv, "nvmlClocksThrottleReasonSwPowerCap", 0x04))
        return ThermalState(now, "nvml", bool(reasons & thermal_mask), temp, power)

    def _poll_jtop(self, now: int) -> ThermalState:
        stats = self._jtop.stats
        temps = [v for k, v in stats.items() if k.lower().startswith("temp") and
                 isinstance(v, (int, float))]
        power = stats.get("Power TOT")
        temp = max(temps) if temps else None
        return ThermalState(now, "jtop", None, temp,
                            float(power) / 1000.0 if isinstance(power, (int, float)) else None)

    def close(self) -> None:
        try:
            if self._nvml is not None:
                self._nvml.nvmlShutdown()
            if self._jtop is not None:
                self._jtop.close()
        except Exception as exc:
            log.debug("thermal source close: %s", exc)


@dataclass(frozen=True, slots=True)
class DegradePolicy:
    """Keypoint budget as a function of the thermal state.

    Throttled (reported by the source, or temperature ≥ hot_c) → `throttled_keypoints`;
    otherwise, including "unavailable", → `nominal_keypoints`.
    """

    nominal_keypoints: int = 2048
    throttled_keypoints: int = 1024
    hot_c: float = 85.0

    def keypoint_budget(self, state: ThermalState) -> tuple[int, str]:
        """(keypoints to extract, reason — empty when nominal)."""
        if state.throttled:
            return self.throttled_keypoints, f"degraded: {state.source} reports throttling"
        if state.temperature_c is not None and state.temperature_c >= self.hot_c:
            return self.throttled_keypoints, (
                f"degraded: {state.source} temperature {state.temperature_c:.0f} °C "
                f">= {self.hot_c:.0f} °C")
        return self.nominal_keypoints, ""
