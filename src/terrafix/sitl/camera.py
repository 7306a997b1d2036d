"""The navigation camera over ArduPlane SITL: frames rendered from the real imagery at
ArduPilot's true pose (SIM_STATE), triggered at a fixed rate on the FC clock.

Why the FC clock: a real FC-triggered camera is fired by the autopilot, so its capture times
are FC boot times; the companion maps them to its own clock through the link's clock alignment
(`ArduPilotLink.fc_boot_to_companion_ns`), exactly as for the simulated FC's camera
(app/frame_sources.SimulatedCameraSource). Here the trigger instants are multiples of the
period in FC boot time, the pose at each is interpolated between the SIM_STATE samples around
it (SIM_STATE is stamped at arrival on the companion clock, which the alignment relates to
the FC's), and the frame is released once SIM_STATE past the capture time has arrived plus the
readout delay. A pose whose footprint leaves the imagery yields no frame (counted in
`off_imagery`), as a camera over unmapped ground gives the navigation nothing to match.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np

from terrafix.app.frame_sources import CaptureCallback
from terrafix.camera import CameraPose, Extrinsics, Intrinsics
from terrafix.geo import LocalFrame
from terrafix.measurements import CameraFrame
from terrafix.sitl.control import Truth

log = logging.getLogger(__name__)


def _slerp(q0: np.ndarray, q1: np.ndarray, a: float) -> np.ndarray:
    d = float(np.dot(q0, q1))
    if d < 0.0:
        q1, d = -q1, -d
    if d > 0.9995:
        q = q0 + a * (q1 - q0)
        return q / np.linalg.norm(q)
    th = np.arccos(d)
    return (np.sin((1 - a) * th) * q0 + np.sin(a * th) * q1) / np.sin(th)


def _quat_to_R(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


class TruthBuffer:
    """SIM_STATE samples by arrival time; `pose_at` interpolates position and attitude."""

    def __init__(self, frame: LocalFrame, keep: int = 400) -> None:
        self.frame = frame
        self._lock = threading.Condition()
        self._t: list[int] = []
        self._p: list[np.ndarray] = []
        self._q: list[np.ndarray] = []
        self._keep = keep

    def add(self, tr: Truth) -> None:
        p = self.frame.lla_to_ned(tr.lat_deg, tr.lon_deg, tr.alt_m)
        with self._lock:
            if self._t and tr.t_ns <= self._t[-1]:
                return
            self._t.append(tr.t_ns)
            self._p.append(np.asarray(p, float))
            self._q.append(np.asarray(tr.q_wxyz, float))
            if len(self._t) > self._keep:
                del self._t[0], self._p[0], self._q[0]
            self._lock.notify_all()

    def latest_t(self) -> int | None:
        with self._lock:
            return self._t[-1] if self._t else None

    def pose_at(self, t_ns: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(p_body_ned (3,), R_body_to_ned (3, 3)) at t_ns, None outside the buffer."""
        with self._lock:
            i = bisect.bisect_left(self._t, t_ns)
            if i == 0 or i >= len(self._t):
                return None
            t0, t1 = self._t[i - 1], self._t[i]
            a = (t_ns - t0) / (t1 - t0)
            p = self._p[i - 1] + a * (self._p[i] - self._p[i - 1])
            q = _slerp(self._q[i - 1], self._q[i], a)
        return p, _quat_to_R(q)

    def wait_past(self, t_ns: int, stop: threading.Event, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while not (self._t and self._t[-1] > t_ns):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or stop.is_set():
                    return False
                self._lock.wait(min(remaining, 0.1))
        return True


class SitlCameraSource:
    """Frames at `rate_hz` in FC boot time, rendered by `world` at the interpolated true pose.

    fc_boot_ns_now: the FC's current boot time (from the link's alignment); fc_to_companion_ns:
    FC boot ns -> companion ns (None before alignment)."""

    def __init__(self, world, intrinsics: Intrinsics, extrinsics: Extrinsics,
                 frame: LocalFrame, truth: TruthBuffer,
                 fc_to_companion_ns: Callable[[int], int | None],
                 companion_to_fc_ns: Callable[[int], int | None], *, rate_hz: float = 3.0,
                 readout_s: float = 0.06) -> None:
        self.world, self.intrinsics, self.extrinsics = world, intrinsics, extrinsics
        self.frame, self.truth = frame, truth
        self._to_companion = fc_to_companion_ns
        self._to_fc = companion_to_fc_ns
        self.period_ns = int(1e9 / rate_hz)
        self.readout_ns = int(readout_s * 1e9)
        self.on_capture: CaptureCallback | None = None
        self.off_imagery = 0
        self.off_imagery_t_ns: list[int] = []
        """Capture times (companion ns) of the frames whose footprint left the imagery."""
        self.rendered = 0
        self._stop = threading.Event()

    def render_at(self, t_ns: int) -> np.ndarray | None:
        pose = self.truth.pose_at(t_ns)
        if pose is None:
            return None
        cam = CameraPose.from_body(pose[0], pose[1], self.extrinsics)
        if not self.world.footprint_on_imagery(cam, self.intrinsics, self.frame):
            self.off_imagery += 1
            self.off_imagery_t_ns.append(t_ns)
            return None
        self.rendered += 1
        return self.world.render(cam, self.intrinsics, self.frame)

    def __iter__(self) -> Iterator[CameraFrame]:
        index = 0
        next_fc: int | None = None
        while not self._stop.is_set():
            now_fc = self._to_fc(time.monotonic_ns())
            if now_fc is None:
                self._stop.wait(0.1)
                continue
            if next_fc is None:
                next_fc = (now_fc // self.period_ns + 1) * self.period_ns
            t_cap = self._to_companion(next_fc)
            if t_cap is None:
                self._stop.wait(0.1)
                continue
            wait_s = (t_cap - time.monotonic_ns()) / 1e9
            if wait_s > 0 and self._stop.wait(wait_s):
                return
            next_fc += self.period_ns
            if self.on_capture is not None:
                # the FC's trigger: the capture is announced at the exposure itself, so the
                # navigator marks that instant before newer samples pass it
                self.on_capture(t_cap, index)
            wait_s = (t_cap + self.readout_ns - time.monotonic_ns()) / 1e9
            if wait_s > 0 and self._stop.wait(wait_s):
                return
            if not self.truth.wait_past(t_cap, self._stop, 1.0):
                index += 1
                continue
            image = self.render_at(t_cap)
            if image is not None:
                yield CameraFrame(t_cap, index, image)
            index += 1

    def close(self) -> None:
        self._stop.set()
