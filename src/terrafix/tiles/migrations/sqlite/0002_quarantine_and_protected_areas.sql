-- Quarantined tiles (hash or decode failures) and areas whose tiles eviction must keep
-- (the current flight's corridor), stored as WGS84 WKT.
CREATE TABLE quarantine (
    id              INTEGER PRIMARY KEY,
    z               INTEGER NOT NULL,
    x               INTEGER NOT NULL,
    y               INTEGER NOT NULL,
    expected_sha256 TEXT    NOT NULL,
    found_sha256    TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    file_path       TEXT    NOT NULL,
    quarantined_utc REAL    NOT NULL
);

CREATE TABLE protected_areas (
    name        TEXT PRIMARY KEY,
    wkt         TEXT NOT NULL,
    created_utc REAL NOT NULL
);
