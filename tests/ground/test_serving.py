"""The loop closes (U5): after two agreeing flights of two aircraft, `terrafix tiles provision
provider` against the ground service puts the TRUSTED imagery, with its capture date, in the
next flight's cache; other tiles come as the base imagery; candidates never do."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import tomli_w
from typer.testing import CliRunner

from terrafix.app.cli import app as terrafix_app
from terrafix.geo.tiles import TileId, tile_bounds
from terrafix.ground.client import UploadTile
from terrafix.ground.config import GroundConfig
from terrafix.ground.serving import SOURCE, seed_base
from terrafix.tiles import NewTile, open_store
from terrafix.tiles.jpeg import encode_gray

from .conftest import Ground, scene, tile_ids, view

BASE_DATE = date(2024, 5, 1)
runner = CliRunner()


def _bbox(tiles: list[TileId]) -> str:
    bounds = [tile_bounds(t) for t in tiles]
    inset = 1e-6  # inside the outer tiles, so exactly these tiles are needed
    return ",".join(str(v) for v in (min(b[0] for b in bounds) + inset,
                                     min(b[1] for b in bounds) + inset,
                                     max(b[2] for b in bounds) - inset,
                                     max(b[3] for b in bounds) - inset))


def test_provisioning_from_the_ground_gets_trusted_tiles(ground: Ground, tmp_path: Path
                                                         ) -> None:
    tiles = tile_ids(8)  # one row of 8 tiles
    grounds = {t: scene(200 + i) for i, t in enumerate(tiles)}
    seed_base(ground.svc.serving, [
        NewTile(t, encode_gray(view(grounds[t], seed=90)), BASE_DATE, "satellite-base")
        for t in tiles])
    flown = datetime.now(UTC) - timedelta(minutes=40)
    promoted, single, poisoned = tiles[:4], tiles[4:6], tiles[6:]

    def flight_tiles(device_seed: int, which: list[TileId], shift_m: float = 0.0
                     ) -> list[UploadTile]:
        return [UploadTile(encode_gray(view(grounds[t], (shift_m + 0.3 * device_seed, -0.2),
                                            seed=device_seed * 10 + i)),
                           t.z, t.x, t.y, flown + timedelta(seconds=device_seed))
                for i, t in enumerate(which)]

    sent: dict[str, list[UploadTile]] = {}
    for name, which, shift in (("a1", promoted + single + poisoned, 0.0),
                               ("a2", promoted, 0.0), ("a3", poisoned, 15.0)):
        with ground.client(ground.device(name), f"{name}-flight") as c:
            c.open()
            seed = int(name[1])
            sent[name] = flight_tiles(seed, which, shift)
            assert {o["status"] for o in c.send(sent[name])} == {"accepted"}
    assert ground.svc.voter.wait_idle(120)
    votes = {v.tile: v for v in ground.svc.db.votes()}
    assert all(votes[t].status == "TRUSTED" for t in promoted)
    assert all(votes[t].status == "PENDING" for t in single)
    assert all(votes[t].status == "CONFLICT" for t in poisoned)

    cache = tmp_path / "next-flight-cache"
    result = runner.invoke(terrafix_app, [
        "tiles", "provision", "provider", ground.url, "--root", str(cache), "--zoom", "19",
        "--bbox", _bbox(tiles), "--api-key", ground.cfg.provider_api_keys[0],
        "--ca-file", str(ground.tls.ca_cert)])
    assert result.exit_code == 0, result.output
    with open_store(cache, read_only=True) as store:
        newest = {t: max(sent["a1"][i], sent["a2"][i], key=lambda u: u.captured_utc)
                  for i, t in enumerate(promoted)}
        for t in promoted:
            rec = store.get_record(t)
            assert rec is not None and rec.source == SOURCE
            assert rec.capture_date == flown.date()
            assert rec.sha256 == hashlib.sha256(newest[t].jpeg).hexdigest()
        candidate_hashes = {hashlib.sha256(u.jpeg).hexdigest() for u in
                            sent["a1"][4:] + sent["a3"]}
        for t in single + poisoned:
            rec = store.get_record(t)
            assert rec is not None and rec.source == "satellite-base"
            assert rec.capture_date == BASE_DATE and rec.sha256 not in candidate_hashes


def test_vote_and_status_commands(ground_config: GroundConfig, tls_files, tmp_path: Path
                                  ) -> None:
    from .conftest import running_ground

    tiles = tile_ids(3)
    grounds = {t: scene(300 + i) for i, t in enumerate(tiles)}
    flown = datetime.now(UTC) - timedelta(minutes=10)
    with running_ground(ground_config, tls_files) as g:
        for dev in (1, 2):
            with g.client(g.device(f"a{dev}"), f"f{dev}") as c:
                c.open()
                c.send([UploadTile(encode_gray(view(grounds[t], seed=dev * 7 + i)), t.z, t.x,
                                   t.y, flown) for i, t in enumerate(tiles)])
        assert g.svc.voter.wait_idle(120)
    conf = tmp_path / "ground.toml"
    conf.write_text(tomli_w.dumps(ground_config.model_dump(mode="json", by_alias=True,
                                                           exclude_none=True)))
    result = runner.invoke(terrafix_app, ["ground", "vote", "--config", str(conf), "--bbox",
                                          _bbox(tiles), "--zoom", "19"])
    assert result.exit_code == 0, result.output
    assert "3 tiles evaluated" in result.output and "3 trusted" in result.output
    result = runner.invoke(terrafix_app, ["ground", "status", "--config", str(conf)])
    assert result.exit_code == 0 and "6 candidates; 3 trusted" in result.output
