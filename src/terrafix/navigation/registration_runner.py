"""Where registration runs: inline (replay) or on a worker thread (the live program).

Why two: a registration costs a few hundred milliseconds of CPU, odometry tens. In the live
program the navigation thread must keep propagating the IMU, fusing odometry and publishing
GPS_INPUT while a frame is being matched against the map, so the match runs on a worker and
its fix is fused when it comes back, at the frame's capture time (the estimator keeps the
position at each capture time as a clone, so a fix that is a few hundred milliseconds late is
fused exactly). Offline, the same navigator runs the match inline, which makes a replay
deterministic and reproducible bit for bit.

Both runners take one job at a time: while a match is in flight the navigator does not start
another (the newest frame is worth more than a queue of old ones); it counts the frames it
would have registered as skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from terrafix.measurements import CameraFrame
from terrafix.vision.registration import RegistrationResult

log = logging.getLogger(__name__)

Prior = tuple[float, float, float] | None
"""(lat_deg, lon_deg, radius95_m) of a confident search prior, or None (search everywhere)."""

Locate = Callable[[CameraFrame, np.ndarray, float, Prior], RegistrationResult]
"""`VisualPositioner.locate(frame, R_body_to_ned (3, 3), alt_m, prior)`."""


@dataclass(frozen=True, slots=True)
class RegistrationJob:
    """One frame to register: the frame, the FC attitude at its capture time (R_body_to_ned,
    shape (3, 3)), the estimated altitude AMSL (m) and the search prior."""

    frame: CameraFrame
    R_body_to_ned: np.ndarray
    alt_m: float
    prior: Prior


@dataclass(frozen=True, slots=True)
class RegistrationDone:
    """A finished job: the result (None when `locate` raised; `error` says why) and the
    wall time it took on its thread (ms; ONNX Runtime computes on threads of its own, so the
    calling thread's CPU time would undercount)."""

    job: RegistrationJob
    result: RegistrationResult | None
    wall_ms: float
    error: str = ""


class RegistrationRunner(Protocol):
    """Runs `locate` for one job at a time."""

    concurrent: bool
    """True when jobs run alongside the caller (the caller may start one before its own
    work on the same frame); False when `submit` runs the job to completion."""

    @property
    def busy(self) -> bool:
        """A job is in flight (submit would refuse)."""
        ...

    def submit(self, job: RegistrationJob) -> bool:
        """Start the job; False (and nothing started) while another is in flight."""
        ...

    def poll(self) -> list[RegistrationDone]:
        """Jobs finished since the last poll (at most one)."""
        ...

    def close(self) -> None:
        """Stop; a job in flight is abandoned."""
        ...


def _run(locate: Locate, job: RegistrationJob) -> RegistrationDone:
    t0 = time.perf_counter()
    try:
        result = locate(job.frame, job.R_body_to_ned, job.alt_m, job.prior)
    except Exception as exc:  # a failed match must not stop the navigation
        log.exception("registration of frame %d failed", job.frame.index)
        return RegistrationDone(job, None, (time.perf_counter() - t0) * 1e3,
                                f"{type(exc).__name__}: {exc}")
    return RegistrationDone(job, result, (time.perf_counter() - t0) * 1e3)


class InlineRegistration:
    """Runs the job inside `submit` (replay: deterministic, as fast as the CPU allows)."""

    concurrent = False

    def __init__(self, locate: Locate) -> None:
        self._locate = locate
        self._done: list[RegistrationDone] = []

    @property
    def busy(self) -> bool:
        return False

    def submit(self, job: RegistrationJob) -> bool:
        self._done.append(_run(self._locate, job))
        return True

    def poll(self) -> list[RegistrationDone]:
        out, self._done = self._done, []
        return out

    def close(self) -> None:
        self._done.clear()


class ThreadedRegistration:
    """Runs jobs on one worker thread (the live program). ONNX Runtime and OpenCV release
    the GIL while they compute, so the navigation thread keeps its pace meanwhile."""

    concurrent = True

    def __init__(self, locate: Locate) -> None:
        self._locate = locate
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._job: RegistrationJob | None = None
        self._done: list[RegistrationDone] = []
        self._in_flight = False
        self._closed = False
        self._thread = threading.Thread(target=self._worker, name="registration",
                                        daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self._in_flight

    def submit(self, job: RegistrationJob) -> bool:
        with self._lock:
            if self._in_flight or self._closed:
                return False
            self._job = job
            self._in_flight = True
            self._wake.notify()
        return True

    def poll(self) -> list[RegistrationDone]:
        if not self._done:
            return []
        with self._lock:
            out, self._done = self._done, []
        return out

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until no job is in flight (end of input); False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.wait(left)
        return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._wake.notify_all()
        self._thread.join(timeout=5.0)

    def _worker(self) -> None:
        while True:
            with self._lock:
                while self._job is None and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                job, self._job = self._job, None
            assert job is not None
            done = _run(self._locate, job)
            with self._lock:
                self._done.append(done)
                self._in_flight = False
                self._wake.notify_all()
