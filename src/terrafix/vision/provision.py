"""Provisioning step: map features and the retrieval index for a tile cache (before flight).

hloc-style step: `main(config, cache_root, raster_for_zoom, extractor) -> Path` computes, for
each configured map level (zoom), the local features of the whole cached mosaic and the chunk
index, and writes the manifest ``<cache root>/features/vps.json`` that `VisualPositioner.open`
reads. Map features are computed here once, never per frame.

Levels: a fine level (z19, ~0.23 m/px at 40° latitude) for low flights whose footprint is a
couple of hundred metres, and a coarse one (z18, ~0.46 m/px) for higher flights. Chunk size
follows the footprint of the flights each level serves (REQUIREMENTS N2 asks for 600–800 m with
40–50% overlap; for low flights the chunks are sized to the footprint).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from terrafix.progress import progress
from terrafix.vision.errors import VisionError
from terrafix.vision.features import FeatureExtractor, Features
from terrafix.vision.mapfeatures import (
    MapFeatureConfig,
    MapFeatures,
    MapRaster,
    extract_map_features,
)
from terrafix.vision.retrieval import RetrievalIndex, make_chunks

log = logging.getLogger(__name__)


class LevelConfig(BaseModel):
    """One map level: zoom, retrieval chunk side (m) and overlap (fraction)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    z: int = Field(ge=10, le=22)
    chunk_m: float = Field(gt=0)
    overlap: float = Field(ge=0.0, lt=0.95)


class ProvisionConfig(BaseModel):
    """What `terrafix vps provision` builds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    levels: tuple[LevelConfig, ...] = (LevelConfig(z=19, chunk_m=300.0, overlap=0.5),
                                       LevelConfig(z=18, chunk_m=700.0, overlap=0.45))
    keypoints_per_mpx: int = 4096
    vocabulary_size: int = 64


def levels_for_zooms(zooms: list[int] | set[int]) -> tuple[LevelConfig, ...]:
    """The levels to build for a cache that holds `zooms`: the default level of each zoom
    that has one, else the default chunking of the nearest default zoom (fine levels serve
    low flights with footprint-sized chunks, coarse ones the 600-800 m chunks of N2)."""
    if not zooms:
        raise VisionError("the cache holds no tiles: provision tiles first "
                          "(terrafix tiles provision ...)")
    defaults = {lv.z: lv for lv in ProvisionConfig().levels}
    out = []
    for z in sorted(set(zooms), reverse=True):
        near = defaults.get(z) or defaults[min(defaults, key=lambda d: abs(d - z))]
        out.append(LevelConfig(z=z, chunk_m=near.chunk_m, overlap=near.overlap))
    return tuple(out)


def main(config: ProvisionConfig, cache_root: str | Path,
         rasters_for_zoom: Callable[[int], list[MapRaster]],
         extractor: FeatureExtractor, merge_areas: bool = False) -> Path:
    """Build features + index for every level over every raster; returns the manifest path.

    Chunks are laid over each raster's valid extent (disjoint cached areas), or, with
    `merge_areas` (the rasters are windows of a tile store's mosaic), over the extent of each
    group of touching windows (one group per disjoint cached area)."""
    root = Path(cache_root)
    manifest_path = root / "features" / "vps.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    levels = manifest.setdefault("levels", {})
    done = []
    bar = progress(f"vps provision {extractor.name}", len(config.levels), "levels")
    natives: list[float] = []
    with bar as line:
        for lv in config.levels:
            n_features, n_chunks, natives = _provision_level(root, lv, config,
                                                             rasters_for_zoom, extractor,
                                                             merge_areas)
            done.append(lv.z)
            line.advance(figures=f"z{lv.z}: {n_features} features, {n_chunks} chunks")
    if natives:
        manifest["native_gsd_m"] = float(np.median(natives))
    levels[extractor.name] = sorted(set(levels.get(extractor.name, [])) | set(done),
                                    reverse=True)
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return manifest_path


def _provision_level(root: Path, lv: LevelConfig, config: ProvisionConfig,
                     rasters_for_zoom: Callable[[int], list[MapRaster]],
                     extractor: FeatureExtractor, merge_areas: bool
                     ) -> tuple[int, int, list[float]]:
    """Features and the retrieval index of one level; (features, chunks, native GSDs)."""
    t0 = time.perf_counter()
    rasters = rasters_for_zoom(lv.z)
    if not rasters:
        raise VisionError(f"no map raster at zoom {lv.z}")
    fcfg = MapFeatureConfig(keypoints_per_mpx=config.keypoints_per_mpx)
    parts = [extract_map_features(r, extractor, fcfg) for r in rasters]
    feats = Features(np.concatenate([f.keypoints for f in parts]),
                     np.concatenate([f.descriptors for f in parts]),
                     np.concatenate([f.scores for f in parts]))
    _, lat_c = rasters[0].centre_lonlat
    MapFeatures.write(root, extractor.name, lv.z, feats, lat_c)
    stored = MapFeatures.open(root, extractor.name, lv.z, in_memory=False)
    chunk_sets = []
    if merge_areas:
        for x0, y0, x1, y1 in _connected_extents(rasters):
            chunk_sets.append(make_chunks(x0, y0, x1, y1, lv.z, lat_c, lv.chunk_m,
                                          lv.overlap))
    for r in ([] if merge_areas else rasters):
        ys, xs = np.nonzero(r.valid)
        chunk_sets.append(make_chunks(r.px_x0 + xs.min(), r.px_y0 + ys.min(),
                                      r.px_x0 + xs.max() + 1, r.px_y0 + ys.max() + 1,
                                      lv.z, r.centre_lonlat[1], lv.chunk_m, lv.overlap))
    chunks = np.concatenate(chunk_sets)
    index = RetrievalIndex.build(root, stored, chunks, config.vocabulary_size)
    log.info("provisioned %s z%d: %d features, %d chunks in %.1f s", extractor.name, lv.z,
             len(stored), len(index), time.perf_counter() - t0)
    return len(stored), len(index), [r.native_gsd_m for r in rasters if r.native_gsd_m]


def _connected_extents(rasters: list[MapRaster]) -> list[tuple[float, float, float, float]]:
    """Valid-pixel extents (x0, y0, x1, y1) in global px of the groups of rasters whose
    extents touch (union–find over bounding boxes)."""
    boxes = []
    for r in rasters:
        ys, xs = np.nonzero(r.valid)
        boxes.append((r.px_x0 + xs.min(), r.px_y0 + ys.min(), r.px_x0 + xs.max() + 1,
                      r.px_y0 + ys.max() + 1))
    parent = list(range(len(boxes)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(boxes):
        for j in range(i + 1, len(boxes)):
            b = boxes[j]
            if a[0] <= b[2] + 1 and b[0] <= a[2] + 1 and a[1] <= b[3] + 1 and b[1] <= a[3] + 1:
                parent[find(i)] = find(j)
    groups: dict[int, list[tuple[float, float, float, float]]] = {}
    for i, b in enumerate(boxes):
        groups.setdefault(find(i), []).append(b)
    return [(min(b[0] for b in g), min(b[1] for b in g), max(b[2] for b in g),
             max(b[3] for b in g)) for g in groups.values()]
