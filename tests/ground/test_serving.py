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


def test_a_trusted_tile_that_goes_into_conflict_is_no_longer_served(ground: Ground,
                                                                     tmp_path: Path) -> None:
    """Two aircraft agree: the tile is promoted and served. Two more aircraft then agree with
    each other on other content over the same period (independent flights disagree): the vote
    turns CONFLICT, the promoted tile is withdrawn, provisioning gets the base imagery again
    (or nothing where there was none), and the tile's status says what is served and what
    was withdrawn."""
    import ssl

    import httpx

    from terrafix.ground.client import OperatorClient

    based, unbased = tile_ids(2)
    grounds = {based: scene(400), unbased: scene(401)}
    base_jpeg = encode_gray(view(grounds[based], seed=90))
    seed_base(ground.svc.serving, [NewTile(based, base_jpeg, BASE_DATE, "satellite-base")])
    base_sha = hashlib.sha256(base_jpeg).hexdigest()
    flown = datetime.now(UTC) - timedelta(minutes=40)

    def fly(name: str, shift_m: float, at_s: int) -> dict[TileId, str]:
        tiles = [UploadTile(encode_gray(view(grounds[t], (shift_m + 0.2 * at_s, -0.1),
                                             seed=at_s * 10 + i)),
                            t.z, t.x, t.y, flown + timedelta(seconds=at_s))
                 for i, t in enumerate((based, unbased))]
        with ground.client(ground.device(name), f"{name}-flight") as c:
            c.open()
            assert {o["status"] for o in c.send(tiles)} == {"accepted"}
        return {u_t: hashlib.sha256(u.jpeg).hexdigest()
                for u_t, u in zip((based, unbased), tiles, strict=True)}

    def provisioned(label: str, tiles: list[TileId], exit_code: int = 0
                    ) -> dict[TileId, str | None]:
        cache = tmp_path / f"cache-{label}"
        result = runner.invoke(terrafix_app, [
            "tiles", "provision", "provider", ground.url, "--root", str(cache), "--zoom", "19",
            "--bbox", _bbox(tiles), "--api-key", ground.cfg.provider_api_keys[0],
            "--ca-file", str(ground.tls.ca_cert)])
        assert result.exit_code == exit_code, result.output
        with open_store(cache, read_only=True) as store:
            return {t: (r.sha256 if (r := store.get_record(t)) else None) for t in tiles}

    def status(t: TileId) -> dict:
        op = OperatorClient(ground.url, ground.cfg.operator_tokens[0],
                            ca_file=ground.tls.ca_cert)
        try:
            resp = op._c.get(f"/v1/admin/votes/{t.z}/{t.x}/{t.y}")
        finally:
            op.close()
        assert resp.status_code == 200, resp.text
        return resp.json()

    # 1. two aircraft agree (captured at +1 s and +4 s): promoted and served
    first = fly("a1", 0.0, 1)
    second = fly("a2", 0.0, 4)
    assert ground.svc.voter.wait_idle(120)
    promoted = {t: max((first[t], second[t]),
                       key=lambda h: ground.svc.db.get_candidate(h).captured_utc_s)
                for t in (based, unbased)}
    assert provisioned("trusted", [based, unbased]) == promoted
    s = status(based)
    assert s["status"] == "TRUSTED" and s["serving"]["source"] == SOURCE
    assert s["serving"]["sha256"] == promoted[based] == s["published_sha256"]

    # 2. two more aircraft agree with each other, 15 m away from the first pair, captured
    # in the same period (+2 s, +3 s): independent flights disagree
    fly("a3", 15.0, 2)
    fly("a4", 15.0, 3)
    assert ground.svc.voter.wait_idle(120)
    votes = {v.tile: v for v in ground.svc.db.votes()}
    assert votes[based].status == "CONFLICT" and votes[unbased].status == "CONFLICT"
    assert provisioned("conflict", [based]) == {based: base_sha}
    # nothing was served before the withdrawn publication: provisioning finds none
    assert provisioned("conflict-unbased", [unbased], exit_code=1) == {unbased: None}
    with open_store(tmp_path / "cache-conflict", read_only=True) as store:
        rec = store.get_record(based)
        assert rec is not None and rec.source == "satellite-base"
        assert rec.capture_date == BASE_DATE
    for t, source, sha in ((based, "satellite-base", base_sha), (unbased, None, None)):
        s = status(t)
        assert s["status"] == "CONFLICT" and s["published_sha256"] is None
        assert s["withdrawn_sha256"] == promoted[t]
        assert s["serving"]["source"] == source and s["serving"]["sha256"] == sha
    # the provider API itself no longer hands out the withdrawn bytes
    with httpx.Client(verify=ssl.create_default_context(cafile=str(ground.tls.ca_cert)),
                      timeout=30,
                      headers={"X-API-Key": ground.cfg.provider_api_keys[0]}) as h:
        r = h.get(f"{ground.url}/v1/tiles/{unbased.z}/{unbased.x}/{unbased.y}.jpg")
        assert r.status_code == 404
        r = h.get(f"{ground.url}/v1/tiles/{based.z}/{based.x}/{based.y}.jpg")
        assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == base_sha


def test_withdrawing_a_publication_serves_the_version_it_replaced(tmp_path: Path) -> None:
    """Base, then trusted T1, then trusted T2 (the ground changed): withdrawing T2 serves T1
    again (the previous trusted version), withdrawing it once more changes nothing, and a
    publication no longer served (newer base loaded since) is left alone."""
    from terrafix.ground.serving import open_superseded_store, publish, withdraw

    tile = tile_ids(1)[0]
    jpegs = [encode_gray(view(scene(500 + i), seed=i)) for i in range(4)]
    sha = [hashlib.sha256(j).hexdigest() for j in jpegs]
    t1 = datetime(2026, 6, 1, tzinfo=UTC).timestamp()
    t2 = datetime(2026, 7, 1, tzinfo=UTC).timestamp()
    with open_store(tmp_path / "serving") as serving, \
            open_superseded_store(tmp_path, None, "unused") as superseded:
        seed_base(serving, [NewTile(tile, jpegs[0], BASE_DATE, "satellite-base")])
        assert publish(serving, tile, jpegs[1], t1, superseded)
        assert publish(serving, tile, jpegs[2], t2, superseded)
        now = withdraw(serving, superseded, tile, sha[2])
        assert (now.source, now.sha256, now.capture_date) == (SOURCE, sha[1], "2026-06-01")
        assert withdraw(serving, superseded, tile, sha[2]).sha256 == sha[1]
        serving.put_many([NewTile(tile, jpegs[3], date(2026, 8, 1), "satellite-base")],
                         on_conflict="replace")
        assert withdraw(serving, superseded, tile, sha[1]).sha256 == sha[3]
