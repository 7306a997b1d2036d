"""terrafix.review: the operator's flight review page, built from the flight log alone.

    terrafix review FLIGHT_DIR [-o DIR] [--truth DATASET]

`build_review(flight_dir, out_dir, truth=None) -> Path` writes `review.html` and its PNGs.
"""

from terrafix.review.errors import ReviewError

__all__ = ["ReviewError"]
