-- Tile metadata, R*Tree spatial index (kept in sync by triggers) and running totals.
-- Dates are ISO-8601 text; times are UTC epoch seconds.
CREATE TABLE tiles (
    id              INTEGER PRIMARY KEY,
    z               INTEGER NOT NULL,
    x               INTEGER NOT NULL,
    y               INTEGER NOT NULL,
    west            REAL    NOT NULL,
    south           REAL    NOT NULL,
    east            REAL    NOT NULL,
    north           REAL    NOT NULL,
    capture_date    TEXT    NOT NULL,
    source          TEXT    NOT NULL,
    sha256          TEXT    NOT NULL,
    size_bytes      INTEGER NOT NULL,
    sector_class    TEXT    NOT NULL DEFAULT 'unclassified',
    freshness       TEXT    NOT NULL DEFAULT 'fresh',
    voting_status   TEXT    NOT NULL,
    last_access_utc REAL    NOT NULL,
    upload_attempts INTEGER NOT NULL DEFAULT 0,
    created_utc     REAL    NOT NULL,
    UNIQUE (z, x, y)
);

CREATE INDEX tiles_lru ON tiles (last_access_utc);

CREATE VIRTUAL TABLE tiles_rtree USING rtree (id, min_lon, max_lon, min_lat, max_lat);

CREATE TRIGGER tiles_rtree_insert AFTER INSERT ON tiles BEGIN
    INSERT INTO tiles_rtree VALUES (new.id, new.west, new.east, new.south, new.north);
END;

CREATE TRIGGER tiles_rtree_delete AFTER DELETE ON tiles BEGIN
    DELETE FROM tiles_rtree WHERE id = old.id;
END;

CREATE TRIGGER tiles_rtree_update AFTER UPDATE OF west, south, east, north ON tiles BEGIN
    UPDATE tiles_rtree
       SET min_lon = new.west, max_lon = new.east, min_lat = new.south, max_lat = new.north
     WHERE id = new.id;
END;

CREATE TABLE store_totals (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    tile_count  INTEGER NOT NULL,
    total_bytes INTEGER NOT NULL
);
INSERT INTO store_totals VALUES (1, 0, 0);

CREATE TRIGGER tiles_totals_insert AFTER INSERT ON tiles BEGIN
    UPDATE store_totals SET tile_count = tile_count + 1, total_bytes = total_bytes + new.size_bytes;
END;

CREATE TRIGGER tiles_totals_delete AFTER DELETE ON tiles BEGIN
    UPDATE store_totals SET tile_count = tile_count - 1, total_bytes = total_bytes - old.size_bytes;
END;

CREATE TRIGGER tiles_totals_update AFTER UPDATE OF size_bytes ON tiles BEGIN
    UPDATE store_totals SET total_bytes = total_bytes - old.size_bytes + new.size_bytes;
END;
