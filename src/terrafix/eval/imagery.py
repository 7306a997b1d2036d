"""The picture under the track plot: the dataset's world seen from straight above.

The simulator's world (orthophoto or synthetic) is rendered through a virtual nadir camera
placed high above the centre of the flown area, yaw 0, so image up is north and image right is
east, and the picture lines up with local north/east metres. Rendering, not reading tiles,
keeps this independent of any tile cache and works for both kinds of world. Pixels only ever
go to the run's output folder (never the repository: dgsamples imagery is licence-restricted).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from terrafix.camera import CameraPose, Intrinsics
from terrafix.eval.plots import Background
from terrafix.sim.dataset import FlightDataset

log = logging.getLogger(__name__)


def world_of(meta: dict[str, Any]) -> Any | None:
    """The sim world a dataset was rendered from (rebuilt from its scenario and seed), or
    None when meta does not carry them."""
    from terrafix.sim.flight import make_world
    from terrafix.sim.scenario import parse_scenario

    if "scenario" not in meta or "seed" not in meta:
        return None
    world, _ = make_world(parse_scenario(meta["scenario"], "meta.json"), int(meta["seed"]))
    return world


def track_background(ds: FlightDataset, *tracks_ne_m: np.ndarray, max_px: int = 1600,
                     margin_m: float = 150.0) -> Background | None:
    """A nadir picture (H, W) uint8 covering all given (N, 2) north/east tracks plus a margin,
    or None when the world cannot be rendered (logged, never fatal: the plot is still drawn
    on a grid)."""
    try:
        world = world_of(ds.meta)
        if world is None:
            return None
        pts = np.vstack([t[np.all(np.isfinite(t), axis=1)] for t in tracks_ne_m])
        n0, e0 = pts.min(axis=0) - margin_m
        n1, e1 = pts.max(axis=0) + margin_m
        span = max(n1 - n0, e1 - e0)
        w_px = int(max_px * (e1 - e0) / span)
        h_px = int(max_px * (n1 - n0) / span)
        f = 1000.0
        height_m = span * f / max_px
        intr = Intrinsics(w_px, h_px, f, f, (w_px - 1) / 2.0, (h_px - 1) / 2.0)
        ground = ds.ground_down_m
        pose = CameraPose.from_euler(np.array([(n0 + n1) / 2, (e0 + e1) / 2, ground - height_m]),
                                     0.0, 0.0, 0.0)
        img = world.render(pose, intr, ds.local_frame)
        # The camera's pixel centres span [-0.5, w-0.5] px = e0..e1 m.
        return Background(img, (float(e0), float(e1), float(n0), float(n1)))
    except Exception as exc:
        log.warning("no imagery under the track plot: %s", exc)
        return None
