"""The format contract of normalized examples, as checks that name the failing rows.

Ingestion already rejects rows that break these rules; the checks re-verify what was
written, so a bug in a mapper can never publish a broken source. Pure functions over the
normalized frame: the Dagster asset checks call them and report what they return.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from instruct_assets.lib.formats.turns import ALLOWED_TRANSITIONS
from instruct_assets.lib.schema import NORMALIZED_SCHEMA, ROLES

SAMPLE = 5


@dataclass(frozen=True)
class CheckOutcome:
    """Result of one contract check: pass/fail, how many rows fail, and a few of them."""

    passed: bool
    failing: int
    description: str
    sample_rows: list[int] = field(default_factory=list)
    sample_ids: list[str] = field(default_factory=list)
    details: dict[str, int] = field(default_factory=dict)


def _rows_where(frame: pl.DataFrame, bad: pl.Expr | pl.Series, what: str) -> CheckOutcome:
    failing = frame.filter(bad)
    head = failing.sort("source_file", "source_row").head(SAMPLE)
    return CheckOutcome(
        passed=failing.height == 0,
        failing=failing.height,
        description=(f"all {frame.height} rows: {what}" if failing.height == 0 else
                     f"{failing.height} of {frame.height} rows violate: {what}"),
        sample_rows=head["source_row"].to_list(),
        sample_ids=head["example_id"].to_list(),
    )


def _roles() -> pl.Expr:
    return pl.col("messages").list.eval(pl.element().struct.field("role"))


def schema_matches(frame: pl.DataFrame) -> CheckOutcome:
    want = list(NORMALIZED_SCHEMA.items())
    have = list(frame.schema.items())
    ok = have == want
    return CheckOutcome(ok, 0 if ok else 1,
                        "columns and types equal the contract" if ok else
                        f"schema differs: have {have}, want {want}")


def roles_valid(frame: pl.DataFrame) -> CheckOutcome:
    bad = ~_roles().list.eval(pl.element().is_in(list(ROLES))).list.all()
    return _rows_where(frame, bad, f"every role is one of {list(ROLES)}")


def system_only_first(frame: pl.DataFrame) -> CheckOutcome:
    later_system = pl.col("messages").list.slice(1).list.eval(
        pl.element().struct.field("role") == "system").list.any()
    return _rows_where(frame, later_system, "a system turn appears only first")


def first_turn_is_user(frame: pl.DataFrame) -> CheckOutcome:
    roles = _roles()
    first_real = pl.when(roles.list.first() == "system").then(roles.list.get(1, null_on_oob=True)) \
        .otherwise(roles.list.first())
    return _rows_where(frame, first_real.fill_null("") != "user",
                       "the first non-system turn is the user's")


def turns_alternate(frame: pl.DataFrame) -> CheckOutcome:
    """user/assistant alternate; tool turns only around assistant tool calls.

    Call turns are not marked in the canonical schema, so an assistant turn directly followed
    by a tool turn counts as a call (the mapping documented in ``formats/turns.py``).
    """
    def bad(roles: pl.Expr) -> pl.Expr:
        marked = roles.list.eval(
            pl.when((pl.element() == "assistant") & (pl.element().shift(-1) == "tool"))
            .then(pl.lit("call")).otherwise(pl.element()))
        pairs = marked.list.eval(pl.element().shift(1) + ">" + pl.element()).list.slice(1)
        return ~pairs.list.eval(pl.element().is_in(list(ALLOWED_TRANSITIONS))).list.all()

    return _rows_where(frame, _per_role_sequence(frame, bad),
                       "turns alternate user/assistant (tool turns after calls)")


def _per_role_sequence(frame: pl.DataFrame, bad: Callable[[pl.Expr], pl.Expr]) -> pl.Series:
    """``bad(roles)`` evaluated once per distinct role sequence and mapped back to the rows:
    a dataset has a handful of distinct sequences, so list windows run on a few rows, not on
    a million."""
    keyed = frame.select(_roles().alias("roles"),
                         _roles().list.join("\x1f").alias("_key"))
    verdict = keyed.unique("_key").select("_key", bad(pl.col("roles")).alias("_bad"))
    return keyed.select("_key").join(verdict, on="_key", how="left",
                                     maintain_order="left")["_bad"]


def ends_with_assistant(frame: pl.DataFrame) -> CheckOutcome:
    return _rows_where(frame, _roles().list.last().fill_null("") != "assistant",
                       "the conversation ends with an assistant turn")


def no_empty_content(frame: pl.DataFrame) -> CheckOutcome:
    empty = pl.col("messages").list.eval(
        pl.element().struct.field("content").fill_null("").str.strip_chars() == "").list.any()
    return _rows_where(frame, empty | (pl.col("messages").list.len() == 0),
                       "no turn has empty content")


def example_id_unique(frame: pl.DataFrame) -> CheckOutcome:
    return _rows_where(frame, pl.col("example_id").is_duplicated() | pl.col("example_id").is_null(),
                       "example_id is unique within the source")


def one_format(frame: pl.DataFrame) -> CheckOutcome:
    counts = dict(frame["source_format"].value_counts().iter_rows())
    counts = {str(k): int(v) for k, v in sorted(counts.items(), key=lambda kv: str(kv[0]))}
    ok = len(counts) <= 1
    minority = frame.filter(pl.col("source_format") != max(counts, key=counts.get)) \
        if not ok else frame.clear()
    head = minority.sort("source_file", "source_row").head(SAMPLE)
    return CheckOutcome(
        ok, minority.height,
        f"one format per source: {counts}" if ok else
        f"the source mixes formats {counts}; split it into one folder per format",
        head["source_row"].to_list(), head["example_id"].to_list(), counts)


def row_accounting(records_read: int, rows: int, rejects: int) -> CheckOutcome:
    ok = records_read == rows + rejects
    return CheckOutcome(ok, abs(records_read - rows - rejects),
                        f"records read {records_read} = rows {rows} + rejects {rejects}"
                        if ok else f"records read {records_read} != rows {rows} + "
                                   f"rejects {rejects}")


def reject_rate(records_read: int, rejects: int, ceiling: float) -> CheckOutcome:
    rate = rejects / records_read if records_read else 0.0
    ok = rate <= ceiling
    return CheckOutcome(ok, rejects if not ok else 0,
                        f"reject rate {rate:.1%} (ceiling {ceiling:.0%})")


ROW_CHECKS = {
    "schema_matches_contract": schema_matches,
    "roles_valid": roles_valid,
    "system_only_first": system_only_first,
    "first_turn_is_user": first_turn_is_user,
    "turns_alternate": turns_alternate,
    "ends_with_assistant": ends_with_assistant,
    "no_empty_content": no_empty_content,
    "example_id_unique": example_id_unique,
    "one_format_per_source": one_format,
}


def source_checks(examples: pl.DataFrame, records_read: int, rejects: int,
                  max_reject_rate: float) -> dict[str, CheckOutcome]:
    """Every check of one normalized source, by name (the ingestion asset's checks)."""
    outcomes = {name: check(examples) for name, check in ROW_CHECKS.items()}
    outcomes["row_accounting"] = row_accounting(records_read, examples.height, rejects)
    outcomes["reject_rate_below_ceiling"] = reject_rate(records_read, rejects, max_reject_rate)
    return outcomes
