"""JSON Schemas of the flight log's topics, generated from the classes that make the records.

Every topic in a flight log carries a JSON Schema (MCAP `jsonschema` encoding) so that Foxglove,
PlotJuggler or any reader can offer its fields, types, units and array shapes without guessing.
The schemas are not written by hand: a record is made from a frozen dataclass (or a pydantic
model) by `record_of`, and its schema from the same class by `dataclass_schema` (or
`model_schema`), so the two cannot drift. The round-trip test validates every message of a
real flight against its channel's schema.

How a producer declares a record (the uploader does the same for its topics):

    @dataclass(frozen=True, slots=True)
    class UploadProgress:
        '''One upload batch acknowledged by the ground service.'''
        t_ns: int = field(metadata=doc("recorder clock"))
        sent_bytes: int = field(metadata=doc("bytes acknowledged so far"))
        cov_ne_m2: np.ndarray = field(metadata=doc("horizontal covariance", shape=(2, 2)))

    producer = rec.producer("upload/progress", dataclass_schema(UploadProgress))
    producer.record(t_ns, record_of(UploadProgress(...)))

Conventions (the house naming rule makes units part of names):
- a field's unit comes from `doc(unit=...)` or else from its name's suffix (`_m` metres,
  `_deg` degrees, `_ns` nanoseconds, `_mps` m/s, `_m2` m², ... see `UNIT_SUFFIXES`); the
  description says "Unit: ...", and arrays "Shape: (3, 3)" with matching min/maxItems;
- every float may be `null`: the recorder writes non-finite numbers (NaN, inf) as null;
- every dataclass field is `required`, and no other property is allowed
  (`additionalProperties: false`), so a record that grows a key without its schema fails
  validation.

`SCHEMA_VERSION` is the version of this set of conventions and of the records the software
writes; the flight header carries it, and the reader warns on a log newer than itself.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel

from terrafix.recorder.errors import RecorderError

SCHEMA_VERSION = 2
"""Version of the record schemas written (1: the logs before schemas were generated, whose
onboard topics had empty schemas). Increase it when a record changes incompatibly."""

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

UNIT_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("_m2s2", "m²/s²"),
    ("_radps", "rad/s"),
    ("_mps2", "m/s²"),
    ("_mps", "m/s"),
    ("_cdeg", "centidegrees"),
    ("_deg", "degrees"),
    ("_rad", "rad"),
    ("_m2", "m²"),
    ("_ns", "ns"),
    ("_ms", "ms"),
    ("_hz", "Hz"),
    ("_pct", "percent"),
    ("_s", "s"),
    ("_m", "m"),
)
"""Name suffix -> unit, longest first (a field named `*_m2` is in m², not m)."""

_DOC_KEY = "terrafix.doc"


@dataclasses.dataclass(frozen=True, slots=True)
class FieldDoc:
    """What a record field means: description, unit (None: from the name's suffix; "": no
    unit), array shape (None: not an array, or of any length), choices (the values a string
    field may take, None: any)."""

    description: str = ""
    unit: str | None = None
    shape: tuple[int, ...] | None = None
    choices: tuple[str, ...] | None = None


def doc(description: str = "", *, unit: str | None = None, shape: Sequence[int] | None = None,
        choices: Sequence[str] | None = None) -> dict[str, FieldDoc]:
    """Field metadata for `dataclasses.field(metadata=doc(...))`."""
    return {_DOC_KEY: FieldDoc(description, unit, None if shape is None else tuple(shape),
                               None if choices is None else tuple(choices))}


def unit_of(name: str) -> str:
    """The unit a field name's suffix stands for ("" if none)."""
    for suffix, unit in UNIT_SUFFIXES:
        if name.endswith(suffix):
            return unit
    return ""


# ------------------------------------------------------------------------------ records


def record_of(obj: Any, renames: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The record (a JSON-able dict) of a dataclass instance: its fields in order, under
    `renames` where given; nested dataclasses become objects, numpy arrays and tuples lists,
    enums their values. The same walk as `dataclass_schema`, so record and schema agree."""
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        raise RecorderError(f"record_of: expected a dataclass instance, got {type(obj).__name__}")
    renames = renames or {}
    return {renames.get(f.name, f.name): _value(getattr(obj, f.name))
            for f in dataclasses.fields(obj)}


def record_from(cls: type, data: Mapping[str, Any], topic: str = "") -> dict[str, Any]:
    """The record of `data` built through the record class `cls` (`record_of(cls(**data))`):
    for producers that hand the recorder a dict (a `(topic, dict)` sink), so that a key the
    class does not declare, or one it lacks, fails here with its names instead of writing a
    record its channel's schema (`dataclass_schema(cls)`) does not describe."""
    names = [f.name for f in dataclasses.fields(cls)]
    extra = sorted(set(data) - set(names))
    missing = [n for n in names if n not in data]
    if extra or missing:
        raise RecorderError(
            f"record for {topic or cls.__name__!r}: expected the fields of {cls.__name__} "
            f"{names}, got unknown keys {extra} and missing keys {missing}")
    return record_of(cls(**data))


def _value(v: Any) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return record_of(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, list | tuple):
        return [_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _value(x) for k, x in v.items()}
    return v


# ------------------------------------------------------------------------------ schemas


def dataclass_schema(
    cls: type,
    *,
    title: str | None = None,
    description: str | None = None,
    renames: Mapping[str, str] | None = None,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
    annotations: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of `record_of(cls(...), renames)`, with `extra`
    properties (name -> schema) that the producer adds to every record (all required).

    title: default `terrafix.<ClassName>`; description: default the class docstring.
    annotations: further top-level keys (e.g. "x-terrafix-track", see recorder.export).
    """
    schema = _object_schema(cls, renames or {})
    for name, sub in (extra or {}).items():
        schema["properties"][name] = dict(sub)
        schema["required"].append(name)
    out = {"$schema": JSON_SCHEMA_DIALECT,
           "title": title or f"terrafix.{cls.__name__}",
           "description": description if description is not None else _docstring(cls),
           **schema}
    out.update(annotations or {})
    return out


def one_of_schema(title: str, description: str, schemas: Sequence[Mapping[str, Any]],
                  ) -> dict[str, Any]:
    """A topic whose records are one of several kinds (each schema with a `kind` const)."""
    subs = []
    for s in schemas:
        sub = {k: v for k, v in s.items() if k != "$schema"}
        subs.append(sub)
    return {"$schema": JSON_SCHEMA_DIALECT, "title": title, "description": description,
            "type": "object", "oneOf": subs}


def model_schema(model: type[BaseModel], *, title: str | None = None,
                 description: str | None = None) -> dict[str, Any]:
    """The JSON Schema of `json.loads(instance.model_dump_json())` for a pydantic model."""
    schema = model.model_json_schema(mode="serialization")
    _all_required(schema)  # model_dump writes every field, defaulted or not
    out = {"$schema": JSON_SCHEMA_DIALECT, **schema}
    out["title"] = title or f"terrafix.{model.__name__}"
    if description is not None or "description" not in out:
        out["description"] = description if description is not None else _docstring(model)
    return out


def _all_required(node: Any) -> None:
    """Mark every property of every object schema in `node` required (in place)."""
    if isinstance(node, dict):
        props = node.get("properties")
        if isinstance(props, dict) and node.get("type") == "object":
            node["required"] = list(props)
        for v in node.values():
            _all_required(v)
    elif isinstance(node, list):
        for v in node:
            _all_required(v)


def _docstring(cls: type) -> str:
    text = (cls.__doc__ or "").strip()
    if text.startswith(f"{cls.__name__}("):  # dataclass's generated signature: no doc
        return ""
    return " ".join(text.split())


def _object_schema(cls: type, renames: Mapping[str, str]) -> dict[str, Any]:
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise RecorderError(f"dataclass_schema: expected a dataclass type, got {cls!r}")
    hints = typing.get_type_hints(cls)
    props: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        fdoc: FieldDoc = f.metadata.get(_DOC_KEY, FieldDoc())
        name = renames.get(f.name, f.name)
        sub = _type_schema(hints[f.name], fdoc.shape, f"{cls.__name__}.{f.name}")
        if fdoc.choices is not None:
            sub = {"enum": list(fdoc.choices)}
        unit = unit_of(f.name) if fdoc.unit is None else fdoc.unit
        parts = [fdoc.description.rstrip(".")] if fdoc.description else []
        if unit:
            parts.append(f"Unit: {unit}")
        if fdoc.shape is not None:
            dims = ", ".join(str(n) for n in fdoc.shape)
            parts.append(f"Shape: ({dims}{',' if len(fdoc.shape) == 1 else ''})")
        if '"number"' in json.dumps(sub):
            parts.append("numbers are null when not finite")
        if parts:
            sub["description"] = ". ".join(parts) + "."
        props[name] = sub
    return {"type": "object", "properties": props, "required": list(props),
            "additionalProperties": False}


_NUMBER = {"type": ["number", "null"]}


def _type_schema(tp: Any, shape: tuple[int, ...] | None, where: str) -> dict[str, Any]:
    """Schema of one annotated type. Arrays (list, tuple[T, ...], np.ndarray) take the
    field's shape; an ndarray without a declared shape is a programming error."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _type_schema(typing.get_args(tp)[0], shape, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        non_none = [a for a in args if a is not type(None)]
        subs = [_type_schema(a, shape, where) for a in non_none]
        if type(None) in args:
            subs.append({"type": "null"})
        subs = _merge_nulls(subs)
        return subs[0] if len(subs) == 1 else {"anyOf": subs}
    if origin is typing.Literal:
        values = list(typing.get_args(tp))
        return {"enum": values}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return dict(_NUMBER)
    if tp is str:
        return {"type": "string"}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [m.value for m in tp]}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _object_schema(tp, {})
    if tp is np.ndarray or origin is np.ndarray:
        if shape is None:
            raise RecorderError(f"{where}: a numpy array field needs doc(shape=...)")
        return _array(dict(_NUMBER), shape)
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        item = _type_schema(args[0], shape[1:] if shape else None, where) if args else {}
        if shape:
            return _array(item, shape[:1])
        return {"type": "array", "items": item}
    if origin is dict or tp is dict:
        return {"type": "object"}
    raise RecorderError(f"{where}: no JSON Schema for the type {tp!r}")


def _array(item: dict[str, Any], shape: tuple[int, ...]) -> dict[str, Any]:
    """Nested arrays of `item` with the given shape (exact lengths)."""
    if not shape:
        return item
    inner = _array(item, shape[1:])
    return {"type": "array", "items": inner, "minItems": shape[0], "maxItems": shape[0]}


def _merge_nulls(subs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """number|null plus null: one null branch only (anyOf with duplicate branches is fine
    for validation but confusing to read)."""
    out: list[dict[str, Any]] = []
    has_null = any("null" in (s.get("type") if isinstance(s.get("type"), list) else [])
                   for s in subs)
    for s in subs:
        if s == {"type": "null"} and has_null:
            continue
        out.append(s)
    return out


def is_real_schema(schema: Mapping[str, Any]) -> bool:
    """True when `schema` says something about its records: typed properties or a choice of
    kinds (the recorder refuses `{}` and `{"type": "object"}` for a topic)."""
    return bool(schema.get("properties") or schema.get("oneOf") or schema.get("anyOf")
                or schema.get("$ref"))
