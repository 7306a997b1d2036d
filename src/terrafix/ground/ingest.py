"""Verify and store what aircraft upload: sessions, signed batches, tiles (REQUIREMENTS U3/U4).

Every check runs before anything is written, in this order, and every refusal carries the
reason and is logged:
  session   certificate signed by a registered, unrevoked device key; validity window
            current and not longer than the configured maximum
  batch     session known, not expired or closed, device still unrevoked (revocation takes
            effect at once); manifest signed by the session key over the exact part bytes;
            manifest names this session and flight; every tile part listed in the manifest
  tile      bytes hash to the manifest entry and have its size; a complete 256x256 JPEG;
            zoom, service area and capture time plausible; pose sigma <= 5 m (U1)
Accepted tiles are written blobs first (durable, see blobs.py), then rows in one transaction,
so a crash leaves at worst blobs without rows, which `reconcile` removes at start-up: never a
half tile, never a row without its bytes. A hash stored before is a `duplicate`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from terrafix.geo.tiles import TileId, tile_bounds
from terrafix.ground.blobs import BlobStore
from terrafix.ground.config import AreaConfig, LimitsConfig
from terrafix.ground.db import GroundDb
from terrafix.ground.errors import RefusedError
from terrafix.ground.records import CandidateRecord, DeviceRecord, SessionRecord
from terrafix.tiles.errors import InvalidTileError
from terrafix.tiles.jpeg import check_tile_jpeg
from terrafix.upload.protocol import (
    BatchManifest,
    ErrorCode,
    ProtocolError,
    SessionCertificate,
    TileEntry,
    TileOutcomeStatus,
    b64,
    canonical_bytes,
    close_message,
    fingerprint,
    public_key_from_raw,
    raw_public_bytes,
    unb64,
    verify,
)

log = logging.getLogger(__name__)

MAX_ELIGIBLE_SIGMA_M = 5.0  # U1: a pose worse than this never makes a tile


def _now_s() -> float:
    return time.time()


@dataclass(frozen=True, slots=True)
class TileOutcome:
    sha256: str
    status: TileOutcomeStatus
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "status": str(self.status), "reason": self.reason}


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    partial_writes: int
    orphan_blobs: tuple[str, ...]
    rows_without_blob: tuple[str, ...]


def device_key_from_text(text: str) -> bytes:
    """Raw 32-byte Ed25519 public key from base64 raw bytes or a PEM SubjectPublicKeyInfo."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        except ValueError as exc:
            raise ProtocolError(f"device public key PEM does not parse: {exc}") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise ProtocolError(f"device public key must be Ed25519, got "
                                f"{type(key).__name__}")
        return raw_public_bytes(key)
    return raw_public_bytes(public_key_from_raw(unb64(text, "device public key"),
                                                "device public key"))


class Ingest:
    """The upload side of the ground service, free of HTTP (see module docstring).

    on_committed: called with the z/x/y whose candidates changed (the voter's wake-up).
    """

    def __init__(self, db: GroundDb, blobs: BlobStore, *, area: AreaConfig,
                 limits: LimitsConfig, on_committed: Callable[[Sequence[TileId]], None]
                 | None = None, fault_pause_before_commit_s: float = 0.0) -> None:
        self.db = db
        self.blobs = blobs
        self.area = area
        self.limits = limits
        self._on_committed = on_committed
        self._fault_pause_s = fault_pause_before_commit_s
        self._session_keys: dict[str, Any] = {}
        self._keys_lock = threading.Lock()

    # --- registry (operator) -------------------------------------------------------------
    def register_device(self, public_key_text: str, name: str) -> tuple[DeviceRecord, bool]:
        """Register a device key; returns (record, created). Re-registering the same key is
        harmless (created False); a revoked key stays revoked."""
        if not name or len(name) > 200:
            raise RefusedError(400, ErrorCode.MALFORMED,
                          f"device name must be 1-200 characters, got {len(name)}")
        try:
            raw = device_key_from_text(public_key_text)
        except ProtocolError as exc:
            raise RefusedError(400, ErrorCode.MALFORMED, str(exc)) from None
        fp = fingerprint(public_key_from_raw(raw, "device public key"))
        created = self.db.add_device(fp, b64(raw), name, _now_s())
        rec = self.db.get_device(fp)
        assert rec is not None
        log.info("device %s (%s) %s", fp, rec.name, "registered" if created else
                 "was already registered")
        return rec, created

    def revoke_device(self, fp: str, reason: str) -> DeviceRecord:
        if not self.db.revoke_device(fp, reason or "revoked by the operator", _now_s()):
            rec = self.db.get_device(fp)
            if rec is None:
                raise RefusedError(404, ErrorCode.UNKNOWN_DEVICE, f"no device {fp!r} is registered")
            return rec
        with self._keys_lock:
            self._session_keys.clear()
        log.warning("device %s revoked: %s", fp, reason)
        rec = self.db.get_device(fp)
        assert rec is not None
        return rec

    # --- sessions ------------------------------------------------------------------------
    def open_session(self, body: Any, *, remote: str = "?") -> tuple[SessionRecord, bool]:
        """Verify a certified session key (POST /sessions); returns (session, created)."""
        try:
            if not isinstance(body, dict) or set(body) != {"certificate", "signature"}:
                raise ProtocolError("session body must be {\"certificate\": {...}, "
                                    "\"signature\": b64}")
            cert = SessionCertificate.from_dict(body["certificate"])
            signature = body["signature"]
            if not isinstance(signature, str):
                raise ProtocolError("session signature must be a base64 string")
        except ProtocolError as exc:
            raise self._refuse(400, ErrorCode.MALFORMED, str(exc), remote) from None
        device = self.db.get_device(cert.device_fingerprint)
        if device is None:
            raise self._refuse(401, ErrorCode.UNKNOWN_DEVICE,
                               f"device {cert.device_fingerprint!r} is not registered", remote)
        if device.revoked:
            raise self._refuse(403, ErrorCode.REVOKED_DEVICE,
                               f"device {device.fingerprint} ({device.name}) was revoked: "
                               f"{device.revoked_reason}", remote)
        device_key = public_key_from_raw(unb64(device.public_key_b64, "stored key"), "stored")
        try:
            verify(device_key, signature, canonical_bytes(body["certificate"]),
                   f"session certificate of device {device.fingerprint}")
        except ProtocolError as exc:
            raise self._refuse(401, ErrorCode.BAD_SIGNATURE, str(exc), remote) from None
        now = _now_s()
        nb, exp = cert.not_before_utc.timestamp(), cert.expires_utc.timestamp()
        if exp <= now:
            raise self._refuse(401, ErrorCode.SESSION_EXPIRED,
                               f"session certificate expired at {cert.expires_utc.isoformat()}",
                               remote)
        if nb > now + self.limits.clock_skew_s or exp <= nb:
            raise self._refuse(400, ErrorCode.MALFORMED,
                               f"certificate window {cert.not_before_utc.isoformat()} .. "
                               f"{cert.expires_utc.isoformat()} is not valid now", remote)
        if exp - nb > self.limits.max_session_validity_s:
            raise self._refuse(400, ErrorCode.MALFORMED,
                               f"certificate valid for {(exp - nb) / 3600:.1f} h, at most "
                               f"{self.limits.max_session_validity_s / 3600:.1f} h", remote)
        if cert.session_fingerprint == device.fingerprint:
            raise self._refuse(400, ErrorCode.MALFORMED,
                               "the session key must not be the device key", remote)
        if not 1 <= len(cert.flight_id) <= 128:
            raise self._refuse(400, ErrorCode.MALFORMED,
                               f"flight_id must be 1-128 characters, got {cert.flight_id!r}",
                               remote)
        rec = SessionRecord(cert.session_fingerprint, device.fingerprint, cert.flight_id,
                            b64(raw_public_bytes(cert.session_public_key)),
                            canonical_bytes(body["certificate"]).decode("ascii"), nb, exp,
                            now, None, 0, 0, 0)
        stored = self.db.insert_session(rec)
        if stored.certificate_json != rec.certificate_json:
            raise self._refuse(409, ErrorCode.MALFORMED,
                               f"session key {rec.session_id} was certified before with "
                               "another certificate", remote)
        created = stored.created_utc_s == rec.created_utc_s
        log.info("session %s opened: device %s flight %r, expires %s (%s)", stored.session_id,
                 device.fingerprint, stored.flight_id, cert.expires_utc.isoformat(), remote)
        return stored, created

    def live_session(self, session_id: str, *, remote: str = "?") -> SessionRecord:
        """The session a batch is for, refused unless current (checked before any body is
        read)."""
        s = self.db.get_session(session_id)
        if s is None:
            raise self._refuse(401, ErrorCode.UNKNOWN_SESSION, f"no session {session_id!r}",
                               remote)
        if s.closed_utc_s is not None:
            raise self._refuse(401, ErrorCode.SESSION_CLOSED,
                               f"session {session_id} was closed", remote)
        if s.expires_utc_s <= _now_s():
            raise self._refuse(401, ErrorCode.SESSION_EXPIRED,
                               f"session {session_id} expired at "
                               f"{datetime.fromtimestamp(s.expires_utc_s, UTC).isoformat()}",
                               remote)
        device = self.db.get_device(s.device_fp)
        if device is None or device.revoked:
            raise self._refuse(403, ErrorCode.REVOKED_DEVICE,
                               f"device {s.device_fp} of session {session_id} was revoked",
                               remote)
        return s

    def close_session(self, session_id: str, body: Any, *, remote: str = "?"
                      ) -> dict[str, Any]:
        s = self.db.get_session(session_id)
        if s is None:
            raise self._refuse(401, ErrorCode.UNKNOWN_SESSION, f"no session {session_id!r}",
                               remote)
        if not isinstance(body, dict) or not set(body) <= {"signature"}:
            raise self._refuse(400, ErrorCode.MALFORMED,
                               "close body must be {} or {\"signature\": b64}", remote)
        closed = s.closed_utc_s is not None
        if "signature" in body:
            key = public_key_from_raw(unb64(s.session_key_b64, "stored key"), "stored")
            try:
                sig = body["signature"]
                if not isinstance(sig, str):
                    raise ProtocolError("close signature must be a base64 string")
                verify(key, sig, close_message(session_id), f"close of session {session_id}")
            except ProtocolError as exc:
                raise self._refuse(401, ErrorCode.BAD_SIGNATURE, str(exc), remote) from None
            self.db.close_session(session_id, _now_s())
            closed = True
            log.info("session %s closed: %d accepted, %d duplicate, %d rejected", session_id,
                     s.accepted, s.duplicate, s.rejected)
        return {"session_id": session_id, "accepted": s.accepted, "duplicate": s.duplicate,
                "rejected": s.rejected, "closed": closed}

    # --- batches -------------------------------------------------------------------------
    def _session_key(self, s: SessionRecord) -> Any:
        with self._keys_lock:
            key = self._session_keys.get(s.session_id)
            if key is None:
                key = public_key_from_raw(unb64(s.session_key_b64, "stored key"), "stored")
                self._session_keys[s.session_id] = key
            return key

    def ingest_batch(self, session: SessionRecord, manifest_bytes: bytes, signature: str,
                     tiles: Mapping[str, bytes], *, remote: str = "?") -> list[TileOutcome]:
        """Verify a batch and store its acceptable tiles. `tiles` maps each tile part's file
        name to its bytes. Refuses the whole batch (nothing written) for a bad signature, a
        manifest for another session or a part the manifest does not list."""
        sid = session.session_id
        try:
            verify(self._session_key(session), signature, manifest_bytes,
                   f"batch manifest of session {sid}")
        except ProtocolError as exc:
            raise self._refuse(401, ErrorCode.BAD_SIGNATURE, str(exc), remote) from None
        try:
            manifest = BatchManifest.parse(manifest_bytes)
        except ProtocolError as exc:
            raise self._refuse(400, ErrorCode.MALFORMED, str(exc), remote) from None
        if manifest.session_id != sid or manifest.flight_id != session.flight_id:
            raise self._refuse(400, ErrorCode.MALFORMED,
                               f"manifest is for session {manifest.session_id!r} flight "
                               f"{manifest.flight_id!r}, sent to session {sid} flight "
                               f"{session.flight_id!r}", remote)
        listed = {f"{t.sha256}.jpg" for t in manifest.tiles}
        extra = sorted(set(tiles) - listed)
        if extra:
            raise self._refuse(400, ErrorCode.MALFORMED,
                               f"tile parts not listed in the manifest: {extra[:3]}", remote)
        known = self.db.known_hashes([t.sha256 for t in manifest.tiles])
        outcomes: dict[str, TileOutcome] = {}
        to_store: list[tuple[TileEntry, bytes]] = []
        for entry in manifest.tiles:
            if entry.sha256 in known:
                outcomes[entry.sha256] = TileOutcome(entry.sha256, TileOutcomeStatus.DUPLICATE)
                continue
            data = tiles.get(f"{entry.sha256}.jpg")
            reason = self._tile_problem(entry, data, session)
            if reason is not None:
                outcomes[entry.sha256] = TileOutcome(entry.sha256, TileOutcomeStatus.REJECTED,
                                                     reason)
                log.warning("session %s batch %d: tile %s %d/%d/%d rejected: %s (%s)", sid,
                            manifest.batch_seq, entry.sha256[:16], entry.z, entry.x, entry.y,
                            reason, remote)
                continue
            assert data is not None
            to_store.append((entry, data))
        rejected = sum(o.status == TileOutcomeStatus.REJECTED for o in outcomes.values())
        known_dup = len(outcomes) - rejected
        if to_store:
            now = _now_s()
            cands = [CandidateRecord(e.sha256, TileId(e.z, e.x, e.y), sid, session.device_fp,
                                     session.flight_id, e.captured_utc.timestamp(), e.sigma_m,
                                     e.trust, e.size_bytes, e.change_score, manifest.batch_seq,
                                     now) for e, _ in to_store]
            try:
                self.blobs.put_many([(e.sha256, d) for e, d in to_store])
                if self._fault_pause_s:
                    time.sleep(self._fault_pause_s)
                inserted = self.db.commit_candidates(sid, cands, rejected, known_dup)
            except Exception as exc:  # any storage failure is transient
                log.error("session %s batch %d: storing %d tiles failed: %r", sid,
                          manifest.batch_seq, len(to_store), exc)
                for e, _ in to_store:
                    outcomes[e.sha256] = TileOutcome(e.sha256, TileOutcomeStatus.RETRY,
                                                     "storage failed on the ground; send again")
            else:
                for e, _ in to_store:
                    status = (TileOutcomeStatus.ACCEPTED if e.sha256 in inserted
                              else TileOutcomeStatus.DUPLICATE)
                    outcomes[e.sha256] = TileOutcome(e.sha256, status)
                if inserted and self._on_committed is not None:
                    self._on_committed(sorted({c.tile for c in cands if c.sha256 in inserted},
                                              key=lambda t: (t.z, t.x, t.y)))
        else:
            self.db.count_batch(sid, known_dup, rejected)
        counts = {s: sum(o.status == s for o in outcomes.values()) for s in TileOutcomeStatus}
        log.info("session %s batch %d: %s (%s)", sid, manifest.batch_seq,
                 json.dumps({str(k): v for k, v in counts.items()}), remote)
        return [outcomes[t.sha256] for t in manifest.tiles]

    def _tile_problem(self, e: TileEntry, data: bytes | None, s: SessionRecord) -> str | None:
        """Why this tile cannot be stored, or None."""
        if data is None:
            return f"no tile part named {e.sha256}.jpg in the batch"
        if len(data) != e.size_bytes:
            return f"tile part has {len(data)} bytes, the manifest says {e.size_bytes}"
        if len(data) > self.limits.max_tile_bytes:
            return f"tile of {len(data)} bytes, at most {self.limits.max_tile_bytes}"
        found = hashlib.sha256(data).hexdigest()
        if found != e.sha256:
            return f"tile bytes hash to {found}, the manifest says {e.sha256}"
        if not self.area.min_zoom <= e.z <= self.area.max_zoom:
            return f"zoom {e.z} outside {self.area.min_zoom}..{self.area.max_zoom}"
        try:
            tile = TileId(e.z, e.x, e.y)
        except ValueError as exc:
            return str(exc)
        if self.area.bbox is not None:
            w, so, ea, n = tile_bounds(tile)
            aw, as_, ae, an = self.area.bbox
            if ea < aw or w > ae or n < as_ or so > an:
                return (f"tile {e.z}/{e.x}/{e.y} lies outside the service area "
                        f"{self.area.bbox}")
        t = e.captured_utc.timestamp()
        skew = self.limits.clock_skew_s
        latest = min(s.expires_utc_s, _now_s())
        if not s.not_before_utc_s - skew <= t <= latest + skew:
            return (f"capture time {e.captured_utc.isoformat()} outside the session window "
                    f"{datetime.fromtimestamp(s.not_before_utc_s, UTC).isoformat()} .. "
                    f"{datetime.fromtimestamp(latest, UTC).isoformat()}")
        if e.sigma_m > MAX_ELIGIBLE_SIGMA_M:
            return f"pose sigma {e.sigma_m:.2f} m > {MAX_ELIGIBLE_SIGMA_M} m is not eligible"
        try:
            check_tile_jpeg(data, f"tile {e.sha256[:16]}")
        except InvalidTileError as exc:
            return str(exc)
        return None

    # --- start-up --------------------------------------------------------------------------
    def reconcile(self, *, orphan_grace_s: float = 0.0) -> ReconcileReport:
        """Remove interrupted writes and blobs no row names (older than `orphan_grace_s`:
        where several server processes share the database, a blob of another process's
        batch in flight is not yet named by a row), and report rows whose blob is missing."""
        partial = self.blobs.remove_partial_writes()
        rows = set(self.db.iter_candidate_hashes())
        orphans: list[str] = []
        now = time.time()
        for h in self.blobs.iter_hashes():
            if h in rows:
                continue
            path = getattr(self.blobs, "path", None)
            if orphan_grace_s > 0 and path is not None:
                try:
                    if now - path(h).stat().st_mtime < orphan_grace_s:
                        continue
                except FileNotFoundError:
                    continue
            self.blobs.delete(h)
            orphans.append(h)
        missing = [h for h in rows if not self.blobs.exists(h)]
        if missing:
            log.error("reconcile: %d candidate rows have no blob (disk damage?); removed: %s",
                      len(missing), missing[:5])
            self.db.delete_candidates(missing)
        if partial or orphans:
            log.warning("reconcile: removed %d partial writes and %d orphan blobs", partial,
                        len(orphans))
        return ReconcileReport(partial, tuple(orphans), tuple(missing))

    def _refuse(self, status: int, code: ErrorCode, detail: str, remote: str) -> RefusedError:
        log.warning("refused %d %s: %s (%s)", status, code, detail, remote)
        return RefusedError(status, code, detail)

