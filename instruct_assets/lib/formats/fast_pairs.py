"""The fast path for clean Alpaca / prompt-completion tables (the 1M-row JSONL case).

When a file parses as a whole with polars' native reader and its columns are exactly the
fields an Alpaca or prompt/completion mapping reads, all text, the obviously valid rows
(text values that cannot be a number, boolean, list or object polars turned into text)
are mapped here with column expressions, without a JSON round-trip through DuckDB. Any row
that is not obviously valid (a null instruction, a blank answer, ...) is handed back to the
general path in ``pairs.py``, which owns every error message. So this module decides only
*speed*, never semantics; tests assert both paths give identical output on real files.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from instruct_assets.lib.formats.detect import FieldMap, detect_fields
from instruct_assets.lib.sources import SourceSpec

MESSAGES = pl.List(pl.Struct({"role": pl.String, "content": pl.String}))


def fast_fieldmap(table: pl.DataFrame, spec: SourceSpec) -> FieldMap | None:
    """The mapping when ``table`` qualifies for the fast path, else None."""
    if spec.merged_prompt or table.height == 0:
        return None
    fields = {n: t for n, t in table.schema.items() if n != "source_row"}
    fm = detect_fields(list(fields), spec)
    if fm.format not in ("alpaca", "prompt_completion") or fm.history:
        return None
    if not fm.prompt or not fm.response or set(fields) != set(fm.mapped_fields()):
        return None
    if any(dtype not in (pl.String, pl.Null) for dtype in fields.values()):
        return None
    return fm


def fast_map(
    table: pl.DataFrame, fm: FieldMap, system_prompt: str | None, types_checked: bool = False
) -> tuple[pl.DataFrame, pl.Series]:
    """(mapped rows with ``source_row``/``source_format``/``messages``, rows left over).

    ``table`` has a ``source_row`` column beside the record fields. ``types_checked``: the
    caller has verified in the raw records that every mapped value is a JSON string, so
    text that looks like a coerced number or list is taken as the string it is.
    """
    # CRLF -> LF, only in the columns that hold a CR (the check is a memchr scan; the
    # replacement copies every string).
    text = {c: (pl.col(c).cast(pl.String).str.replace_all("\r\n", "\n", literal=True)
                if _has_cr(table[c]) else pl.col(c).cast(pl.String))
            for c in fm.mapped_fields()}
    prompt, response = text[fm.prompt], text[fm.response]
    if fm.query:
        query = text[fm.query]
        user = (pl.when(_blank(query.fill_null(""))).then(prompt)
                .when(prompt == "").then(query)
                .otherwise(pl.concat_str(prompt, pl.lit("\n\n"), query)))
    else:
        user = prompt
    system = text[fm.system] if fm.system else pl.lit(None, dtype=pl.String)
    if system_prompt:
        system = (pl.when(system.is_null() | _blank(system))
                  .then(pl.lit(system_prompt)).otherwise(system))
    ok = (
        (pl.lit(True) if types_checked else
         pl.all_horizontal([~_maybe_coerced(pl.col(c)) for c in fm.mapped_fields()]))
        & prompt.is_not_null()
        & response.is_not_null() & ~_blank(response)
        & user.is_not_null() & ~_blank(user)
    )
    frame = table.select("source_row", ok.alias("_ok"), user.alias("_user"),
                         response.alias("_response"), system.alias("_system"))
    good = frame.filter("_ok")
    has_system = pl.col("_system").is_not_null() & ~_blank(pl.col("_system"))
    plain = good.filter(~has_system)
    parts = [plain.select("source_row", _fixed_lists(plain, ("user", "assistant"),
                                                     ("_user", "_response")))]
    with_system = good.filter(has_system)
    if with_system.height:
        parts.append(with_system.select("source_row", _fixed_lists(
            with_system, ("system", "user", "assistant"), ("_system", "_user", "_response"))))
    mapped = pl.concat(parts).sort("source_row").select(
        "source_row", pl.lit(fm.format).alias("source_format"), "messages")
    return mapped, frame.filter(~pl.col("_ok"))["source_row"]


#: What polars' reader makes of a non-string JSON value in a string column: a number,
#: a boolean, or compact JSON of a list/object. A *string* can look the same ("42", "[1]"),
#: so such rows are not obviously valid and go to the general path, which sees real types.
_COERCED = r"^(?:-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false)$|^[\[{]"


def _blank(col: pl.Expr) -> pl.Expr:
    """Empty or whitespace only (what ``str.strip_chars() == ""`` tests, without copying
    every string: the anchored pattern stops at the first non-space character)."""
    return col.str.contains(r"^\s*$")


def _has_cr(values: pl.Series) -> bool:
    return values.dtype == pl.String and bool(values.str.contains("\r", literal=True).any())


def _maybe_coerced(col: pl.Expr) -> pl.Expr:
    return col.str.contains(_COERCED).fill_null(False)


def _fixed_lists(frame: pl.DataFrame, roles: tuple[str, ...], columns: tuple[str, ...]
                 ) -> pl.Series:
    """``messages`` of exactly ``len(roles)`` turns per row, built by interleaving columns
    and reshaping (``concat_list`` of structs is several times slower at 1M rows)."""
    n, k = frame.height, len(roles)
    if n == 0:
        return pl.Series("messages", [], dtype=MESSAGES)
    content = pl.concat([frame[c] for c in columns])
    order = (np.arange(k, dtype=np.int64)[None, :] * n + np.arange(n, dtype=np.int64)[:, None])
    content = content.gather(order.ravel())
    role = pl.Series(roles).gather(np.tile(np.arange(k, dtype=np.int64), n))
    turns = pl.DataFrame({"role": role, "content": content}).select(
        pl.struct("role", "content")).to_series()
    return turns.reshape((n, k)).cast(MESSAGES).alias("messages")
