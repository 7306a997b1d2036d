"""`terrafix fly` refuses take-off on a cache that does not match its signed manifest (T5, U4).

A real SQLite tile cache with tiles at two flight zooms, feature and index files under
features/ and retrieval/, and a model folder; the manifest is signed by a key in the
operator's config folder and the onboard config pins its fingerprint. Each tampering must
stop the take-off with the file named; the untampered cache passes the cache check (the
take-off then stops later, at the missing flight controller).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w

from terrafix.app.fly import FlyConfig, FlyError, OnboardProgram
from terrafix.geo.tiles import tile_bounds
from terrafix.tiles import open_store
from terrafix.tiles.manifest import build_manifest, generate_keypair, load_private_key, write_signed
from tests.short_flights import free_udp_port
from tests.tiles.conftest import Z, block_of_tiles, jpeg, new_tiles
from tests.tiles.test_manifest import MODEL_NAMES, _children, _corridor, write_flight_files

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def signed_cache(tmp_path: Path):
    """(cache root, model folder, fingerprint, tiles, operator key file)."""
    root, models = tmp_path / "cache", tmp_path / "models"
    root.mkdir()
    tiles18 = block_of_tiles(3, 2)
    tiles = tiles18 + _children(tiles18)
    with open_store(root) as store:
        store.put_many(new_tiles(tiles))
        write_flight_files(root, models)
        key_file = tmp_path / "operator" / "provisioning_ed25519.pem"
        fp = generate_keypair(key_file, key_file.with_suffix(".pub.pem"))
        key = load_private_key(key_file)
        m = build_manifest(store, "F-T", 40.138, -105.14, 1500.0, _corridor(tiles18),
                           (Z, Z + 1), models=[models / n for n in MODEL_NAMES],
                           signer=key.public_key())
        write_signed(m, key, root / "manifest.json")
    return root, models, fp, tiles, key_file


def _config(tmp: Path, root: Path, models: Path, fp: str | None) -> dict:
    t = tile_bounds(block_of_tiles(1, 1)[0])
    return {
        "flight_id": "takeoff-test", "output": str(tmp / "out"),
        "camera": {"source": "device"},
        "takeoff": {"lat_deg": (t[1] + t[3]) / 2, "lon_deg": (t[0] + t[2]) / 2,
                    "alt_m": 1500.0, "ground_alt_m": 1500.0},
        "map": {"cache": str(root), **({"signer_fingerprint": fp} if fp else {})},
        "autopilot": {"connection": f"udpout:127.0.0.1:{free_udp_port()}"},
        "wait_for_fc_s": 0.3,
        "navigation": {"registration": {"enabled": False}, "vps": {"model_cache": str(models)}},
        "recorder": {"folder": str(tmp / "flights")},
    }


def _takeoff_error(tmp: Path, root: Path, models: Path, fp: str | None) -> str:
    with pytest.raises(FlyError) as info:
        OnboardProgram(FlyConfig.from_dict(_config(tmp, root, models, fp))).takeoff()
    return str(info.value)


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x04
    path.write_bytes(bytes(data))


def test_the_untampered_cache_passes_the_cache_check(signed_cache, tmp_path: Path) -> None:
    root, models, fp, _tiles, _key = signed_cache
    msg = _takeoff_error(tmp_path, root, models, fp)
    assert "no flight controller" in msg  # got past the manifest


def test_take_off_needs_a_pinned_key(signed_cache, tmp_path: Path) -> None:
    root, models, _fp, _tiles, _key = signed_cache
    assert "no provisioning key pinned" in _takeoff_error(tmp_path, root, models, None)


def test_another_pinned_key_refuses(signed_cache, tmp_path: Path) -> None:
    root, models, _fp, _tiles, _key = signed_cache
    msg = _takeoff_error(tmp_path, root, models, "0123456789abcdef0123456789abcdef")
    assert "take-off refused" in msg and "not by the pinned provisioning key" in msg


@pytest.mark.parametrize("what", ["tile-z18", "tile-z19", "feature", "index", "vocabulary",
                                  "model", "added", "removed", "private-key"])
def test_each_tampering_refuses_take_off_with_the_file_named(signed_cache, tmp_path: Path,
                                                             what: str) -> None:
    root, models, fp, tiles, key_file = signed_cache
    if what.startswith("tile"):
        z = int(what[-2:])
        t = [x for x in tiles if x.z == z][1]
        _flip(root / "tiles" / str(t.z) / str(t.x) / f"{t.y}.jpg")
        named = f"tiles/{t.z}/{t.x}/{t.y}.jpg"
    elif what == "feature":
        named = "features/xfeat/z19/descriptors.npy"
        _flip(root / named)
    elif what == "index":
        named = "retrieval/xfeat/z18/index.faiss"
        _flip(root / named)
    elif what == "vocabulary":
        named = "retrieval/xfeat/z19/vocabulary.npy"
        _flip(root / named)
    elif what == "model":
        named = f"model {MODEL_NAMES[1]}"
        _flip(models / MODEL_NAMES[1])
    elif what == "added":
        named = "features/xfeat/z18/more.npy"
        (root / named).write_bytes(jpeg(1))
    elif what == "removed":
        named = "retrieval/xfeat/z19/index.faiss"
        (root / named).unlink()
    else:
        named = "tiles/18/stray.dat"
        (root / named).write_bytes(key_file.read_bytes())
    msg = _takeoff_error(tmp_path, root, models, fp)
    assert msg.startswith("take-off refused"), msg
    assert named in msg, msg


def test_the_cli_exits_2_naming_the_file_and_on_a_key_in_the_cache(signed_cache,
                                                                   tmp_path: Path) -> None:
    root, models, fp, _tiles, key_file = signed_cache
    cfg = tmp_path / "fly.toml"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}

    def fly(flight_id: str) -> subprocess.CompletedProcess:
        cfg.write_text(tomli_w.dumps({**_config(tmp_path, root, models, fp),
                                      "flight_id": flight_id}))
        return subprocess.run([sys.executable, "-m", "terrafix.app.cli", "fly", "--config",
                               str(cfg)], capture_output=True, text=True, env=env, timeout=120,
                              cwd=ROOT)

    _flip(root / "retrieval" / "xfeat" / "z19" / "index.faiss")
    done = fly("cli-1")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "retrieval/xfeat/z19/index.faiss: sha256" in done.stderr
    _flip(root / "retrieval" / "xfeat" / "z19" / "index.faiss")  # restored
    (root / "provisioning_ed25519.pem").write_bytes(key_file.read_bytes())
    done = fly("cli-2")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "private key inside the flying folder" in done.stderr
    assert "provisioning_ed25519.pem" in done.stderr
