"""Where navigation-camera frames come from: a real camera, a recorded folder, or the simulator.

Why one interface: the onboard program must not know whether its frames come from a V4L2 /
GStreamer device, a recorded flight or the simulated FC-triggered camera; all three yield
`CameraFrame`s at the processing resolution, stamped with the *capture* time on the companion's
monotonic clock (the estimator fuses a frame at the instant it was exposed, not when it arrived).

- `VideoCaptureSource`: OpenCV VideoCapture on a device index, a GStreamer pipeline string or a
  video file; stamped at grab time minus the configured sensor-to-grab latency.
- `DatasetFrameSource`: the frames of a recorded/simulated flight folder (frames.csv +
  images), as fast as the consumer takes them, with their recorded times (replay).
- `SimulatedCameraSource`: the simulator's camera, triggered by the simulated FC: a frame's
  capture time is an FC boot time, mapped to the companion clock through the FC link's clock
  alignment, and the frame is released when that time (plus the readout delay) has come.
"""

from __future__ import annotations

import csv
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from terrafix.measurements import CameraFrame

log = logging.getLogger(__name__)


class FrameSourceError(RuntimeError):
    """A frame source that cannot be opened or read (names the source and what was expected)."""


CaptureCallback = Callable[[int, int], None]
"""on_capture(t_ns, index): a frame was captured at t_ns; its image follows (or is skipped)."""


class FrameSource(Protocol):
    """An iterable of `CameraFrame`s (gray uint8 at the processing resolution, capture time).

    `on_capture`, when set, is called with (capture t_ns, index) as soon as the capture time
    is known, before the image is retrieved and decoded (decoding under load can take longer
    than the navigation may wait; see `FrameCaptured`)."""

    on_capture: CaptureCallback | None

    def __iter__(self) -> Iterator[CameraFrame]: ...

    def close(self) -> None: ...


def _to_gray(image: np.ndarray, size: tuple[int, int], source: str) -> np.ndarray:
    """Any 8-bit image -> (H, W) uint8 gray at `size` = (width, height)."""
    if image.dtype != np.uint8:
        raise FrameSourceError(f"{source}: frame dtype {image.dtype}, expected uint8")
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim != 2:
        raise FrameSourceError(f"{source}: frame shape {image.shape}, expected (H, W[, 3])")
    if (image.shape[1], image.shape[0]) != size:
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image


class VideoCaptureSource:
    """A real camera (device index or path), a GStreamer pipeline, or a video file.

    latency_s: time from exposure to `grab()` returning (sensor readout + transfer), subtracted
    from the grab time to estimate the capture time.
    """

    def __init__(self, device: str | int, size: tuple[int, int], *, latency_s: float = 0.05,
                 clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self.name = str(device)
        api = cv2.CAP_GSTREAMER if isinstance(device, str) and "!" in device else cv2.CAP_ANY
        self._cap = cv2.VideoCapture(device, api)
        if not self._cap.isOpened():
            raise FrameSourceError(f"cannot open camera {device!r} (device index, video file "
                                   "or GStreamer pipeline expected)")
        self._size = size
        self._latency_ns = int(latency_s * 1e9)
        self._clock = clock_ns
        self.on_capture: CaptureCallback | None = None

    def __iter__(self) -> Iterator[CameraFrame]:
        index = 0
        while True:
            if not self._cap.grab():
                return
            t_ns = self._clock() - self._latency_ns
            if self.on_capture is not None:
                self.on_capture(t_ns, index)
            ok, image = self._cap.retrieve()
            if not ok or image is None:
                log.warning("camera %s: frame %d could not be decoded; skipped", self.name, index)
                index += 1
                continue
            yield CameraFrame(t_ns, index, _to_gray(image, self._size, self.name))
            index += 1

    def close(self) -> None:
        self._cap.release()


def _read_frames_csv(folder: Path) -> list[tuple[int, int, str]]:
    path = folder / "frames.csv"
    if not path.is_file():
        raise FrameSourceError(f"{folder}: frames.csv missing (index,t_ns,file expected)")
    rows: list[tuple[int, int, str]] = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            try:
                rows.append((int(row["index"]), int(row["t_ns"]), row["file"]))
            except (KeyError, ValueError) as exc:
                raise FrameSourceError(f"{path}: bad row {row} (index,t_ns,file expected)"
                                       ) from exc
    return rows


def _load_gray(path: Path) -> np.ndarray | None:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        log.error("frame %s is missing or not a decodable image; skipped", path)
    return image


class DatasetFrameSource:
    """The frames of a flight folder (`frames.csv` + images) with their recorded capture times,
    yielded as fast as they are consumed. Unreadable images are logged and skipped."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._rows = _read_frames_csv(self.folder)
        self.on_capture: CaptureCallback | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[CameraFrame]:
        for index, t_ns, file in self._rows:
            if self.on_capture is not None:
                self.on_capture(t_ns, index)
            image = _load_gray(self.folder / file)
            if image is not None:
                yield CameraFrame(t_ns, index, image)

    def close(self) -> None:
        pass


class SimulatedCameraSource:
    """The simulator's nav camera, triggered by the simulated FC.

    fc_boot_ns_of: dataset time -> FC boot time (`terrafix.sim.flight_controller.fc_boot_ns`).
    fc_to_companion_ns: FC boot time -> companion monotonic time (the FC link's clock
    alignment), None until the link has seen a timed message. readout_s: exposure-to-delivery
    delay before a frame can be handed over. The capture is announced (`on_capture`) at the
    trigger, as the FC's camera-trigger message would. Frames whose delivery time has already
    passed by more than `max_late_s` when reached (the consumer fell behind) are dropped and
    counted, as a real camera driver's ring buffer would.
    """

    def __init__(self, folder: str | Path, fc_boot_ns_of: Callable[[int], int],
                 fc_to_companion_ns: Callable[[int], int | None], *, readout_s: float = 0.06,
                 max_late_s: float = 1.0, clock_ns: Callable[[], int] = time.monotonic_ns
                 ) -> None:
        self.folder = Path(folder)
        self._rows = _read_frames_csv(self.folder)
        self._fc_boot_ns_of = fc_boot_ns_of
        self._to_companion = fc_to_companion_ns
        self._readout_ns = int(readout_s * 1e9)
        self._max_late_ns = int(max_late_s * 1e9)
        self._clock = clock_ns
        self._stop = threading.Event()
        self.dropped = 0
        self.on_capture: CaptureCallback | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[CameraFrame]:
        for index, t_ds_ns, file in self._rows:
            capture_ns = None
            while capture_ns is None and not self._stop.is_set():
                capture_ns = self._to_companion(self._fc_boot_ns_of(t_ds_ns))
                if capture_ns is None:
                    self._stop.wait(0.05)
            if self._stop.is_set() or capture_ns is None:
                return
            due = capture_ns + self._readout_ns
            now = self._clock()
            if now - due > self._max_late_ns:
                self.dropped += 1
                continue
            if capture_ns > now and self._stop.wait((capture_ns - now) / 1e9):
                return
            if self.on_capture is not None:
                # the FC's trigger: the capture time is known at the exposure itself
                self.on_capture(capture_ns, index)
            # the image is read from disk during the readout: decoding the stored PNG is the
            # simulation's cost, not the camera's, which hands over raw pixels at `due`
            image = _load_gray(self.folder / file)
            now = self._clock()
            if due > now and self._stop.wait((due - now) / 1e9):
                return
            if image is not None:
                yield CameraFrame(capture_ns, index, image)

    def close(self) -> None:
        self._stop.set()
