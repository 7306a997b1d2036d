"""The ground service: registered aircraft, signed ingest, voting across flights, serving.

Data flow (REQUIREMENTS §7 U3-U5):
    registry.py   operator registers device keys; sessions are certified by them
    ingest.py     verify a signed batch, write blobs (blobs.py) then metadata (db.py)
    voting/       compare candidates of one z/x/y across flights, promote or flag CONFLICT
    serving.py    promoted imagery goes into a tile store the provider API serves
    server.py     the FastAPI app (upload + operator + provider routes), uvicorn with TLS
    embedded.py   an in-process service for the demo loop
"""
