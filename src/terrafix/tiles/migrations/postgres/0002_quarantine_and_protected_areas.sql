-- Quarantined tiles (hash or decode failures) and areas whose tiles eviction must keep
-- (the current flight's corridor).
CREATE TABLE quarantine (
    id              BIGSERIAL PRIMARY KEY,
    z               SMALLINT         NOT NULL,
    x               INTEGER          NOT NULL,
    y               INTEGER          NOT NULL,
    expected_sha256 TEXT             NOT NULL,
    found_sha256    TEXT             NOT NULL,
    reason          TEXT             NOT NULL,
    file_path       TEXT             NOT NULL,
    quarantined_utc DOUBLE PRECISION NOT NULL
);

CREATE TABLE protected_areas (
    name        TEXT PRIMARY KEY,
    geom        geometry(Geometry, 4326) NOT NULL,
    created_utc DOUBLE PRECISION NOT NULL
);
