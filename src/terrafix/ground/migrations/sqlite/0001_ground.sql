-- Ground service metadata: aircraft registry, upload sessions, tile candidates, votes.
-- Times are UTC epoch seconds. A candidate is keyed by the SHA-256 of its bytes (stored once).
CREATE TABLE devices (
    fingerprint    TEXT PRIMARY KEY,
    public_key     TEXT NOT NULL,
    name           TEXT NOT NULL,
    registered_utc REAL NOT NULL,
    revoked_utc    REAL,
    revoked_reason TEXT
);

CREATE TABLE sessions (
    session_id     TEXT PRIMARY KEY,
    device_fp      TEXT NOT NULL REFERENCES devices (fingerprint),
    flight_id      TEXT NOT NULL,
    session_key    TEXT NOT NULL,
    certificate    TEXT NOT NULL,
    not_before_utc REAL NOT NULL,
    expires_utc    REAL NOT NULL,
    created_utc    REAL NOT NULL,
    closed_utc     REAL,
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
    captured_utc REAL NOT NULL,
    sigma_m      REAL NOT NULL,
    trust        TEXT NOT NULL,
    size_bytes   INTEGER NOT NULL,
    change_score REAL,
    batch_seq    INTEGER NOT NULL,
    received_utc REAL NOT NULL
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
    trusted_capture_utc REAL,
    flights             INTEGER NOT NULL DEFAULT 0,
    devices             INTEGER NOT NULL DEFAULT 0,
    evidence            TEXT NOT NULL DEFAULT '{}',
    evaluated_utc       REAL,
    dirty_seq           INTEGER NOT NULL DEFAULT 0,
    evaluated_seq       INTEGER NOT NULL DEFAULT 0,
    served_sha256       TEXT,
    PRIMARY KEY (z, x, y)
);
CREATE INDEX votes_dirty ON votes (z, x, y) WHERE dirty_seq > evaluated_seq;
