"""JSON Schema (draft 2020-12) of the ``metadata`` attribute of format 1.0, and a validator.

:data:`SCHEMA` is the single source of ``export/schema/hh_plugin_file-1.0.schema.json``
(``python -m hh_plugin.export.schema > export/schema/hh_plugin_file-1.0.schema.json``;
a test checks the two are equal). :func:`validate` implements the subset of JSON Schema
the schema uses (``type``, ``const``, ``enum``, ``required``, ``properties``,
``additionalProperties``, ``minimum``, ``exclusiveMinimum``, ``minLength``, ``pattern``,
``anyOf``, ``$ref``), so reading a file needs no extra dependency.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any, List

from ..formats import FORMAT_NAME
from ..formats import POPULATION_FORMAT_VERSION as FORMAT_VERSION
from .units import FACTORS


def _time_quantity(positive: bool) -> dict:
    value = {"type": "number", "exclusiveMinimum": 0} if positive else {"type": "number"}
    return {"type": "object", "required": ["value", "unit"], "additionalProperties": False,
            "properties": {"value": value, "unit": {"enum": sorted(FACTORS["time"])}}}


SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "urn:hh_plugin:file-format:1.0",
    "title": "hh_plugin file metadata, format version 1.0",
    "description": "The JSON document stored in the root attribute 'metadata' of an "
                   "hh_plugin HDF5 file. Arrays live in datasets; see export/FORMAT.md.",
    "type": "object",
    "required": ["format", "format_version", "spec", "state", "input", "traces", "provenance"],
    "additionalProperties": False,
    "properties": {
        "format": {"const": FORMAT_NAME},
        "format_version": {"const": FORMAT_VERSION},
        "spec": {"$ref": "#/$defs/spec"},
        "state": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/state"}]},
        "input": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/input"}]},
        "traces": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/traces"}]},
        "provenance": {"$ref": "#/$defs/provenance"},
    },
    "$defs": {
        "time": _time_quantity(False),
        "positive_time": _time_quantity(True),
        "positive_voltage": {"type": "object", "required": ["value", "unit"],
                             "additionalProperties": False,
                             "properties": {"value": {"type": "number", "exclusiveMinimum": 0},
                                            "unit": {"enum": sorted(FACTORS["voltage"])}}},
        "spec": {
            "type": "object",
            "required": ["model", "integrator", "dt", "spike_rule", "reset_rule", "spk_reset",
                         "surrogate"],
            "additionalProperties": False,
            "properties": {
                "model": {"type": "string", "minLength": 1,
                          "description": "registered model name, e.g. 'hodgkin_huxley'"},
                "definition": {"type": "object",
                               "description": "the model's definition "
                                              "(ModelDefinition.to_dict); optional, read "
                                              "when the model is not registered"},
                "integrator": {"enum": ["exponential_euler (Jacobi)",
                                        "rk4 (classic, all stages)"],
                               "description": "the integration method (HHSpec.method); "
                                              "readers that do not know one refuse the "
                                              "file"},
                "dt": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/positive_time"}]},
                "spike_rule": {"const": "rising_edge",
                               "description": "spike in step k iff V before < V_th <= V after"},
                "reset_rule": {"enum": ["none", "soft", "hard"]},
                "spk_reset": {"enum": ["soft", "hard"]},
                "surrogate": {
                    "type": "object", "required": ["kind", "alpha", "width"],
                    "additionalProperties": False,
                    "properties": {"kind": {"const": "relu"},
                                   "alpha": {"type": "number", "minimum": 0},
                                   "width": {"type": "number", "exclusiveMinimum": 0},
                                   "scale": {"$ref": "#/$defs/positive_voltage",
                                             "description": "V_scale: x = (V - V_th)/scale; "
                                                            "absent: |V_th|, 1 mV where "
                                                            "V_th = 0"}}},
            },
        },
        "state": {
            "type": "object", "required": ["time"], "additionalProperties": False,
            "properties": {"time": {"$ref": "#/$defs/time"}},
        },
        "input": {
            "type": "object", "required": ["t_start"], "additionalProperties": False,
            "properties": {"t_start": {"$ref": "#/$defs/time"}},
        },
        "traces": {
            "type": "object", "required": ["variables"], "additionalProperties": False,
            "properties": {"variables": {
                "type": "array", "minItems": 1, "uniqueItems": True,
                "items": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}}},
        },
        "provenance": {
            "type": "object", "required": ["backend", "created", "versions"],
            "additionalProperties": False,
            "properties": {
                "backend": {"enum": ["torch", "brian2", "none"]},
                "created": {"type": "string",
                            "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}"},
                "versions": {"type": "object",
                             "additionalProperties": {"type": "string"}},
                "device": {"type": "string"},
                "source": {"type": "string"},
                "notes": {"type": "string"},
            },
        },
    },
}

_TYPES = {"object": dict, "array": list, "string": str, "null": type(None), "boolean": bool}


def _is_type(value: Any, name: str) -> bool:
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def _resolve(ref: str) -> dict:
    node: Any = SCHEMA
    for part in ref.lstrip("#/").split("/"):
        node = node[part]
    return node


def _errors(value: Any, schema: dict, where: str) -> List[str]:
    if "$ref" in schema:
        return _errors(value, _resolve(schema["$ref"]), where)
    if "anyOf" in schema:
        results = [_errors(value, s, where) for s in schema["anyOf"]]
        if all(results):
            return min(results, key=len)
        return []
    if "const" in schema and value != schema["const"]:
        return [f"{where} is {value!r}, expected {schema['const']!r}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where} is {value!r}, expected one of {schema['enum']}"]
    if "type" in schema and not _is_type(value, schema["type"]):
        return [f"{where} must be of type {schema['type']}, got {type(value).__name__}"]
    out = []
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                out.append(f"{where} is missing the field {key!r}")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                out += _errors(item, props[key], f"{where}.{key}")
            elif extra is False:
                out.append(f"{where} has an unexpected field {key!r}")
            elif isinstance(extra, dict):
                out += _errors(item, extra, f"{where}.{key}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            out.append(f"{where} needs at least {schema['minItems']} item(s)")
        if schema.get("uniqueItems") and len(set(map(json.dumps, value))) != len(value):
            out.append(f"{where} has repeated items")
        if "items" in schema:
            for i, item in enumerate(value):
                out += _errors(item, schema["items"], f"{where}[{i}]")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            out.append(f"{where} is empty")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f"{where} = {value!r} does not match {schema['pattern']!r}")
    if _is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            out.append(f"{where} = {value} is below {schema['minimum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            out.append(f"{where} = {value} must be > {schema['exclusiveMinimum']}")
    return out


def validate(metadata: Any) -> List[str]:
    """Problems of ``metadata`` against :data:`SCHEMA` (empty list: valid)."""
    return _errors(metadata, SCHEMA, "metadata")


def schema_text() -> str:
    """The schema as the JSON text stored in ``export/schema/``."""
    return json.dumps(SCHEMA, indent=2) + "\n"


if __name__ == "__main__":
    sys.stdout.write(schema_text())
