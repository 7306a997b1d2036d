"""`terrafix tiles ...` end to end through the real command-line app."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
import shapely
import typer
from shapely.geometry import mapping
from typer.testing import CliRunner, Result

from terrafix.app.cli import app as root_app
from terrafix.geo.tiles import tile_bounds
from terrafix.tiles import open_store
from terrafix.tiles.sqlite_backend import SqliteBackend
from tests.tiles.conftest import block_of_tiles, new_tiles

runner = CliRunner()


def _run(*args: str) -> Result:
    return runner.invoke(root_app, ["tiles", *args])


def _commands(group: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix]
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        if hasattr(cmd, "commands"):  # a sub-group (typer's groups are not click.Group)
            out += _commands(cmd, (*prefix, name))
        else:
            out.append((*prefix, name))
    return out


def test_help_works_on_every_tiles_command() -> None:
    group = typer.main.get_command(root_app).commands["tiles"]
    commands = _commands(group)
    assert ("provision", "geotiff") in commands and ("verify",) in commands
    for cmd in commands:
        result = _run(*cmd, "--help")
        assert result.exit_code == 0, (cmd, result.output)
        assert "Usage" in result.output


@pytest.fixture
def cache(tmp_path: Path) -> tuple[Path, list]:
    root = tmp_path / "cache"
    tiles = block_of_tiles(3, 3)
    with open_store(root) as store:
        store.put_many(new_tiles(tiles, capture=date(2024, 1, 10), source="cli-test"))
    return root, tiles


def test_info_reports_counts_zooms_dates_and_disk_use(cache) -> None:
    root, _tiles = cache
    result = _run("info", "--root", str(root), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["tiles"] == 9 and doc["zooms"] == {"18": 9}
    assert doc["capture_dates"] == {"2024-01-10": 9}
    assert doc["disk_bytes"]["tiles"] == doc["tile_bytes"] > 0
    text = _run("info", "--root", str(root))
    assert text.exit_code == 0 and "z18: 9" in text.output and "2024-01-10" in text.output


def test_sectors_then_explain_says_why_a_tile_is_rejected(cache, tmp_path: Path) -> None:
    root, tiles = cache
    sectors = tmp_path / "sectors.geojson"
    box = shapely.box(*tile_bounds(tiles[4])).buffer(-1e-7)
    sectors.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "geometry": mapping(box),
        "properties": {"name": "front-7", "classification": "active_conflict"}}]}))
    result = _run("sectors", str(sectors), "--root", str(root))
    assert result.exit_code == 0, result.output
    assert "1 sectors in force" in result.output
    lon, lat = box.centroid.x, box.centroid.y
    result = _run("explain", f"{lat}", f"{lon}", "--root", str(root), "--date", "2024-09-01")
    assert result.exit_code == 0, result.output
    assert "front-7" in result.output and "REJECTED" in result.output
    assert "2024-01-10" in result.output and "6 months" in result.output
    result = _run("explain", f"{lat}", f"{lon}", "--root", str(root), "--date", "2024-05-01")
    assert "FRESH" in result.output
    result = _run("explain", "10.0", "-20.0", "--root", str(root))
    assert result.exit_code == 0 and "cache miss" in result.output


def test_keygen_manifest_verify_accepts_then_refuses_a_changed_cache(cache,
                                                                      tmp_path: Path) -> None:
    root, tiles = cache
    priv, pub = tmp_path / "sign.pem", tmp_path / "sign.pub"
    assert _run("keygen", str(priv), str(pub)).exit_code == 0
    assert oct(priv.stat().st_mode & 0o777) == "0o600"
    assert _run("keygen", str(priv), str(pub)).exit_code == 2  # never overwrites a key
    corridor = tmp_path / "corridor.geojson"
    poly = shapely.union_all([shapely.box(*tile_bounds(t)) for t in tiles]).buffer(-1e-7)
    corridor.write_text(json.dumps({"type": "Feature", "geometry": mapping(poly),
                                    "properties": {}}))
    manifest = tmp_path / "manifest.json"
    result = _run("manifest", str(manifest), "--root", str(root), "--flight-id", "F-9",
                  "--origin", "40.138,-105.14,1500", "--corridor", str(corridor), "--zoom", "18",
                  "--key", str(priv))
    assert result.exit_code == 0, result.output
    result = _run("verify", str(manifest), "--root", str(root), "--public-key", str(pub))
    assert result.exit_code == 0, result.output
    assert "OK" in result.output and "9 tiles" in result.output
    with open_store(root) as store:
        assert "flight:F-9" in store.protected_areas()
        store.tile_path(tiles[0]).write_bytes(store.tile_path(tiles[1]).read_bytes())
    result = _run("verify", str(manifest), "--root", str(root), "--public-key", str(pub))
    assert result.exit_code == 1
    assert "REFUSED" in result.output and f"{tiles[0].x}/{tiles[0].y}" in result.output


def test_verify_names_a_changed_feature_file_an_extra_file_and_a_key_in_the_cache(
        cache, tmp_path: Path, monkeypatch) -> None:
    """The CLI end to end with the default key location (the config folder) and the
    fingerprint pin; features/ and retrieval/ are listed whole, models by --model."""
    from tests.tiles.test_manifest import MODEL_NAMES, write_flight_files

    root, tiles = cache
    monkeypatch.setenv("TERRAFIX_CONFIG_DIR", str(tmp_path / "operator"))
    result = _run("keygen")
    assert result.exit_code == 0, result.output
    key_file = tmp_path / "operator" / "provisioning_ed25519.pem"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    fp = result.output.split("fingerprint ")[1].split()[0]
    models = tmp_path / "models"
    write_flight_files(root, models)
    corridor = tmp_path / "corridor.geojson"
    poly = shapely.union_all([shapely.box(*tile_bounds(t)) for t in tiles]).buffer(-1e-7)
    corridor.write_text(json.dumps(mapping(poly)))
    manifest = tmp_path / "manifest.json"
    result = _run("manifest", str(manifest), "--root", str(root), "--flight-id", "F-10",
                  "--origin", "40.138,-105.14", "--corridor", str(corridor), "--zoom", "18",
                  *[a for n in MODEL_NAMES for a in ("--model", str(models / n))])
    assert result.exit_code == 0, result.output
    assert "2 models" in result.output
    verify = ("verify", str(manifest), "--root", str(root), "--fingerprint", fp,
              "--models", str(models))
    result = _run(*verify)
    assert result.exit_code == 0, result.output
    descriptors = root / "features" / "xfeat" / "z18" / "descriptors.npy"
    data = bytearray(descriptors.read_bytes())
    data[-1] ^= 0x80
    descriptors.write_bytes(bytes(data))
    result = _run(*verify)
    assert result.exit_code == 1 and "features/xfeat/z18/descriptors.npy: sha256" in result.output
    descriptors.write_bytes(bytes(data[:-1]) + bytes([data[-1] ^ 0x80]))
    assert _run(*verify).exit_code == 0
    (root / "features" / "xfeat" / "z18" / "extra.npy").write_bytes(b"\x93NUMPY")
    result = _run(*verify)
    assert result.exit_code == 1 and "features/xfeat/z18/extra.npy: extra file" in result.output
    (root / "features" / "xfeat" / "z18" / "extra.npy").unlink()
    (root / "backup.key").write_bytes(key_file.read_bytes())
    result = _run(*verify)
    assert result.exit_code == 1
    assert "private key inside the flying folder" in result.output and "backup.key" in \
        result.output


def test_manifest_refuses_a_corridor_the_cache_does_not_cover(cache, tmp_path: Path) -> None:
    root, tiles = cache
    priv, pub = tmp_path / "k.pem", tmp_path / "k.pub"
    _run("keygen", str(priv), str(pub))
    corridor = tmp_path / "c.geojson"
    w, s, e, n = tile_bounds(tiles[0])
    corridor.write_text(json.dumps(mapping(shapely.box(w - 0.01, s, e, n))))
    result = _run("manifest", str(tmp_path / "m.json"), "--root", str(root), "--flight-id",
                  "F", "--origin", "40,-105", "--corridor", str(corridor), "--zoom", "18",
                  "--key", str(priv))
    assert result.exit_code == 2 and "cache miss on the planned route" in result.output
    assert not (tmp_path / "m.json").exists()


def test_migrate_upgrades_an_older_store_explicitly(tmp_path: Path) -> None:
    root = tmp_path / "old"
    root.mkdir()
    import sqlite3

    sqlite3.connect(root / "tiles.sqlite").close()
    SqliteBackend(root / "tiles.sqlite", check_schema=False).migrate(target=1)
    result = _run("info", "--root", str(root))
    assert result.exit_code == 2 and "older" in result.output and "migrate" in result.output
    result = _run("migrate", "--root", str(root))
    assert result.exit_code == 0 and "1 -> 2" in result.output
    assert _run("info", "--root", str(root)).exit_code == 0


def test_reconcile_and_evict(cache) -> None:
    root, tiles = cache
    orphan = root / "tiles" / "18" / "1" / "2.jpg"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"stray")
    result = _run("reconcile", "--root", str(root), "--read-only")
    assert result.exit_code == 0 and "orphan file" in result.output and orphan.exists()
    result = _run("reconcile", "--root", str(root))
    assert result.exit_code == 0 and not orphan.exists()
    with open_store(root, reconcile="none") as store:
        one = store.get_record(tiles[0]).size_bytes
    result = _run("evict", "--root", str(root), "--budget-bytes", str(one * 9))
    assert "nothing to evict" in result.output
    result = _run("evict", "--root", str(root), "--budget-bytes", str(one))
    assert result.exit_code == 0 and "evicted" in result.output
    with open_store(root, read_only=True) as store:
        assert store.backend.totals()[1] <= one


def test_errors_are_one_clear_line_not_a_traceback(tmp_path: Path) -> None:
    result = _run("info", "--root", str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and "Traceback" not in result.output
