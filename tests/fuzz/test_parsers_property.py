"""Property tests (Hypothesis) on every parser of untrusted input, bounded for the suite.

Two kinds: each fuzz target of tests/fuzz/targets.py takes random and mutated inputs without
a crash (an exception outside its documented family, or an error that does not name its
input file); and the parsers keep their promises on generated input — a correctly signed
MAVLink frame with any field values is accepted and its replay rejected, a frame with a wrong
CRC, link id or signature never reaches a handler, any MSP v2 frame survives garbage and any
split of the stream, a truncated tile is always refused, a torn flight log yields exactly a
prefix of its messages, an upload manifest round-trips. The long campaign is bench/fuzz.py.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.targets import FuzzTarget, all_targets, mavlink_frame

FAST = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
SLOW = settings(max_examples=25, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
SLOW_TARGETS = {"geotiff_provisioning", "mbtiles_provisioning", "mcap_flight_log"}


def _mutated(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    """A seed with a few bytes overwritten, inserted or cut off."""
    edit = st.tuples(st.sampled_from("oit"), st.integers(0, 1 << 16), st.binary(min_size=1,
                                                                                max_size=8))

    def apply(args: tuple[bytes, list]) -> bytes:
        data, edits = bytearray(args[0]), args[1]
        for op, at, blob in edits:
            i = at % (len(data) + 1)
            if op == "o":
                data[i:i + len(blob)] = blob
            elif op == "i":
                data[i:i] = blob
            else:
                del data[i:]
        return bytes(data)

    return st.tuples(st.sampled_from(seeds), st.lists(edit, min_size=1, max_size=4)).map(apply)


@pytest.fixture(scope="module")
def opened(tmp_path_factory) -> dict[str, tuple[FuzzTarget, list[bytes]]]:
    out = {}
    for t in all_targets():
        work = tmp_path_factory.mktemp(t.name)
        t.open(work / "run")
        out[t.name] = (t, t.seeds(work))
    return out


@pytest.mark.parametrize("name", [t.name for t in all_targets()])
def test_no_input_crashes_a_parser(opened, name: str) -> None:
    target, seeds = opened[name]
    for s in seeds:  # the seeds themselves are valid input
        target.run(s)
    inputs = st.one_of(st.binary(max_size=600), _mutated(seeds))

    @(SLOW if name in SLOW_TARGETS else FAST)
    @given(data=inputs)
    def check(data: bytes) -> None:
        target.run(data)  # raises FuzzCrashError on a crash

    check()


# --- MAVLink: what the signing link promises ----------------------------------------------------
KEY = bytes(range(1, 33))


@pytest.fixture
def signed_rx():
    from terrafix.autopilot.channel import MavlinkChannel
    from terrafix.autopilot.signing import SigningKey
    from tests.fuzz.targets import _NullTransport

    rx = MavlinkChannel(_NullTransport(), system_id=245, component_id=191, name="prop")
    rx.enable_signing(SigningKey(KEY), sign_outgoing=False)
    got: list = []
    rx.subscribe("*", lambda m, t: got.append(m))
    yield rx, got
    rx.close()


def _telemetry_ids() -> list[int]:
    from terrafix.autopilot import constants as C

    return [C.DIALECT.MAVLINK_MSG_ID_RAW_IMU, C.DIALECT.MAVLINK_MSG_ID_ATTITUDE,
            C.DIALECT.MAVLINK_MSG_ID_GPS_RAW_INT, C.DIALECT.MAVLINK_MSG_ID_STATUSTEXT,
            C.DIALECT.MAVLINK_MSG_ID_SCALED_PRESSURE]


@FAST
@given(msg_index=st.integers(0, 4), payload=st.binary(min_size=1, max_size=60),
       damage=st.sampled_from(["none", "crc", "link_id", "signature", "truncate", "replay",
                               "stale", "unsigned"]),
       cut=st.integers(1, 50))
def test_signed_link_accepts_exactly_the_well_signed_fresh_frames(signed_rx, msg_index: int,
                                                                   payload: bytes, damage: str,
                                                                   cut: int) -> None:
    from terrafix.autopilot.signing import signing_timestamp_now

    rx, got = signed_rx
    got.clear()
    ts = signing_timestamp_now() + 100 + len(got)
    msg_id = _telemetry_ids()[msg_index]
    frame = bytearray(mavlink_frame(msg_id, payload, sign_key=None if damage == "unsigned"
                                    else KEY, timestamp=1 if damage == "stale" else ts))
    if damage == "crc":
        frame[10 + len(payload)] ^= 0x01
    elif damage == "link_id":
        frame[-13] ^= 0x01
    elif damage == "signature":
        frame[-3] ^= 0x80
    elif damage == "truncate":
        frame = frame[: max(1, len(frame) - cut)]
    before = rx.stats()
    rx.feed(bytes(frame), 1, whole_packets=True)
    if damage == "replay":
        rx.feed(bytes(frame), 2, whole_packets=True)
    after = rx.stats()
    if damage in ("none", "replay"):
        assert len(got) == 1 and got[0].get_msgId() == msg_id
        if damage == "replay":
            assert after.rejected_total == before.rejected_total + 1
    else:
        assert got == []
        assert after.rejected_total + after.malformed > before.rejected_total + before.malformed


# --- MSP v2 --------------------------------------------------------------------------------------
@FAST
@given(function=st.integers(0, 0xFFFF), payload=st.binary(max_size=300),
       garbage=st.binary(max_size=40), splits=st.lists(st.integers(1, 400), max_size=5))
def test_msp_frames_survive_garbage_and_any_split(function: int, payload: bytes, garbage: bytes,
                                                  splits: list[int]) -> None:
    from terrafix.autopilot.msp import MspV2Parser, encode_frame

    stream = garbage.replace(b"$X", b"") + encode_frame(function, payload)
    parser = MspV2Parser()
    frames, pos = [], 0
    for n in [*splits, len(stream)]:
        frames += parser.feed(stream[pos:pos + n])
        pos += n
    assert [(f.function, f.payload) for f in frames][-1:] == [(function, payload)]


# --- tile JPEG -----------------------------------------------------------------------------------
@FAST
@given(seed=st.integers(0, 2), cut=st.integers(1, 4000))
def test_a_truncated_tile_is_always_refused(seed: int, cut: int) -> None:
    from terrafix.tiles.errors import InvalidTileError
    from terrafix.tiles.jpeg import check_tile_jpeg
    from tests.fuzz.targets import _tile_bytes

    tile = _tile_bytes(seed)
    check_tile_jpeg(tile, "whole")
    with pytest.raises(InvalidTileError, match="expected a complete 256x256 JPEG"):
        check_tile_jpeg(tile[: max(0, len(tile) - cut)], "cut")


# --- MCAP: a torn log is a prefix --------------------------------------------------------------
@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[bytes, list[bytes]]:
    from terrafix.recorder import FlightLog, FlightRecorder

    folder = tmp_path_factory.mktemp("rec") / "flight"
    rec = FlightRecorder(folder, flight_id="prop", config_hash="0" * 64)
    p = rec.producer("nav/solution", {"type": "object",
                                      "properties": {"i": {"type": "integer"}}})
    for i in range(30):
        p.record(1000 * i, {"i": i})
    rec.close()
    seg = sorted(folder.glob("segment-*.mcap"))[0]
    return seg.read_bytes(), [m.data for m in FlightLog(folder).messages()]


@SLOW
@given(cut=st.integers(0, 1 << 20), tail=st.binary(max_size=30))
def test_a_torn_flight_log_reads_back_a_prefix_of_its_messages(recorded, tmp_path_factory,
                                                               cut: int, tail: bytes) -> None:
    from terrafix.recorder import FlightLog
    from terrafix.recorder.errors import RecorderFormatError

    whole, messages = recorded
    folder = tmp_path_factory.mktemp("torn")
    (folder / "segment-00001.mcap").write_bytes(whole[: cut % (len(whole) + 1)] + tail)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            read = [m.data for m in FlightLog(folder).messages()]
        except RecorderFormatError as exc:
            assert str(folder) in str(exc)
            return
    if not tail:  # a kill -9 tears the last record and writes nothing after it
        assert read == messages[: len(read)]
    else:  # garbage after a tear can complete the torn record: all before it is intact
        assert read[:-1] == messages[: max(0, len(read) - 1)]


# --- upload protocol ---------------------------------------------------------------------------
@FAST
@given(seq=st.integers(0, 10**9), n=st.integers(0, 3), sigma=st.floats(0, 1e3),
       session=st.text(max_size=20), extra=st.dictionaries(st.text(max_size=5), st.integers(),
                                                         max_size=2))
def test_upload_batch_manifests_round_trip_or_are_refused_cleanly(seq: int, n: int, sigma: float,
                                                                  session: str,
                                                                  extra: dict) -> None:
    from terrafix.upload.protocol import PROTOCOL_VERSION, BatchManifest, ProtocolError

    tiles = [{"z": 19, "x": i, "y": 7, "sha256": f"{i:064x}", "capture_utc":
              "2025-06-01T10:00:00+00:00", "sigma_m": sigma, "trust": "normal",
              "change_score": None, "frames": []} for i in range(n)]
    doc = {"v": PROTOCOL_VERSION, "session_id": session, "flight_id": "F", "batch_seq": seq,
           "tiles": tiles, **extra}
    try:
        parsed = BatchManifest.parse(json.dumps(doc).encode())
    except ProtocolError as exc:
        assert str(exc)
        return
    again = BatchManifest.parse(json.dumps(parsed.to_dict()).encode())
    assert again == parsed and parsed.batch_seq == seq and len(parsed.tiles) == n


# --- HTTP API (Schemathesis over the OpenAPI) --------------------------------------------------
def test_the_provider_api_never_answers_5xx_nor_hangs() -> None:
    from tests.fuzz.api import fuzz_openapi, provider_service

    with provider_service() as (url, headers):
        result = fuzz_openapi(url, headers, max_examples=25, timeout_s=10.0)
    assert result["inputs"] >= 25 * len(result["operations"]) * 0.5
    assert result["crashes"] == 0, result["crash_examples"]
    assert result["hangs"] == 0


def test_a_config_file_with_invalid_utf8_is_a_clear_error(tmp_path: Path) -> None:
    """Found by fuzzing: the loaders raised a bare UnicodeDecodeError."""
    from terrafix.app.fly import FlyConfig, FlyError
    from terrafix.sim.errors import ScenarioError
    from terrafix.sim.scenario import load_scenario

    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'flight_id = "\xff\xfe"\n')
    with pytest.raises(FlyError, match=r"bad\.toml"):
        FlyConfig.load(bad)
    with pytest.raises(ScenarioError, match=r"bad\.toml"):
        load_scenario(bad)


def test_mbtiles_with_untyped_columns_is_refused_without_allocating(tmp_path: Path) -> None:
    """Found by fuzzing: a corrupt page raised sqlite3.DatabaseError; an integer tile_data
    or a huge zoom would have been turned into bytes(n) / 1 << z."""
    import sqlite3
    from datetime import date

    from terrafix.tiles import open_store
    from terrafix.tiles.errors import ProvisioningError
    from terrafix.tiles.provision.mbtiles import import_mbtiles

    (tmp_path / "store").mkdir()
    store = open_store(tmp_path / "store")
    for row in [(18, 1, 2, 10**12), (10**9, 1, 2, b"x"), ("18", 1, 2, b"x")]:
        path = tmp_path / "bad.mbtiles"
        path.unlink(missing_ok=True)
        con = sqlite3.connect(path)
        con.execute("CREATE TABLE tiles (zoom_level, tile_column, tile_row, tile_data)")
        con.execute("INSERT INTO tiles VALUES (?, ?, ?, ?)", row)
        con.commit()
        con.close()
        with pytest.raises(ProvisioningError, match=r"bad\.mbtiles"):
            import_mbtiles(store, path, capture_date=date(2024, 5, 1))
    store.close()


def test_a_geotiff_outside_the_mercator_world_is_refused(tmp_path: Path) -> None:
    """Found by fuzzing: bounds that project to infinity raised OverflowError."""
    from datetime import date

    import numpy as np
    import rasterio
    from affine import Affine

    from terrafix.tiles import open_store
    from terrafix.tiles.errors import ProvisioningError
    from terrafix.tiles.provision.geotiff import provision_geotiff

    path = tmp_path / "far.tif"
    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8",
                       crs="EPSG:4326", transform=Affine(1.0, 0, 0.0, 0, -1.0, 95.0)) as dst:
        dst.write(np.full((8, 8), 9, np.uint8), 1)
    (tmp_path / "store").mkdir()
    with open_store(tmp_path / "store") as store, \
            pytest.raises(ProvisioningError, match=r"far\.tif.*georeferencing"):
        provision_geotiff(store, path, zooms=[10], capture_date=date(2024, 5, 1))


def _geotiff_bytes(tmp_path: Path, pixel_m: float = 4.0, size_px: int = 24) -> bytes:
    """A small synthetic UTM 13N GeoTIFF (the fuzz target's seed): pixel_m square pixels."""
    import numpy as np
    import rasterio
    from affine import Affine

    path = tmp_path / "seed.tif"
    data = (np.arange(size_px * size_px).reshape(size_px, size_px) % 200 + 10).astype(np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=size_px, height=size_px, count=1,
                       dtype="uint8", crs="EPSG:32613", nodata=0,
                       transform=Affine(pixel_m, 0, 480000.0, 0, -pixel_m, 4440000.0)) as dst:
        dst.write(data, 1)
    return path.read_bytes()


def _provision_refusing_work(path: Path, zooms: list[int]):
    """provision_geotiff, failing the test (instead of hanging it) as soon as a tile plan is
    accepted and cut: the progress callback raises with the plan's size."""
    from datetime import date

    from terrafix.tiles import open_store
    from terrafix.tiles.provision.geotiff import provision_geotiff

    def progress(done: int, total: int) -> None:
        raise AssertionError(f"{path.name} was accepted: {total} tiles planned")

    root = Path(tempfile.mkdtemp(prefix="store-", dir=path.parent))
    with open_store(root) as store:
        return provision_geotiff(store, path, zooms=zooms, capture_date=date(2024, 5, 1),
                                 on_progress=progress)


def test_a_geotiff_whose_pixel_height_is_garbled_to_a_huge_value_is_refused(
        tmp_path: Path) -> None:
    """Found by fuzzing (bench/fuzz.py, geotiff_provisioning, 2 hangs): one mutated byte in
    ModelPixelScaleTag made the pixel 1.6e116 m tall; the bounds still projected to finite
    Web Mercator ones and the import planned 1e10 z17 tiles. Rebuilt here the same way: the
    tag's second double overwritten in the bytes of a synthetic GeoTIFF."""
    import struct

    from terrafix.tiles.errors import ProvisioningError

    seed = _geotiff_bytes(tmp_path)
    scale = struct.pack("<ddd", 4.0, 4.0, 0.0)  # ModelPixelScaleTag (33550) values
    assert seed.count(scale) == 1
    for garbled_y in (1.576e116, 6.2e231, 5.0e4):
        bad = seed.replace(scale, struct.pack("<ddd", 4.0, garbled_y, 0.0))
        path = tmp_path / f"garbled-{garbled_y:.0e}.tif"
        path.write_bytes(bad)
        with pytest.raises(ProvisioningError) as err:
            _provision_refusing_work(path, [17])
        msg = str(err.value)
        assert path.name in msg and "coarser than a z17 tile" in msg, msg
        assert f"4 x {garbled_y:.4g} m" in msg, msg


def test_the_ungarbled_geotiff_and_a_zoom_beyond_the_tile_scheme(tmp_path: Path) -> None:
    """Controls of the test above: the seed itself is cut (its plan is accepted: the progress
    callback is reached), and a zoom outside 0..24 is a clear error naming the file."""
    from terrafix.tiles.errors import ProvisioningError

    path = tmp_path / "seed-copy.tif"
    path.write_bytes(_geotiff_bytes(tmp_path))
    with pytest.raises(AssertionError, match=r"accepted: \d+ tiles planned"):
        _provision_refusing_work(path, [17])
    for z in (25, -1):
        with pytest.raises(ProvisioningError, match=rf"seed-copy\.tif: zoom {z} is not"):
            _provision_refusing_work(path, [z])
