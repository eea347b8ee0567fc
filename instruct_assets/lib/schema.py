"""The canonical data contracts, defined once.

What belongs here: the Arrow/Polars schemas of every table the pipeline publishes
(normalized examples, rejects) and the small vocabularies (roles, formats, reject
reasons). What does not: any transform. Every Parquet write validates against these.
"""

from __future__ import annotations

import polars as pl

#: Roles allowed in canonical ``messages``. Tool *calls* are assistant turns (their content
#: is the call JSON as written); tool *results* (ShareGPT ``observation``) are ``tool`` turns.
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")

#: Values of ``source_format``.
FORMATS: tuple[str, ...] = ("alpaca", "openai", "sharegpt", "prompt_completion", "qa_text")

#: Values of ``origin``.
ORIGINS: tuple[str, ...] = ("human", "synthetic")

#: The small vocabulary of ``reason_code`` in rejects, with what each means.
REJECT_REASONS: dict[str, str] = {
    "invalid_encoding": "bytes are not valid UTF-8 (or the file is binary)",
    "invalid_json": "the record is not valid JSON (truncated, Python dict syntax, garbage)",
    "invalid_csv": "a CSV row whose field count differs from the header",
    "unreadable_file": "the file could not be read at all (e.g. a corrupt Parquet file)",
    "empty_file": "a zero-byte (or whitespace-only) file: no records at all",
    "not_a_record": "a JSON value that is not an object (number, string, list) where a record"
    " belongs",
    "unknown_format": "the record fits no known instruction format and no mapping was configured",
    "missing_field": "a field the format requires is absent or null",
    "wrong_type": "a field holds a number, list or object where text belongs",
    "empty_content": "a user or assistant turn (or the whole conversation) is empty",
    "bad_role": "a speaker/role that is not known and not mapped in sources.yaml",
    "bad_turn_order": "turns violate the order the format demands (e.g. no user turn first)",
    "too_large": "a single record larger than the configured ceiling",
}

MESSAGE_DTYPE = pl.Struct({"role": pl.String, "content": pl.String})

#: ``data/normalized/source=<source>/`` rows, in this column order.
NORMALIZED_SCHEMA = pl.Schema(
    {
        "example_id": pl.String,
        "source": pl.String,
        "source_file": pl.String,
        "source_row": pl.Int64,
        "source_format": pl.String,
        "messages": pl.List(MESSAGE_DTYPE),
        "tools": pl.String,
        "origin": pl.String,
        "extra": pl.String,
    }
)

#: ``data/rejects/source=<source>/`` rows, in this column order.
REJECTS_SCHEMA = pl.Schema(
    {
        "source": pl.String,
        "source_file": pl.String,
        "source_row": pl.Int64,
        "reason_code": pl.String,
        "detail": pl.String,
        "raw": pl.String,
    }
)

#: Raw records kept in a reject are cut to this many characters.
RAW_EXCERPT_CHARS = 2000


def conform(frame: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    """Select and cast ``frame`` to exactly ``schema``; raise if a column is missing.

    Why: one enforcement point, so a stage can never publish a drifted schema.
    """
    missing = [c for c in schema.names() if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks contract columns {missing}; has {frame.columns}")
    return frame.select(pl.col(name).cast(dtype) for name, dtype in schema.items())


def empty(schema: pl.Schema) -> pl.DataFrame:
    """An empty frame with ``schema``."""
    return pl.DataFrame(schema=schema)
