"""Descriptor matching: mutual nearest neighbours with a ratio test.

Descriptors are unit vectors, so similarity is a dot product and squared distance 2 − 2·sim.
A pair is kept when each is the other's nearest neighbour and the nearest is clearly closer
than the second nearest (Lowe's ratio on distances). This is the matcher for both SIFT and
XFeat: LighterGlue is not exported (see `terrafix.inference.export`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from terrafix.vision.errors import VisionError


@dataclass(frozen=True, slots=True)
class Matches:
    """idx0, idx1: (M,) int64 indices into the two feature sets; similarity: (M,) float32."""

    idx0: np.ndarray
    idx1: np.ndarray
    similarity: np.ndarray

    def __len__(self) -> int:
        return len(self.idx0)


def match_mutual(desc0: np.ndarray, desc1: np.ndarray, ratio: float = 0.95,
                 min_similarity: float = 0.0) -> Matches:
    """Mutual nearest neighbours of desc0 (N, D) and desc1 (M, D), unit-norm float32."""
    if desc0.ndim != 2 or desc1.ndim != 2 or desc0.shape[1] != desc1.shape[1]:
        raise VisionError(f"descriptor shapes {desc0.shape} and {desc1.shape} do not match")
    empty = Matches(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    if len(desc0) == 0 or len(desc1) == 0:
        return empty
    sim = desc0 @ desc1.T
    nn01 = np.argmax(sim, axis=1)
    best = sim[np.arange(len(desc0)), nn01]
    # Mutual check without an argmax down the columns (strided, slow): i ↔ j is mutual when
    # sim[i, j] is also the maximum of column j.
    col_max = sim.max(axis=0)
    idx0 = np.nonzero(best >= col_max[nn01])[0]
    idx1 = nn01[idx0]
    best = best[idx0]
    keep = best >= min_similarity
    if ratio < 1.0 and sim.shape[1] > 1 and len(idx0):
        row = sim[idx0]
        row[np.arange(len(idx0)), idx1] = -np.inf
        second = row.max(axis=1)
        d_best = np.sqrt(np.maximum(2.0 - 2.0 * best, 0.0))
        d_second = np.sqrt(np.maximum(2.0 - 2.0 * second, 0.0))
        keep &= d_best < ratio * d_second
    return Matches(idx0[keep].astype(np.int64), idx1[keep].astype(np.int64),
                   best[keep].astype(np.float32))
