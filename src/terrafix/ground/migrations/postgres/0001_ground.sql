-- Ground service metadata: aircraft registry, upload sessions, tile candidates, votes.
-- Times are UTC epoch seconds. A candidate is keyed by the SHA-256 of its bytes (stored once).
CREATE TABLE devices (
    fingerprint    TEXT PRIMARY KEY,
    public_key     TEXT NOT NULL,
    name           TEXT NOT NULL,
    registered_utc DOUBLE PRECISION NOT NULL,
    revoked_utc    DOUBLE PRECISION,
    revoked_reason TEXT
);

CREATE TABLE sessions (
    session_id     TEXT PRIMARY KEY,
    device_fp      TEXT NOT NULL REFERENCES devices (fingerprint),
    flight_id      TEXT NOT NULL,
    session_key    TEXT NOT NULL,
    certificate    TEXT NOT NULL,
    not_before_utc DOUBLE PRECISION NOT NULL,
    expires_utc    DOUBLE PRECISION NOT NULL,
    created_utc    DOUBLE PRECISION NOT NULL,
    closed_utc     DOUBLE PRECISION,
    accepted       INTEGER NOT NULL DEFAULT 0,
    duplicate      INTEGER NOT NULL DEFAULT 0,
    rejected       INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE candidates (
    sha256       TEXT PRIMARY KEY,
    z            INTEGER NOT NULL,
    x            INTEGER NOT NULL,
    y            INTEGER NOT NULL,
    session_id   TEXT NOT NULL REFERENCES sessions (session_id),
    device_fp    TEXT NOT NULL,
    flight_id    TEXT NOT NULL,
    captured_utc DOUBLE PRECISION NOT NULL,
    sigma_m      DOUBLE PRECISION NOT NULL,
    trust        TEXT NOT NULL,
    size_bytes   BIGINT NOT NULL,
    change_score DOUBLE PRECISION,
    batch_seq    INTEGER NOT NULL,
    received_utc DOUBLE PRECISION NOT NULL
);
CREATE INDEX candidates_tile ON candidates (z, x, y);

-- One row per z/x/y that has candidates. dirty_seq counts candidate arrivals; a vote is
-- current when evaluated_seq = dirty_seq (the voter re-evaluates the others).
CREATE TABLE votes (
    z                   INTEGER NOT NULL,
    x                   INTEGER NOT NULL,
    y                   INTEGER NOT NULL,
    status              TEXT NOT NULL DEFAULT 'PENDING',
    trusted_sha256      TEXT,
    trusted_capture_utc DOUBLE PRECISION,
    flights             INTEGER NOT NULL DEFAULT 0,
    devices             INTEGER NOT NULL DEFAULT 0,
    evidence            TEXT NOT NULL DEFAULT '{}',
    evaluated_utc       DOUBLE PRECISION,
    dirty_seq           INTEGER NOT NULL DEFAULT 0,
    evaluated_seq       INTEGER NOT NULL DEFAULT 0,
    served_sha256       TEXT,
    PRIMARY KEY (z, x, y)
);
CREATE INDEX votes_dirty ON votes (z, x, y) WHERE dirty_seq > evaluated_seq;

-- PostGIS footprint of each voted tile (generated from z/x/y by the writer), for area queries
-- and for GIS tools looking at the voting state.
ALTER TABLE votes ADD COLUMN geom geometry(Polygon, 4326);
CREATE INDEX votes_geom ON votes USING GIST (geom);
