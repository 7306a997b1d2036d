"""Plain JSON values from what the analysis code holds (numpy scalars and arrays, paths,
non-finite floats), for the summaries and metadata files every package writes.

One helper so that a summary written by the simulator and one written by the evaluation say
the same thing the same way: a NaN or an infinity is `null` (JSON has no such numbers and a
reader must not mistake them for a value), numpy types become their Python values, arrays
nested lists, tuples lists, paths strings and dictionary keys strings.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def jsonable(obj: Any) -> Any:
    """`obj` with every value made plain JSON (see the module doc); other objects unchanged."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj
