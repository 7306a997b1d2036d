"""Place recognition: the map cut into overlapping retrieval chunks, one global descriptor per
chunk in a FAISS index, and the search that proposes chunks for a frame.

Global descriptor: VLAD over the chunk's stored local descriptors (the same XFeat or SIFT
descriptors used for matching), with a k-means vocabulary learned from the map at
provisioning, intra-normalised and power-normalised (signed square root), then L2-normalised
so that inner product = cosine similarity. Why VLAD: it reuses the local features the frame
needs anyway (no second network in the per-frame budget), it is robust to the frame covering
only part of a chunk, and the frame is already north-up at map scale (see
`terrafix.vision.ortho`), so the local descriptors of frame and map are comparable.

Chunks are squares of `chunk_m` metres with `overlap` between neighbours (defaults 700 m and
45%, REQUIREMENTS N2); for low flights they are sized to the camera footprint by the
provisioning configuration. Stored under ``<cache root>/retrieval/<extractor>/z<zoom>/``:
``chunks.npy`` (C, 4) float64 global-pixel rectangles [x0, y0, x1, y1], ``vocabulary.npy``
(k, D) float32, ``index.faiss`` (FAISS inner-product index over (C, k·D) descriptors) and
``meta.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from terrafix.geo.tiles import global_px_to_lonlat, ground_resolution_m_per_px
from terrafix.vision.errors import VisionError
from terrafix.vision.mapfeatures import MapFeatures


def make_chunks(x0: float, y0: float, x1: float, y1: float, z: int, lat_deg: float,
                chunk_m: float, overlap: float) -> np.ndarray:
    """Square chunks (C, 4) [x0, y0, x1, y1] in global pixels covering a rectangle; the last
    row/column is shifted inwards so that chunks never leave the rectangle when it is larger
    than one chunk."""
    if not (0.0 <= overlap < 0.95) or not chunk_m > 0:
        raise VisionError(f"chunk size must be > 0 and overlap in [0, 0.95), got {chunk_m} m, "
                          f"{overlap}")
    side = chunk_m / ground_resolution_m_per_px(z, lat_deg)
    step = side * (1.0 - overlap)

    def starts(a: float, b: float) -> np.ndarray:
        if b - a <= side:
            return np.array([(a + b - side) / 2.0])
        n = int(np.ceil((b - a - side) / step)) + 1
        s = a + step * np.arange(n)
        s[-1] = b - side
        return np.unique(s)

    xs, ys = starts(x0, x1), starts(y0, y1)
    gx, gy = np.meshgrid(xs, ys)
    return np.column_stack((gx.ravel(), gy.ravel(), gx.ravel() + side, gy.ravel() + side))


def train_vocabulary(descriptors: np.ndarray, k: int = 64, seed: int = 0,
                     max_samples: int = 200_000) -> np.ndarray:
    """k-means centroids (k, D) float32 of unit descriptors (spherical: re-normalised)."""
    rng = np.random.default_rng(seed)
    d = np.asarray(descriptors, np.float32)
    if len(d) > max_samples:
        d = d[rng.choice(len(d), max_samples, replace=False)]
    if len(d) < 4 * k:
        raise VisionError(f"{len(d)} descriptors are too few for a {k}-word vocabulary")
    km = faiss.Kmeans(d.shape[1], k, niter=20, seed=seed, spherical=True, verbose=False)
    km.train(np.ascontiguousarray(d))
    return km.centroids.astype(np.float32)


def vlad(descriptors: np.ndarray, vocabulary: np.ndarray) -> np.ndarray:
    """VLAD (k·D,) float32 of descriptors (N, D) against vocabulary (k, D): residual sums per
    nearest word, intra-normalised, signed square root, L2-normalised. Zero vector if N = 0."""
    k, dim = vocabulary.shape
    out = np.zeros((k, dim), np.float32)
    if len(descriptors):
        d = np.asarray(descriptors, np.float32)
        word = np.argmax(d @ vocabulary.T, axis=1)
        # Residual sums per word as one (k, N) @ (N, D) product (np.add.at is ~10× slower).
        assign = np.zeros((k, len(d)), np.float32)
        assign[word, np.arange(len(d))] = 1.0
        out = assign @ d - assign.sum(axis=1)[:, None] * vocabulary
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out = np.where(norms > 0, out / np.maximum(norms, 1e-12), 0.0)
    v = out.ravel()
    v = np.sign(v) * np.sqrt(np.abs(v))
    n = np.linalg.norm(v)
    return (v / n if n > 0 else v).astype(np.float32)


@dataclass(frozen=True, slots=True)
class Candidates:
    """Chunks proposed for a frame: ids (K,) int64 into the chunk table, similarity (K,)."""

    ids: np.ndarray
    similarity: np.ndarray


class RetrievalIndex:
    """Chunks, vocabulary and FAISS index of one extractor at one zoom."""

    def __init__(self, folder: Path, meta: dict, chunks: np.ndarray, vocabulary: np.ndarray,
                 index: faiss.Index) -> None:
        self.folder = folder
        self.meta = meta
        self.z: int = int(meta["z"])
        self.chunks = chunks
        self.vocabulary = vocabulary
        self.index = index
        cx = (chunks[:, 0] + chunks[:, 2]) / 2.0
        cy = (chunks[:, 1] + chunks[:, 3]) / 2.0
        lon, lat = global_px_to_lonlat(cx, cy, self.z)
        self.centres_lonlat = np.column_stack((lon, lat))

    @staticmethod
    def folder_for(cache_root: str | Path, extractor: str, z: int) -> Path:
        return Path(cache_root) / "retrieval" / extractor / f"z{z}"

    @staticmethod
    def build(cache_root: str | Path, features: MapFeatures, chunks: np.ndarray,
              vocabulary_size: int = 64, min_features: int = 50) -> RetrievalIndex:
        """Describe every chunk from the stored map features and write the index. Chunks with
        fewer than `min_features` features (no imagery) are dropped."""
        vocab = train_vocabulary(np.asarray(features.descriptors, np.float32),
                                 vocabulary_size)
        keep, descs = [], []
        for i, (x0, y0, x1, y1) in enumerate(chunks):
            _, f = features.query(x0, y0, x1, y1)
            if len(f) >= min_features:
                keep.append(i)
                descs.append(vlad(f.descriptors, vocab))
        if not keep:
            raise VisionError("no retrieval chunk holds enough map features")
        matrix = np.stack(descs)
        index = faiss.IndexFlatIP(matrix.shape[1])
        index.add(matrix)
        folder = RetrievalIndex.folder_for(cache_root, features.extractor, features.z)
        folder.mkdir(parents=True, exist_ok=True)
        kept = chunks[np.array(keep)]
        np.save(folder / "chunks.npy", kept)
        np.save(folder / "vocabulary.npy", vocab)
        faiss.write_index(index, str(folder / "index.faiss"))
        meta = {"z": features.z, "extractor": features.extractor, "count": len(kept),
                "vocabulary_size": vocabulary_size, "dim": int(matrix.shape[1])}
        (folder / "meta.json").write_text(json.dumps(meta, indent=1))
        return RetrievalIndex(folder, meta, kept, vocab, index)

    @staticmethod
    def open(cache_root: str | Path, extractor: str, z: int) -> RetrievalIndex:
        folder = RetrievalIndex.folder_for(cache_root, extractor, z)
        if not (folder / "meta.json").is_file():
            raise VisionError(f"no {extractor} retrieval index at zoom {z} in {cache_root} "
                              f"(expected {folder}); provision the cache first")
        meta = json.loads((folder / "meta.json").read_text())
        return RetrievalIndex(folder, meta, np.load(folder / "chunks.npy"),
                              np.load(folder / "vocabulary.npy"),
                              faiss.read_index(str(folder / "index.faiss")))

    def __len__(self) -> int:
        return len(self.chunks)

    def near(self, lat_deg: float, lon_deg: float, radius_m: float) -> np.ndarray:
        """Ids (M,) of chunks whose square comes within radius_m of a point."""
        gsd = ground_resolution_m_per_px(self.z, lat_deg)
        from terrafix.geo.tiles import lonlat_to_global_px

        px, py = lonlat_to_global_px(lon_deg, lat_deg, self.z)
        dx = np.maximum(np.maximum(self.chunks[:, 0] - px, px - self.chunks[:, 2]), 0.0)
        dy = np.maximum(np.maximum(self.chunks[:, 1] - py, py - self.chunks[:, 3]), 0.0)
        return np.nonzero(np.hypot(dx, dy) * gsd <= radius_m)[0].astype(np.int64)

    def search(self, descriptor: np.ndarray, k: int,
               restrict_to: np.ndarray | None = None) -> Candidates:
        """Top-k chunks by cosine similarity, over the whole index or only `restrict_to`."""
        q = np.ascontiguousarray(descriptor.reshape(1, -1), dtype=np.float32)
        params = None
        if restrict_to is not None:
            if len(restrict_to) == 0:
                return Candidates(np.zeros(0, np.int64), np.zeros(0, np.float32))
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(
                np.ascontiguousarray(restrict_to, dtype=np.int64)))
        sims, ids = self.index.search(q, min(k, len(self)), params=params)
        ok = ids[0] >= 0
        return Candidates(ids[0][ok].astype(np.int64), sims[0][ok].astype(np.float32))
