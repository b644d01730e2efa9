"""The tools, calls and schemas the constraint tests share: the llguidance run
(``test_constraint.py``) and the xgrammar run (``tests/grammar_check``, ``make grammar-check``)
check the same grammars."""

from __future__ import annotations

from typing import Any

from toolcall_proxy.parsing.constraint import ConstraintTool

__all__ = ["BOOKED", "BOOKING", "CORPUS", "PARIS", "WEATHER"]

WEATHER = ConstraintTool(
    "get_weather",
    {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
        "required": ["city"],
    },
)
BOOKING = ConstraintTool(
    "book_room",
    {
        "type": "object",
        "properties": {
            "guest": {"$ref": "#/$defs/Guest"},
            "nights": {"type": "integer", "minimum": 1},
            "notes": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
        "required": ["guest", "nights"],
        "$defs": {"Guest": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}},
    },
)
PARIS = ("get_weather", {"city": "Paris", "unit": "celsius"})
BOOKED = ("book_room", {"guest": {"name": "Ada"}, "nights": 2})

# Real-world tool schemas: every grammar must compile for each of them.
# fmt: off
CORPUS: list[dict[str, Any]] = [
    {"type": "object", "properties": {}},
    {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
    {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 10}}},
    {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}}, "required": ["x", "y"]},
    {"type": "object", "properties": {"flag": {"type": "boolean"}}, "required": ["flag"]},
    {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}}}},
    {"type": "object", "properties": {"unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["unit"]},
    {"type": "object", "properties": {"kind": {"const": "fixed"}}, "required": ["kind"]},
    {"type": "object", "properties": {"maybe": {"type": ["string", "null"]}}},
    {"type": "object", "properties": {"maybe": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None}}},
    {"type": "object", "properties": {"either": {"oneOf": [{"type": "string"}, {"type": "integer"}]}}},
    {
        "type": "object",
        "properties": {"point": {"$ref": "#/$defs/Point"}},
        "required": ["point"],
        "$defs": {"Point": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}}}},
    },
    {
        "type": "object",
        "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/Item"}}},
        "$defs": {
            "Item": {
                "type": "object",
                "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}},
                "required": ["sku", "qty"],
            }
        },
    },
    {
        "type": "object",
        "properties": {"tree": {"$ref": "#/$defs/Node"}},
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "value": {"type": "integer"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                },
            }
        },
    },
    {
        "type": "object",
        "properties": {"budget": {"allOf": [{"$ref": "#/$defs/Money"}], "description": "pydantic's wrapped ref"}},
        "$defs": {"Money": {"type": "object", "properties": {"amount": {"type": "number"}}, "required": ["amount"]}},
    },
    {
        "type": "object",
        "properties": {"legacy": {"$ref": "#/definitions/Old"}},
        "definitions": {"Old": {"type": "string", "maxLength": 10}},
    },
    {"type": "object", "properties": {"date": {"type": "string", "format": "date"}}},
    {"type": "object", "properties": {"email": {"type": "string", "pattern": "^[^@]+@[^@]+$"}}},
    {"type": "object", "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 100}}},
    {"type": "object", "properties": {"meta": {"type": "object", "additionalProperties": {"type": "string"}}}},
    {"type": "object", "properties": {"any": {}}},
    {
        "type": "object",
        "properties": {"matrix": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}},
    },
    {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "string"}, "c": {"type": "string"}},
        "required": ["b"],
    },
    {
        "type": "object",
        "properties": {"ids": {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 5}},
    },
    {
        "type": "object",
        "properties": {
            "opt": {
                "type": "object",
                "properties": {"deep": {"type": "object", "properties": {"deeper": {"type": "string"}}}},
            }
        },
    },
    {"type": "object", "properties": {"mode": {"enum": ["fast", 1, True, None]}}},
    {"type": "object", "properties": {"s": {"type": "string"}}, "additionalProperties": False, "required": ["s"]},
    {"type": "object", "properties": {"ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}}},
    {
        "type": "object",
        "properties": {"pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]}},
    },
    {
        "type": "object",
        "properties": {"code": {"type": "string", "description": "a file's text: may hold </parameter>"}},
    },
    {
        "type": "object",
        "properties": {"shape": {"anyOf": [{"$ref": "#/$defs/Circle"}, {"$ref": "#/$defs/Square"}]}},
        "$defs": {
            "Circle": {"type": "object", "properties": {"r": {"type": "number"}}, "required": ["r"]},
            "Square": {"type": "object", "properties": {"side": {"type": "number"}}, "required": ["side"]},
        },
    },
]


# fmt: on
