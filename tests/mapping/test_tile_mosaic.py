"""Orthorectification into z/x/y tiles against an independently rendered flat world: a tile
made from a tilted, rotated frame lands on the truth tile to a fraction of a pixel, the view
with the finer ground resolution wins the merge whatever the order, and only complete tiles
come out (REQUIREMENTS U1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest

from terrafix.mapping.tile_mosaic import FrameView, TileMosaic

from .scene import FRAME, GROUND_ALT, INTR, camera_pose, ground_texture, render, truth_tile

T0 = datetime(2026, 6, 1, 16, 0, tzinfo=UTC)


def _view(texture, pose, k=0, sigma=1.0):
    return FrameView(k, T0 + timedelta(seconds=k), render(texture, pose), pose.p_cam_ned,
                     pose.R_cam_to_ned, sigma)


def _coverage_of(pose, tiles) -> dict:
    """Per tile, the pixels a camera at `pose` sees (a frame of a white world, merged alone)."""
    white = np.full((3000, 3000), 255.0, np.float32)
    m = TileMosaic(FRAME, GROUND_ALT, INTR, 19, min_coverage=1e-6)
    m.add(_view(white, pose))
    seen = {t.tile: cv2.erode(t.image, np.ones((5, 5), np.uint8)) > 128 for t in m.flush()}
    return {t.tile: seen.get(t.tile, np.zeros((256, 256), bool)) for t in tiles}


def _shift_px(a: np.ndarray, b: np.ndarray) -> float:
    (dx, dy), _ = cv2.phaseCorrelate(a.astype(np.float32), b.astype(np.float32))
    return float(np.hypot(dx, dy))


@pytest.mark.parametrize("roll,pitch,yaw", [(0.0, 0.0, 0.0), (0.08, -0.05, 1.1),
                                            (-0.12, 0.06, -2.4)])
def test_tiles_land_on_the_truth(roll, pitch, yaw):
    tex = ground_texture(1)
    mosaic = TileMosaic(FRAME, GROUND_ALT, INTR, 19, min_coverage=0.99)
    pose = camera_pose(5.0, -8.0, 170.0, roll, pitch, yaw)
    assert mosaic.add(_view(tex, pose)) == []
    tiles = mosaic.flush()
    assert tiles, "a 180 m footprint holds at least one complete z19 tile"
    assert mosaic.incomplete > 0  # the footprint's edge tiles are partial: not kept
    for t in tiles:
        truth = truth_tile(tex, t.tile)
        assert t.coverage >= 0.99
        assert _shift_px(t.image, truth) < 0.25
        assert np.median(np.abs(t.image.astype(int) - truth.astype(int))) < 4


def test_finer_view_wins_whatever_the_order():
    fine, coarse = ground_texture(2), ground_texture(3)
    low = camera_pose(0.0, 0.0, 80.0)
    high = camera_pose(0.0, 0.0, 160.0)
    for order in ((low, high), (high, low)):
        mosaic = TileMosaic(FRAME, GROUND_ALT, INTR, 19, min_coverage=0.99)
        for k, pose in enumerate(order):
            mosaic.add(_view(fine if pose is low else coarse, pose, k,
                             sigma=1.0 if pose is low else 2.5))
        tiles = mosaic.flush()
        assert tiles
        seen_low = _coverage_of(low, tiles)
        for t in tiles:
            # pixels the low (finer) camera saw show its world, never the high one's
            mask = seen_low[t.tile]
            assert mask.mean() > 0.3
            err = np.abs(t.image.astype(int) - truth_tile(fine, t.tile).astype(int))
            assert np.median(err[mask]) < 4
            other = np.abs(t.image.astype(int) - truth_tile(coarse, t.tile).astype(int))
            assert np.median(other[mask]) > 20  # and not the coarse view's world there
            # the largest sigma of the frames that painted the tile is kept (conservative)
            assert t.sigma_m == (2.5 if len(t.frames) == 2 else 1.0)
            if order[0] is low and mask.mean() > 0.999:
                assert len(t.frames) == 1  # the coarse view came second: improved nothing


def test_tile_finished_once_the_aircraft_moved_on():
    tex = ground_texture(4)
    mosaic = TileMosaic(FRAME, GROUND_ALT, INTR, 19, min_coverage=0.99, idle_frames=2)
    done = []
    for k in range(8):  # flying north 40 m per frame
        done += mosaic.add(_view(tex, camera_pose(-150.0 + 40.0 * k, 0.0, 120.0), k))
    assert done, "tiles left behind are finished during the flight"
    assert mosaic.open_tiles > 0
    for t in done:
        assert _shift_px(t.image, truth_tile(tex, t.tile)) < 0.25


def test_alignment_to_the_map_removes_a_pose_error_within_its_sigma():
    tex = ground_texture(5)
    true_pose = camera_pose(0.0, 0.0, 170.0, 0.03, -0.02, 0.7)
    frame = render(tex, true_pose)
    off = true_pose.p_cam_ned + np.array([2.5, -1.5, 0.0])  # believed position: 2.9 m off

    def run(reference, sigma):
        m = TileMosaic(FRAME, GROUND_ALT, INTR, 19, min_coverage=0.99, reference=reference)
        m.add(FrameView(0, T0, frame, off, true_pose.R_cam_to_ned, sigma))
        return m, m.flush()

    _, plain = run(None, 2.0)
    assert plain and any(_shift_px(t.image, truth_tile(tex, t.tile)) > 8 for t in plain)
    m, aligned = run(lambda t: truth_tile(tex, t), 2.0)
    assert m.frames_aligned == 1
    assert all(_shift_px(t.image, truth_tile(tex, t.tile)) < 0.5 for t in aligned)
    # a correction beyond 3 sigma of the pose is not the map's to make: the pose stands
    m, kept = run(lambda t: truth_tile(tex, t), 0.5)
    assert m.frames_aligned == 0
    assert any(_shift_px(t.image, truth_tile(tex, t.tile)) > 8 for t in kept)
