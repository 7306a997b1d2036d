"""terrafix.mapping: turns what the aircraft saw into fresh map tiles (REQUIREMENTS U1).

    eligibility.py   the anti-poisoning gate: which poses may write tiles, with which trust
    provenance.py    the metadata a tile carries inside its JPEG (flight, time, sigma, frames)
    tile_mosaic.py   orthorectified frames merged per z/x/y tile, best view first
    flight_store.py  the separate per-flight TileStore (capped, crash-safe) and its recording
    tile_feed.py     the hook the onboard program and the replay call, on a worker thread
"""
