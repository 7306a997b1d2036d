-- Tile metadata with a PostGIS footprint (generated from the bounds, GiST-indexed) and
-- running totals maintained by statement-level triggers (one update per statement, so bulk
-- COPY stays fast). Times are UTC epoch seconds.
CREATE TABLE tiles (
    id              BIGSERIAL PRIMARY KEY,
    z               SMALLINT         NOT NULL,
    x               INTEGER          NOT NULL,
    y               INTEGER          NOT NULL,
    west            DOUBLE PRECISION NOT NULL,
    south           DOUBLE PRECISION NOT NULL,
    east            DOUBLE PRECISION NOT NULL,
    north           DOUBLE PRECISION NOT NULL,
    capture_date    DATE             NOT NULL,
    source          TEXT             NOT NULL,
    sha256          TEXT             NOT NULL,
    size_bytes      BIGINT           NOT NULL,
    sector_class    TEXT             NOT NULL DEFAULT 'unclassified',
    freshness       TEXT             NOT NULL DEFAULT 'fresh',
    voting_status   TEXT             NOT NULL,
    last_access_utc DOUBLE PRECISION NOT NULL,
    upload_attempts INTEGER          NOT NULL DEFAULT 0,
    created_utc     DOUBLE PRECISION NOT NULL,
    geom            geometry(Polygon, 4326)
                    GENERATED ALWAYS AS (ST_MakeEnvelope(west, south, east, north, 4326)) STORED,
    UNIQUE (z, x, y)
);

CREATE INDEX tiles_geom ON tiles USING GIST (geom);
CREATE INDEX tiles_lru ON tiles (last_access_utc);

CREATE TABLE store_totals (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    tile_count  BIGINT NOT NULL,
    total_bytes BIGINT NOT NULL
);
INSERT INTO store_totals VALUES (1, 0, 0);

CREATE FUNCTION tiles_totals_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE store_totals
       SET tile_count = tile_count + (SELECT count(*) FROM new_rows),
           total_bytes = total_bytes + (SELECT coalesce(sum(size_bytes), 0) FROM new_rows);
    RETURN NULL;
END $$;

CREATE FUNCTION tiles_totals_after_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE store_totals
       SET tile_count = tile_count - (SELECT count(*) FROM old_rows),
           total_bytes = total_bytes - (SELECT coalesce(sum(size_bytes), 0) FROM old_rows);
    RETURN NULL;
END $$;

CREATE FUNCTION tiles_totals_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE store_totals
       SET total_bytes = total_bytes
                         + (SELECT coalesce(sum(size_bytes), 0) FROM new_rows)
                         - (SELECT coalesce(sum(size_bytes), 0) FROM old_rows);
    RETURN NULL;
END $$;

CREATE TRIGGER tiles_totals_insert AFTER INSERT ON tiles
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tiles_totals_after_insert();
CREATE TRIGGER tiles_totals_delete AFTER DELETE ON tiles
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tiles_totals_after_delete();
CREATE TRIGGER tiles_totals_update AFTER UPDATE ON tiles
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tiles_totals_after_update();
