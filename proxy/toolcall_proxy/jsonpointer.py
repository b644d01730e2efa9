"""Local JSON Schema references (``#/$defs/Name``): where they point inside their document.

The proxy follows no other kind (see ``server/schemas.py``); schema checking, the decode-time
constraint and the parser's typing of raw-text values all resolve them here.
"""

from __future__ import annotations

from typing import Any

__all__ = ["resolve"]


def resolve(document: Any, ref: str) -> Any:
    """What ``ref`` (``#`` or ``#/a/b``, RFC 6901 escapes) points to in ``document``; ``None``
    when it points to nothing or outside."""
    if ref == "#":
        return document
    if not ref.startswith("#/"):
        return None
    node: Any = document
    for raw in ref[2:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node
