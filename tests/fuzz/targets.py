"""Fuzz targets shared by the property tests (tests/fuzz/) and the campaign (bench/fuzz.py).

Each target turns one input (bytes) into one call of a real parser of terrafix, the way the
program meets such input: MAVLink datagrams into a signing link and the FC telemetry decoder,
MSP v2 bytes into the iNav parser, tile bytes into the JPEG checks, files on disk into the
GeoTIFF/MBTiles provisioning, the TOML config and scenario loaders and the flight-log reader,
request bodies into the upload protocol's parsers.

Verdict per input (`FuzzTarget.run`): returning, or raising an exception of the target's
documented family with a non-empty message (that names the input file where the API takes a
path), is fine; any other exception is a crash (`FuzzCrashError`), and so is a documented
error whose message is empty or does not name the file (`UnclearError`). Hangs and memory are the
runner's business (bench/fuzz.py: per-input timeout, RSS limit).

Structure-aware modes: the first byte of an input picks how the rest is used, so that random
bytes also reach the deep code (a correctly signed MAVLink frame with random field values, an
MCAP segment torn at a random offset, a valid MBTiles file with one garbled page) and not
only the first length check.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import struct
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ONE_INPUT_MAX_BYTES = 1 << 16


class FuzzCrashError(Exception):
    """An input made a parser fail outside its documented exception family."""


class UnclearError(FuzzCrashError):
    """A documented error whose message is empty or does not name the input."""


@dataclass
class FuzzTarget:
    """One parser under fuzz. `make(workdir)` builds the per-process state and returns the
    one-input function; `seeds(workdir)` gives valid inputs to start mutating from."""

    name: str
    byte_level: bool
    family: tuple[type[BaseException], ...]
    make: Callable[[Path], Callable[[bytes], str | None]]
    seeds: Callable[[Path], list[bytes]]
    _fn: Callable[[bytes], str | None] | None = field(default=None, repr=False)

    def open(self, workdir: Path) -> FuzzTarget:
        workdir.mkdir(parents=True, exist_ok=True)
        self._fn = self.make(workdir)
        return self

    def run(self, data: bytes) -> str | None:
        """One input; raises FuzzCrashError on a crash (see the module docstring). Returns
        the documented error's message when the input was refused, else None."""
        assert self._fn is not None, "open() the target first"
        try:
            named = self._fn(data[:ONE_INPUT_MAX_BYTES])
        except FuzzCrashError:
            raise
        except self.family as exc:
            msg = str(exc)
            if not msg.strip():
                raise UnclearError(f"{self.name}: {type(exc).__name__} with an empty message") \
                    from exc
            wanted = getattr(exc, "__fuzz_input_name__", None)
            if wanted and wanted not in msg:
                raise UnclearError(f"{self.name}: {type(exc).__name__} does not name the input "
                                   f"{wanted}: {msg[:200]}") from exc
            return f"{type(exc).__name__}: {msg}"
        except Exception as exc:
            raise FuzzCrashError(f"{self.name}: {type(exc).__name__}: {exc}"[:500]) from exc
        del named
        return None


def _naming(exc: BaseException, name: str) -> BaseException:
    exc.__fuzz_input_name__ = name  # type: ignore[attr-defined]
    return exc


def _calling_with_file(fn: Callable[[Path], object], path: Path) -> None:
    """fn(path); a documented error must name the file (its name is checked by `run`)."""
    try:
        fn(path)
    except Exception as exc:
        raise _naming(exc, path.name) from None


# --- MAVLink ---------------------------------------------------------------------------------
_INBOUND_TYPES = ("HEARTBEAT", "RAW_IMU", "SCALED_IMU2", "HIGHRES_IMU", "ATTITUDE",
                  "SCALED_PRESSURE", "GPS_RAW_INT", "GPS2_RAW", "GLOBAL_POSITION_INT",
                  "STATUSTEXT", "EXTENDED_SYS_STATE", "COMMAND_ACK", "SYSTEM_TIME",
                  "GNSS_INTEGRITY")
_KEY = bytes(range(1, 33))


class _NullTransport:
    """A transport that is never read (inputs go to `MavlinkChannel.feed`) and drops writes."""

    description = "fuzz"
    datagram = True

    def wait_readable(self, timeout_s: float) -> bool:
        return False

    def read(self) -> bytes:
        return b""

    def write(self, data: bytes) -> None:
        pass

    def local_address(self) -> tuple[str, int] | None:
        return None

    def close(self) -> None:
        pass


def mavlink_frame(msg_id: int, payload: bytes, *, seq: int = 0, sysid: int = 1, compid: int = 1,
                  sign_key: bytes | None = None, link_id: int = 0, timestamp: int = 0) -> bytes:
    """A MAVLink 2 frame built by hand (any payload bytes, correct CRC; signed when a key is
    given) so that random field values reach the decoder."""
    from terrafix.autopilot import constants as C
    from terrafix.autopilot.signing import compute_signature

    mavlink = C.DIALECT
    payload = payload[:255]
    flags = 0x01 if sign_key is not None else 0x00
    header = struct.pack("<BBBBBBBHB", 0xFD, len(payload), flags, 0, seq & 0xFF, sysid, compid,
                         msg_id & 0xFFFF, (msg_id >> 16) & 0xFF)
    crc = mavlink.x25crc(header[1:] + payload)
    cls = mavlink.mavlink_map.get(msg_id)
    crc.accumulate(bytes([cls.crc_extra if cls is not None else 0]))
    frame = header + payload + struct.pack("<H", crc.crc)
    if sign_key is None:
        return frame
    frame += bytes([link_id & 0xFF]) + struct.pack("<Q", timestamp)[:6]
    return frame + compute_signature(sign_key, frame)


def _make_mavlink(signed: bool) -> Callable[[Path], Callable[[bytes], None]]:
    def make(_workdir: Path) -> Callable[[bytes], None]:
        from terrafix.autopilot import constants as C
        from terrafix.autopilot.channel import MavlinkChannel
        from terrafix.autopilot.inbound import InboundDecoder, InboundValueError
        from terrafix.autopilot.signing import SigningKey, signing_timestamp_now

        mavlink = C.DIALECT
        rx = MavlinkChannel(_NullTransport(), system_id=245, component_id=191, name="fuzz")
        if signed:
            rx.enable_signing(SigningKey(_KEY), sign_outgoing=False)
        decoder = InboundDecoder()
        failures: list[BaseException] = []

        def handler(msg, arrival_ns: int) -> None:
            try:
                decoder.decode(msg, arrival_ns)
            except InboundValueError:
                pass
            except Exception as exc:  # the channel counts it; the fuzzer must see it
                failures.append(exc)
                raise

        rx.subscribe("*", handler)
        ids = [getattr(mavlink, f"MAVLINK_MSG_ID_{n}") for n in _INBOUND_TYPES
               if hasattr(mavlink, f"MAVLINK_MSG_ID_{n}")]
        state = {"ts": signing_timestamp_now(), "t_ns": 1_000_000_000, "seq": 0}

        def one(data: bytes) -> None:
            if not data:
                return
            mode, rest = data[0] % 4, data[1:]
            state["t_ns"] += 10_000_000
            before = rx.stats().handler_errors
            if mode == 0:  # raw datagram
                rx.feed(rest, state["t_ns"], whole_packets=True)
            elif mode == 1:  # a byte stream cut into reads at fuzzed places
                cut = rest[0] if rest else 0
                for i in range(0, len(rest), max(1, cut)):
                    rx.feed(rest[i:i + max(1, cut)], state["t_ns"])
            else:  # a well-formed frame of a telemetry type with random fields, then damage
                if len(rest) < 3:
                    return
                msg_id = ids[rest[0] % len(ids)]
                op, body = rest[1] % 8, rest[2:]
                state["ts"] += 1
                state["seq"] += 1
                key = _KEY if (signed and op != 7) else None
                ts = 1 if op == 5 else state["ts"]
                frame = bytearray(mavlink_frame(msg_id, body, seq=state["seq"], sign_key=key,
                                                timestamp=ts))
                if op == 1 and body:  # truncated
                    frame = frame[: 1 + body[0] % len(frame)]
                elif op == 2:  # wrong CRC
                    frame[10 + len(body[:255])] ^= 0xFF
                elif op == 3 and key is not None:  # wrong link id
                    frame[-13] ^= 0x5A
                elif op == 6 and key is not None:  # wrong signature
                    frame[-1] ^= 0x01
                rx.feed(bytes(frame), state["t_ns"], whole_packets=True)
                if op == 4:  # replayed: the same signed timestamp again
                    rx.feed(bytes(frame), state["t_ns"] + 1, whole_packets=True)
            if failures:
                exc = failures.pop()
                failures.clear()
                raise FuzzCrashError(f"decoder: {type(exc).__name__}: {exc}") from exc
            if rx.stats().handler_errors != before:
                raise FuzzCrashError("a message handler failed")

        return one

    return make


def _mavlink_seeds(signed: bool) -> Callable[[Path], list[bytes]]:
    def seeds(_workdir: Path) -> list[bytes]:
        from terrafix.autopilot import constants as C
        from terrafix.autopilot.signing import signing_timestamp_now

        mavlink = C.DIALECT
        enc = mavlink.MAVLink(None, srcSystem=1, srcComponent=1)
        if signed:
            enc.signing.secret_key = bytearray(_KEY)
            enc.signing.sign_outgoing = True
            enc.signing.timestamp = signing_timestamp_now()
        msgs = [
            mavlink.MAVLink_heartbeat_message(1, 3, 128, 0, 4, 3),
            mavlink.MAVLink_raw_imu_message(123456, 10, -20, -1000, 1, 2, 3, 0, 0, 0),
            mavlink.MAVLink_attitude_message(1000, 0.1, -0.2, 1.5, 0.01, 0.0, 0.0),
            mavlink.MAVLink_scaled_pressure_message(1000, 850.5, 0.1, 2500),
            mavlink.MAVLink_gps_raw_int_message(123456789, 3, 404000000, -1051000000, 1500000,
                                                120, 150, 1500, 9000, 12),
            mavlink.MAVLink_statustext_message(4, b"GPS 1: jamming detected"),
            mavlink.MAVLink_global_position_int_message(1000, 404000000, -1051000000, 1500000,
                                                        100000, 10, 20, -5, 9000),
        ]
        out = []
        for i, m in enumerate(msgs):
            packet = m.pack(enc)
            out.append(b"\x00" + packet)
            if i == 1:
                out.append(b"\x01\x07" + packet + packet)
        ids = [getattr(mavlink, f"MAVLINK_MSG_ID_{n}") for n in _INBOUND_TYPES
               if hasattr(mavlink, f"MAVLINK_MSG_ID_{n}")]
        for k in range(len(ids)):
            out.append(bytes([2, k, 0]) + bytes(range(40)))
        return out

    return seeds


# --- MSP v2 ----------------------------------------------------------------------------------
def _make_msp(_workdir: Path) -> Callable[[bytes], None]:
    from terrafix.autopilot import constants as C
    from terrafix.autopilot.errors import MspError
    from terrafix.autopilot.msp import MAX_PAYLOAD, MspSensorGps, MspV2Parser

    parser = MspV2Parser()

    def one(data: bytes) -> None:
        if not data:
            return
        step = max(1, data[0])
        for i in range(1, len(data), step):
            for frame in parser.feed(data[i:i + step]):
                if frame.function == C.MSP2_SENSOR_GPS:
                    with contextlib.suppress(MspError):
                        MspSensorGps.unpack(frame.payload)
            if len(parser._buf) > 8 + MAX_PAYLOAD + 1:
                raise FuzzCrashError(f"MSP parser holds {len(parser._buf)} bytes (unbounded)")

    return one


def _msp_seeds(_workdir: Path) -> list[bytes]:
    from terrafix.autopilot import constants as C
    from terrafix.autopilot.msp import encode_frame

    frames = [encode_frame(C.MSP2_SENSOR_GPS, bytes(range(52))[:52]),
              encode_frame(0x1F03, b"")]
    return [b"\xff" + frames[0], b"\x05" + frames[0] + frames[1], b"\x01" + b"$X<" * 4]


# --- tile JPEG -------------------------------------------------------------------------------
def _make_jpeg(_workdir: Path) -> Callable[[bytes], None]:
    from terrafix.tiles.jpeg import check_tile_jpeg, decode_gray, jpeg_size

    def one(data: bytes) -> None:
        jpeg_size(data)
        img = decode_gray(data)
        if img is not None and img.shape != (256, 256):
            raise FuzzCrashError(f"decode_gray returned shape {img.shape}")
        check_tile_jpeg(data, "fuzz tile")

    return one


def _tile_bytes(seed: int) -> bytes:
    import numpy as np

    from terrafix.tiles.jpeg import encode_gray

    rng = np.random.default_rng(seed)
    img = (rng.random((256, 256)) * 255).astype(np.uint8)
    return encode_gray(img, quality=50 + seed * 10)


def _jpeg_seeds(_workdir: Path) -> list[bytes]:
    import cv2
    import numpy as np

    tiles = [_tile_bytes(s) for s in range(3)]
    _ok, progressive = cv2.imencode(".jpg", np.full((256, 256), 90, np.uint8),
                                   [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    _ok2, small = cv2.imencode(".jpg", np.zeros((16, 16), np.uint8))
    return [*tiles, progressive.tobytes(), small.tobytes(), tiles[0][:600]]


# --- GeoTIFF and MBTiles provisioning --------------------------------------------------------
def _fresh_store(workdir: Path):
    import shutil

    from terrafix.tiles import open_store

    root = workdir / "store"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    return open_store(root)


def _make_geotiff(workdir: Path) -> Callable[[bytes], None]:
    from datetime import date

    from terrafix.tiles.provision.geotiff import provision_geotiff

    store = _fresh_store(workdir)
    path = workdir / "input.tif"
    written = {"n": 0}

    def one(data: bytes) -> None:
        nonlocal store
        path.write_bytes(data)
        _calling_with_file(lambda p: provision_geotiff(
            store, p, zooms=[17], capture_date=date(2024, 5, 1), replace=True), path)
        written["n"] += 1
        if written["n"] % 500 == 0:  # keep the store small: tiles pile up otherwise
            store.close()
            store = _fresh_store(workdir)

    return one


def _geotiff_seeds(workdir: Path) -> list[bytes]:
    import numpy as np
    import rasterio
    from affine import Affine

    out = []
    for i, (dtype, w) in enumerate((("uint8", 24), ("uint16", 16))):
        p = workdir / f"seed{i}.tif"
        transform = Affine(4.0, 0, 480000.0, 0, -4.0, 4440000.0)
        data = (np.arange(w * w, dtype=np.float64).reshape(w, w) % 200 + 10).astype(dtype)
        with rasterio.open(p, "w", driver="GTiff", width=w, height=w, count=1, dtype=dtype,
                           crs="EPSG:32613", transform=transform, nodata=0) as dst:
            dst.write(data, 1)
        out.append(p.read_bytes())
        p.unlink()
    return out


def _make_mbtiles(workdir: Path) -> Callable[[bytes], None]:
    from datetime import date

    from terrafix.tiles.provision.mbtiles import import_mbtiles

    store = _fresh_store(workdir)
    path = workdir / "input.mbtiles"

    def one(data: bytes) -> None:
        for suffix in ("-journal", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        if data[:1] == b"\x01" and len(data) > 3:  # garble one page of a valid file
            base = bytearray(_MBTILES_SEED or b"")
            if base:
                at = int.from_bytes(data[1:3], "little") % len(base)
                base[at:at + len(data) - 3] = data[3:]
                data = bytes(base)
        path.write_bytes(data)
        _calling_with_file(lambda p: import_mbtiles(store, p, capture_date=date(2024, 5, 1),
                                                    replace=True), path)

    return one


_MBTILES_SEED: bytes | None = None


def _mbtiles_seeds(workdir: Path) -> list[bytes]:
    global _MBTILES_SEED
    p = workdir / "seed.mbtiles"
    p.unlink(missing_ok=True)
    con = sqlite3.connect(p)
    con.executescript("CREATE TABLE metadata (name TEXT, value TEXT);"
                      "CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, "
                      "tile_row INTEGER, tile_data BLOB);")
    con.executemany("INSERT INTO metadata VALUES (?, ?)",
                    [("name", "fuzz"), ("format", "jpg"), ("capture_date", "2024-05-01")])
    for i in range(2):
        con.execute("INSERT INTO tiles VALUES (?, ?, ?, ?)", (18, 53000 + i, 162000,
                                                             _tile_bytes(i)))
    con.commit()
    con.close()
    _MBTILES_SEED = p.read_bytes()
    p.unlink()
    return [_MBTILES_SEED, b"\x01\x00\x10" + b"\xff" * 64]


# --- TOML configs and scenarios --------------------------------------------------------------
def _make_fly_config(workdir: Path) -> Callable[[bytes], None]:
    from terrafix.app.fly import FlyConfig

    path = workdir / "fly.toml"

    def one(data: bytes) -> None:
        path.write_bytes(data)
        _calling_with_file(FlyConfig.load, path)

    return one


def _fly_config_seeds(_workdir: Path) -> list[bytes]:
    return [b'flight_id = "f1"\n[map]\ncache = "build/cache"\nsigner_fingerprint = '
            b'"0123456789abcdef"\n[camera]\nsource = "folder"\nreadout_s = 0.05\n'
            b'[autopilot]\nconnection = "udpout:127.0.0.1:14551"\n'
            b'[navigation.estimation.estimator]\nbackend = "eskf"\n',
            b'[takeoff]\nlat_deg = 40.1\nlon_deg = -105.1\nalt_m = 1500\nground_alt_m = 1490\n']


def _make_scenario(workdir: Path) -> Callable[[bytes], None]:
    from terrafix.sim.scenario import load_scenario

    path = workdir / "scenario.toml"

    def one(data: bytes) -> None:
        path.write_bytes(data)
        _calling_with_file(load_scenario, path)

    return one


def _scenario_seeds(_workdir: Path) -> list[bytes]:
    from terrafix.sim.scenario import shipped_scenarios

    folder = Path(__file__).resolve().parents[2] / "src" / "terrafix" / "sim" / "scenarios"
    return [(folder / f"{name}.toml").read_bytes() for name in shipped_scenarios()
            if (folder / f"{name}.toml").is_file()]


# --- flight-log (MCAP) reader ----------------------------------------------------------------
_MCAP_SEED: bytes | None = None


def _make_mcap(workdir: Path) -> Callable[[bytes], None]:
    from terrafix.recorder.reader import FlightLog

    folder = workdir / "flight"
    folder.mkdir(exist_ok=True)
    path = folder / "segment-00001.mcap"

    def read(p: Path) -> None:
        """What `terrafix fdr info` does with a flight folder: header, footer (through the
        MCAP summary), every message up to the damage."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            log = FlightLog(p.parent)
            for _ in log.messages():
                pass

    def one(data: bytes) -> None:
        if data[:1] in (b"\x01", b"\x03") and _MCAP_SEED and len(data) >= 3:
            # a real log torn at a fuzzed offset (1), or torn and followed by garbage (3)
            cut = int.from_bytes(data[1:3], "little") % (len(_MCAP_SEED) + 1)
            data = _MCAP_SEED[:cut] + (data[3:] if data[:1] == b"\x03" else b"")
        elif data[:1] == b"\x02" and _MCAP_SEED and len(data) >= 3:  # overwritten bytes
            base = bytearray(_MCAP_SEED)
            at = int.from_bytes(data[1:3], "little") % len(base)
            base[at:at + len(data) - 3] = data[3:]
            data = bytes(base)
        path.write_bytes(data)
        try:
            read(path)
        except Exception as exc:
            raise _naming(exc, folder.name) from None

    return one


def _mcap_seeds(workdir: Path) -> list[bytes]:
    global _MCAP_SEED
    import shutil

    from terrafix.recorder import FlightRecorder

    folder = workdir / "seed-flight"
    shutil.rmtree(folder, ignore_errors=True)
    rec = FlightRecorder(folder, flight_id="fuzz-seed", config_hash="0" * 64)
    prod = rec.producer("nav/solution", {"type": "object", "properties": {
        "lat": {"type": "number"}, "lon": {"type": "number"}, "i": {"type": "integer"}}})
    for i in range(20):
        prod.record(1_000_000 * i, {"lat": 40.0 + i * 1e-5, "lon": -105.0, "i": i})
    rec.close()
    seg = sorted(folder.glob("segment-*.mcap"))[0]
    _MCAP_SEED = seg.read_bytes()
    shutil.rmtree(folder, ignore_errors=True)
    n = len(_MCAP_SEED)
    return [b"\x00" + _MCAP_SEED, b"\x01" + (n // 2).to_bytes(2, "little"),
            b"\x02" + (n // 3).to_bytes(2, "little") + b"\xff\x00\x00\x00"]


# --- upload protocol -------------------------------------------------------------------------
def _make_batch(_workdir: Path) -> Callable[[bytes], None]:
    from terrafix.upload.protocol import BatchManifest

    def one(data: bytes) -> None:
        BatchManifest.parse(data)

    return one


def _batch_seeds(_workdir: Path) -> list[bytes]:
    from terrafix.upload.protocol import PROTOCOL_VERSION

    tile = {"z": 19, "x": 107000, "y": 196000, "sha256": "ab" * 32, "capture_utc":
            "2025-06-01T10:00:00+00:00", "sigma_m": 3.5, "trust": "normal",
            "change_score": None, "frames": ["f1"]}
    docs = [{"v": PROTOCOL_VERSION, "session_id": "s1", "flight_id": "F1", "batch_seq": 0,
             "tiles": [tile]},
            {"v": PROTOCOL_VERSION, "session_id": "s1", "flight_id": "F1", "batch_seq": 3,
             "tiles": []}]
    return [json.dumps(d).encode() for d in docs]


def _make_certificate(_workdir: Path) -> Callable[[bytes], None]:
    from terrafix.upload.protocol import SessionCertificate

    def one(data: bytes) -> None:
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError):
            return  # JSON itself is the web framework's to parse; the certificate is ours
        SessionCertificate.from_dict(doc)

    return one


def _certificate_seeds(_workdir: Path) -> list[bytes]:
    import base64

    from terrafix.upload.protocol import PROTOCOL_VERSION

    doc = {"v": PROTOCOL_VERSION, "device": "ab" * 16,
           "session_key": base64.b64encode(bytes(range(32))).decode(), "flight_id": "F1",
           "not_before": "2025-06-01T10:00:00+00:00", "expires": "2025-06-01T22:00:00+00:00"}
    return [json.dumps(doc).encode()]


def all_targets() -> list[FuzzTarget]:
    """Every target, fresh (not opened)."""
    from terrafix.app.fly import FlyError
    from terrafix.recorder.errors import RecorderError
    from terrafix.sim.errors import ScenarioError
    from terrafix.tiles.errors import TileCacheError
    from terrafix.upload.protocol import ProtocolError

    return [
        FuzzTarget("mavlink_signed_link", True, (), _make_mavlink(True), _mavlink_seeds(True)),
        FuzzTarget("mavlink_unsigned_link", True, (), _make_mavlink(False),
                   _mavlink_seeds(False)),
        FuzzTarget("msp_v2", True, (), _make_msp, _msp_seeds),
        FuzzTarget("tile_jpeg", True, (TileCacheError,), _make_jpeg, _jpeg_seeds),
        FuzzTarget("geotiff_provisioning", True, (TileCacheError,), _make_geotiff,
                   _geotiff_seeds),
        FuzzTarget("mbtiles_provisioning", True, (TileCacheError,), _make_mbtiles,
                   _mbtiles_seeds),
        FuzzTarget("fly_config_toml", True, (FlyError,), _make_fly_config, _fly_config_seeds),
        FuzzTarget("scenario_toml", True, (ScenarioError,), _make_scenario, _scenario_seeds),
        FuzzTarget("mcap_flight_log", True, (RecorderError,), _make_mcap, _mcap_seeds),
        FuzzTarget("upload_batch_manifest", True, (ProtocolError,), _make_batch, _batch_seeds),
        FuzzTarget("upload_session_certificate", True, (ProtocolError,), _make_certificate,
                   _certificate_seeds),
    ]


def target(name: str) -> FuzzTarget:
    for t in all_targets():
        if t.name == name:
            return t
    raise KeyError(f"no fuzz target {name!r}; known: {[t.name for t in all_targets()]}")


def scratch_dir(name: str) -> Path:
    """A fresh scratch folder on tmpfs when there is one: the targets write one file per input
    and fsync (a disk would make the fuzzing I/O-bound)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix=f"terrafix-fuzz-{name}-", dir=base))


__all__ = ["FuzzCrashError", "FuzzTarget", "UnclearError", "all_targets", "mavlink_frame",
           "scratch_dir", "target"]
