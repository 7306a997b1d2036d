"""Map-side local features: computed once at provisioning over the cached mosaic, stored with
the tile cache, and queried by region in flight (never recomputed per frame).

Layout under ``<cache root>/features/<extractor>/z<zoom>/``:
- ``keypoints.npy``  (N, 2) float64, global Web-Mercator pixels at that zoom (x east, y south);
- ``descriptors.npy`` (N, D) float16, unit norm (float16 halves the disk footprint; the
  cosine similarity changes by < 1e-3; widened to float32 in RAM when opened for flight);
- ``scores.npy``     (N,) float32;
- ``blocks.npz``     sparse block grid: features sorted by block key (row · 2^z + column of
  `block_px`-pixel blocks), the occupied keys and their start offsets, so that a region query
  touches only the blocks it overlaps, however scattered the cached areas are;
- ``meta.json``      zoom, extractor, block size, bounds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from terrafix.geo.tiles import global_px_to_lonlat, ground_resolution_m_per_px
from terrafix.vision.errors import VisionError
from terrafix.vision.features import FeatureExtractor, Features


@dataclass(frozen=True, slots=True)
class MapRaster:
    """A georeferenced north-up map image in Web-Mercator global pixels.

    image: (H, W) uint8; pixel (col i, row j) covers global pixels [px_x0 + i, px_x0 + i + 1)
    × [px_y0 + j, px_y0 + j + 1) at zoom z. valid: (H, W) bool, pixels that carry imagery.
    native_gsd_m: ground resolution of the source imagery (m) when known — a z19 mosaic of
    0.5 m imagery is blurrier than its 0.23 m pixels.
    """

    image: np.ndarray
    z: int
    px_x0: float
    px_y0: float
    valid: np.ndarray
    native_gsd_m: float | None = None

    @property
    def centre_lonlat(self) -> tuple[float, float]:
        h, w = self.image.shape
        lon, lat = global_px_to_lonlat(self.px_x0 + w / 2.0, self.px_y0 + h / 2.0, self.z)
        return float(lon), float(lat)


@dataclass(frozen=True, slots=True)
class MapFeatureConfig:
    """window_px: extraction window side (an XFeat model size); overlap_px: window overlap
    (keypoints are owned by the window whose core holds them); keypoints_per_mpx: density
    budget; block_px: storage block side."""

    window_px: int = 1024
    overlap_px: int = 64
    keypoints_per_mpx: int = 4096
    block_px: int = 256


def extract_map_features(raster: MapRaster, extractor: FeatureExtractor,
                         config: MapFeatureConfig | None = None) -> Features:
    """Features of a whole raster, keypoints in global pixels (float64 in a Features whose
    keypoints array is float64)."""
    cfg = config or MapFeatureConfig()
    H, W = raster.image.shape
    step = cfg.window_px - cfg.overlap_px
    half = cfg.overlap_px // 2
    kps, descs, scores = [], [], []
    budget = max(int(cfg.keypoints_per_mpx * cfg.window_px ** 2 / 1e6), 16)
    for y0 in range(0, max(H - cfg.overlap_px, 1), step):
        for x0 in range(0, max(W - cfg.overlap_px, 1), step):
            x1, y1 = min(x0 + cfg.window_px, W), min(y0 + cfg.window_px, H)
            valid = raster.valid[y0:y1, x0:x1]
            if valid.mean() < 0.02:
                continue
            f = extractor.extract(np.ascontiguousarray(raster.image[y0:y1, x0:x1]), budget,
                                  valid)
            if not len(f):
                continue
            kx, ky = f.keypoints[:, 0] + x0, f.keypoints[:, 1] + y0
            core = ((kx >= (x0 + half if x0 > 0 else 0)) & (kx < (x1 - half if x1 < W else W))
                    & (ky >= (y0 + half if y0 > 0 else 0)) & (ky < (y1 - half if y1 < H else H)))
            kps.append(np.column_stack((kx[core] + raster.px_x0 + 0.5,
                                        ky[core] + raster.px_y0 + 0.5)))
            descs.append(f.descriptors[core])
            scores.append(f.scores[core])
    if not kps:
        raise VisionError("no map features extracted: the raster carries no usable imagery")
    return Features(np.concatenate(kps).astype(np.float64), np.concatenate(descs),
                    np.concatenate(scores))


class MapFeatures:
    """Stored map features of one extractor at one zoom, queried by global-pixel rectangle."""

    def __init__(self, folder: Path, meta: dict, keypoints: np.ndarray,
                 descriptors: np.ndarray, scores: np.ndarray, block_keys: np.ndarray,
                 block_start: np.ndarray) -> None:
        self.folder = folder
        self.meta = meta
        self.z: int = int(meta["z"])
        self.extractor: str = meta["extractor"]
        self.block_px: int = int(meta["block_px"])
        self.row_stride = 1 << 32
        self.keypoints = keypoints
        self.descriptors = descriptors
        self.scores = scores
        self.block_keys = block_keys
        self.block_start = block_start
        self.gsd_m = ground_resolution_m_per_px(self.z, float(meta["centre_lat_deg"]))

    @staticmethod
    def folder_for(cache_root: str | Path, extractor: str, z: int) -> Path:
        return Path(cache_root) / "features" / extractor / f"z{z}"

    @staticmethod
    def write(cache_root: str | Path, extractor: str, z: int, features: Features,
              centre_lat_deg: float, block_px: int = 256) -> Path:
        """Store features (keypoints in global px) sorted by block; returns the folder."""
        folder = MapFeatures.folder_for(cache_root, extractor, z)
        folder.mkdir(parents=True, exist_ok=True)
        kp = features.keypoints.astype(np.float64)
        bx = np.floor(kp[:, 0] / block_px).astype(np.int64)
        by = np.floor(kp[:, 1] / block_px).astype(np.int64)
        block = by * (1 << 32) + bx
        order = np.lexsort((-features.scores, block))
        keys, start = np.unique(block[order], return_index=True)
        start = np.concatenate((start, [len(order)])).astype(np.int64)
        np.save(folder / "keypoints.npy", kp[order])
        np.save(folder / "descriptors.npy", features.descriptors[order].astype(np.float16))
        np.save(folder / "scores.npy", features.scores[order].astype(np.float32))
        np.savez(folder / "blocks.npz", keys=keys, start=start)
        meta = {"z": z, "extractor": extractor, "block_px": block_px,
                "count": len(kp),
                "descriptor_dim": int(features.descriptors.shape[1]),
                "centre_lat_deg": centre_lat_deg}
        (folder / "meta.json").write_text(json.dumps(meta, indent=1))
        return folder

    @staticmethod
    def open(cache_root: str | Path, extractor: str, z: int,
             in_memory: bool = True) -> MapFeatures:
        """Open a stored level. in_memory (flight default): keypoints and scores are read
        into RAM and descriptors widened to float32 once, so that a per-frame region query
        is a plain gather (converting float16 and paging a memory map cost ~10 ms per
        frame); about 270 bytes per feature, ~170 MB for the benchmark's two levels.
        in_memory=False keeps everything memory-mapped (tools, very large caches)."""
        folder = MapFeatures.folder_for(cache_root, extractor, z)
        if not (folder / "meta.json").is_file():
            raise VisionError(f"no {extractor} map features at zoom {z} in {cache_root} "
                              f"(expected {folder}); provision the cache first")
        meta = json.loads((folder / "meta.json").read_text())
        blocks = np.load(folder / "blocks.npz")
        mode = None if in_memory else "r"
        descriptors = np.load(folder / "descriptors.npy", mmap_mode=mode)
        if in_memory:
            descriptors = descriptors.astype(np.float32)
        return MapFeatures(folder, meta, np.load(folder / "keypoints.npy", mmap_mode=mode),
                           descriptors, np.load(folder / "scores.npy", mmap_mode=mode),
                           blocks["keys"], blocks["start"])

    def __len__(self) -> int:
        return len(self.keypoints)

    def query(self, x0: float, y0: float, x1: float, y1: float,
              max_features: int | None = None) -> tuple[np.ndarray, Features]:
        """Features inside the global-pixel rectangle [x0, x1) × [y0, y1).

        Returns (indices (M,) int64 into this store, Features with float64 global-px
        keypoints and float32 descriptors); at most max_features (the strongest, unordered).
        """
        idx = self.query_indices(x0, y0, x1, y1, max_features)
        return idx, Features(np.asarray(self.keypoints[idx]),
                             np.asarray(self.descriptors[idx], dtype=np.float32),
                             np.asarray(self.scores[idx]))

    def query_indices(self, x0: float, y0: float, x1: float, y1: float,
                      max_features: int | None = None) -> np.ndarray:
        """Indices (M,) int64 of the features inside [x0, x1) × [y0, y1), at most
        max_features (the strongest), without gathering their descriptors."""
        b = self.block_px
        cx0, cx1 = int(np.floor(x0 / b)), int(np.floor((x1 - 1e-9) / b))
        cy0, cy1 = int(np.floor(y0 / b)), int(np.floor((y1 - 1e-9) / b))
        parts = []
        for row in range(cy0, cy1 + 1):
            lo, hi = np.searchsorted(self.block_keys, [row * self.row_stride + cx0,
                                                       row * self.row_stride + cx1 + 1])
            if hi > lo:
                parts.append(np.arange(self.block_start[lo], self.block_start[hi]))
        idx = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        kp = self.keypoints[idx]
        inside = (kp[:, 0] >= x0) & (kp[:, 0] < x1) & (kp[:, 1] >= y0) & (kp[:, 1] < y1)
        idx = idx[inside]
        if max_features is not None and len(idx) > max_features:
            scores = np.asarray(self.scores[idx])
            idx = idx[np.argpartition(-scores, max_features - 1)[:max_features]]
        return idx
