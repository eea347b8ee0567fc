"""Small SQL-building helpers shared by the format mappers (DuckDB JSON functions)."""

from __future__ import annotations

import json


def lit(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def ident(name: str) -> str:
    """A SQL identifier (struct field or column name)."""
    return '"' + name.replace('"', '""') + '"'


def path_of(key: str) -> str:
    """The JSON path (text, not yet a literal) selecting top-level ``key``."""
    return "$." + json.dumps(key, ensure_ascii=False)


def path(key: str) -> str:
    """A JSON path literal selecting top-level ``key`` (any characters allowed)."""
    return lit(path_of(key))


def rest_of(fields: list[str]) -> str:
    """SQL for the record minus ``fields`` as JSON text, or NULL when nothing is left.

    A JSON merge patch with ``null`` values deletes keys (RFC 7386).
    """
    patch = json.dumps({f: None for f in fields}, ensure_ascii=False)
    expr = f"json_merge_patch(raw, {lit(patch)})"
    return f"nullif(CAST({expr} AS VARCHAR), '{{}}')"


#: A JSON value as text: the decoded string for JSON strings, NULL for anything else.
def json_text(expr: str) -> str:
    return f"CASE WHEN json_type({expr}) = 'VARCHAR' THEN ({expr})->>'$' END"
