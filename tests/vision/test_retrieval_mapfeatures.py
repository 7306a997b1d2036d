from __future__ import annotations

import numpy as np
import pytest

from terrafix.geo.tiles import ground_resolution_m_per_px
from terrafix.vision.errors import VisionError
from terrafix.vision.features import Features
from terrafix.vision.mapfeatures import MapFeatures
from terrafix.vision.retrieval import RetrievalIndex, make_chunks, vlad

Z = 18
LAT = 40.15


def test_chunks_cover_the_area_with_the_requested_overlap() -> None:
    gsd = ground_resolution_m_per_px(Z, LAT)
    side_px = 700.0 / gsd
    x0, y0 = 1_000_000.0, 2_000_000.0
    x1, y1 = x0 + 5000.0 / gsd, y0 + 3000.0 / gsd
    ch = make_chunks(x0, y0, x1, y1, Z, LAT, 700.0, 0.45)
    assert np.allclose(ch[:, 2] - ch[:, 0], side_px)
    assert ch[:, 0].min() == pytest.approx(x0) and ch[:, 2].max() == pytest.approx(x1)
    assert ch[:, 1].min() == pytest.approx(y0) and ch[:, 3].max() == pytest.approx(y1)
    xs = np.unique(ch[:, 0])
    steps = np.diff(xs)[:-1] / side_px  # the last column is pulled inwards
    assert np.allclose(steps, 0.55)
    with pytest.raises(VisionError):
        make_chunks(x0, y0, x1, y1, Z, LAT, 700.0, 0.99)


def test_vlad_is_unit_norm_and_zero_for_no_descriptors() -> None:
    rng = np.random.default_rng(0)
    vocab = rng.normal(size=(8, 16)).astype(np.float32)
    vocab /= np.linalg.norm(vocab, axis=1, keepdims=True)
    d = rng.normal(size=(100, 16)).astype(np.float32)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    assert np.linalg.norm(vlad(d, vocab)) == pytest.approx(1.0, abs=1e-5)
    assert not vlad(np.zeros((0, 16), np.float32), vocab).any()


def _clustered_features(rng, x0: float, y0: float, n: int, centres: np.ndarray) -> Features:
    kp = np.column_stack((rng.uniform(x0, x0 + 600, n), rng.uniform(y0, y0 + 600, n)))
    d = centres[rng.integers(len(centres), size=n)] + rng.normal(scale=0.3, size=(n, 64))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return Features(kp, d.astype(np.float32), rng.random(n).astype(np.float32))


def test_map_features_query_and_retrieval_over_scattered_areas(tmp_path) -> None:
    """Two areas 10^6 px apart (sparse blocks), each with its own descriptor 'land cover':
    a query made of one area's descriptors retrieves that area's chunks; a prior restricts
    the search to chunks near it."""
    rng = np.random.default_rng(1)
    cover_a = rng.normal(size=(6, 64))
    cover_b = rng.normal(size=(6, 64))
    fa = _clustered_features(rng, 5_000_000, 5_000_000, 4000, cover_a)
    fb = _clustered_features(rng, 6_000_000, 5_500_000, 4000, cover_b)
    feats = Features(np.vstack([fa.keypoints, fb.keypoints]),
                     np.vstack([fa.descriptors, fb.descriptors]),
                     np.concatenate([fa.scores, fb.scores]))
    MapFeatures.write(tmp_path, "xfeat", Z, feats, LAT, block_px=128)
    store = MapFeatures.open(tmp_path, "xfeat", Z)
    idx, q = store.query(5_000_100, 5_000_100, 5_000_300, 5_000_200)
    inside = ((fa.keypoints[:, 0] >= 5_000_100) & (fa.keypoints[:, 0] < 5_000_300)
              & (fa.keypoints[:, 1] >= 5_000_100) & (fa.keypoints[:, 1] < 5_000_200))
    assert len(idx) == inside.sum() > 0
    np.testing.assert_array_equal(
        store.query_indices(5_000_100, 5_000_100, 5_000_300, 5_000_200), idx)
    assert store.descriptors.dtype == np.float32  # widened once in RAM for flight
    mapped = MapFeatures.open(tmp_path, "xfeat", Z, in_memory=False)
    assert isinstance(mapped.descriptors, np.memmap) and mapped.descriptors.dtype == np.float16
    np.testing.assert_allclose(mapped.query(5_000_100, 5_000_100, 5_000_300, 5_000_200)[1]
                               .descriptors, q.descriptors)
    assert np.all((q.keypoints[:, 0] >= 5_000_100) & (q.keypoints[:, 0] < 5_000_300))
    _, top = store.query(4_999_000, 4_999_000, 5_001_000, 5_001_000, max_features=100)
    assert len(top) == 100 and top.scores.min() >= np.sort(fa.scores)[-100] - 1e-6

    gsd = ground_resolution_m_per_px(Z, LAT)
    chunks = np.vstack([make_chunks(5_000_000, 5_000_000, 5_000_600, 5_000_600, Z, LAT,
                                    150 * gsd, 0.5),
                        make_chunks(6_000_000, 5_500_000, 6_000_600, 5_500_600, Z, LAT,
                                    150 * gsd, 0.5)])
    index = RetrievalIndex.build(tmp_path, store, chunks, vocabulary_size=12)
    index = RetrievalIndex.open(tmp_path, "xfeat", Z)
    n_a = int(np.sum(index.chunks[:, 0] < 5_500_000))
    query = _clustered_features(rng, 0, 0, 300, cover_b)
    cands = index.search(vlad(query.descriptors, index.vocabulary), 10)
    assert np.all(index.chunks[cands.ids[:5], 0] >= 6_000_000)
    lon, lat = index.centres_lonlat[0]
    near = index.near(lat, lon, 50.0)
    assert len(near) and np.all(near < n_a)
    restricted = index.search(vlad(query.descriptors, index.vocabulary), 10, near)
    assert set(restricted.ids) <= set(near)
