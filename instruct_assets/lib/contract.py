"""The format contract of normalized examples, as checks that name the failing rows.

Ingestion already rejects rows that break these rules; the checks re-verify what was
written, so a bug in a mapper can never publish a broken source. ``SourceChecks`` runs them
over a source's frames chunk by chunk (``source_checks`` over one frame); the Dagster asset
checks report what it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from instruct_assets.lib.formats.turns import ALLOWED_TRANSITIONS
from instruct_assets.lib.keys import repeated
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


#: The narrow columns a failing-row sample is made of (sorted by file, then row).
_SAMPLE_COLUMNS = ("source_file", "source_row", "example_id")
#: The sample of a check with no failing row.
_NO_SAMPLE = pl.Schema({"source_row": pl.Int64, "example_id": pl.String})


def _first_rows(narrow: pl.DataFrame) -> pl.DataFrame:
    """The first ``SAMPLE`` rows by (file, row), without sorting every row."""
    if narrow.height > SAMPLE:
        narrow = narrow.bottom_k(SAMPLE, by=["source_file", "source_row"])
    return narrow.sort("source_file", "source_row")


@dataclass
class _Failing:
    """Failing rows of one row check over one or more chunks: a count and the first
    ``SAMPLE`` failing rows (narrow), so chunk results merge into the whole-frame result."""

    what: str
    failing: int = 0
    head: pl.DataFrame | None = None

    @classmethod
    def of(cls, frame: pl.DataFrame, bad: pl.Expr | pl.Series, what: str) -> _Failing:
        mask = bad if isinstance(bad, pl.Series) else frame.select(bad).to_series()
        n = int(mask.sum() or 0)
        head = (_first_rows(frame.select(*_SAMPLE_COLUMNS).filter(mask)) if n
                else frame.select(*_SAMPLE_COLUMNS).clear())
        return cls(what, n, head)

    def merge(self, other: _Failing) -> _Failing:
        if self.head is None or not other.failing:
            return other if self.head is None else self
        if not self.failing:
            return other
        return _Failing(self.what, self.failing + other.failing,
                        _first_rows(pl.concat([self.head, other.head])))

    def outcome(self, total: int) -> CheckOutcome:
        head = self.head if self.head is not None else pl.DataFrame(schema=_NO_SAMPLE)
        return CheckOutcome(
            passed=self.failing == 0,
            failing=self.failing,
            description=(f"all {total} rows: {self.what}" if self.failing == 0 else
                         f"{self.failing} of {total} rows violate: {self.what}"),
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


def _roles_valid(frame: pl.DataFrame) -> _Failing:
    bad = ~_roles().list.eval(pl.element().is_in(list(ROLES))).list.all()
    return _Failing.of(frame, bad, f"every role is one of {list(ROLES)}")


def _system_only_first(frame: pl.DataFrame) -> _Failing:
    later_system = pl.col("messages").list.slice(1).list.eval(
        pl.element().struct.field("role") == "system").list.any()
    return _Failing.of(frame, later_system, "a system turn appears only first")


def _first_turn_is_user(frame: pl.DataFrame) -> _Failing:
    roles = _roles()
    first_real = pl.when(roles.list.first() == "system").then(roles.list.get(1, null_on_oob=True)) \
        .otherwise(roles.list.first())
    return _Failing.of(frame, first_real.fill_null("") != "user",
                       "the first non-system turn is the user's")


def _turns_alternate(frame: pl.DataFrame) -> _Failing:
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

    return _Failing.of(frame, _per_role_sequence(frame, bad),
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


def _ends_with_assistant(frame: pl.DataFrame) -> _Failing:
    return _Failing.of(frame, _roles().list.last().fill_null("") != "assistant",
                       "the conversation ends with an assistant turn")


def _no_empty_content(frame: pl.DataFrame) -> _Failing:
    empty = pl.col("messages").list.eval(
        pl.element().struct.field("content").fill_null("").str.strip_chars() == "").list.any()
    return _Failing.of(frame, empty | (pl.col("messages").list.len() == 0),
                       "no turn has empty content")


_ID_UNIQUE = "example_id is unique within the source"


@dataclass
class _Formats:
    """``one_format_per_source`` over chunks: rows per format (null included, as
    ``value_counts`` counts it) and each format's first ``SAMPLE`` rows, enough to name the
    minority rows once the whole source's majority format is known."""

    counts: dict[str | None, int] = field(default_factory=dict)
    heads: dict[str | None, pl.DataFrame] = field(default_factory=dict)

    def add(self, frame: pl.DataFrame) -> None:
        for fmt, n in frame["source_format"].value_counts().iter_rows():
            self.counts[fmt] = self.counts.get(fmt, 0) + int(n)
        if frame["source_format"].n_unique() == 1:
            parts = {frame["source_format"][0]: frame.select(*_SAMPLE_COLUMNS)}
        else:
            parts = {fmt: rows.drop("source_format") for (fmt,), rows in
                     frame.select(*_SAMPLE_COLUMNS, "source_format")
                     .partition_by("source_format", as_dict=True).items()}
        for fmt, rows in parts.items():
            head = _first_rows(rows)
            self.heads[fmt] = head if fmt not in self.heads else _first_rows(
                pl.concat([self.heads[fmt], head]))

    def outcome(self) -> CheckOutcome:
        counts = {str(k): int(v) for k, v in sorted(self.counts.items(), key=lambda kv: str(kv[0]))}
        ok = len(counts) <= 1
        failing, head = 0, pl.DataFrame(schema=_NO_SAMPLE)
        if not ok:
            main = max(counts, key=counts.get)
            minority = [f for f in self.counts if f is not None and f != main]
            failing = sum(self.counts[f] for f in minority)
            if minority:
                head = _first_rows(pl.concat([self.heads[f] for f in minority]))
        return CheckOutcome(
            ok, failing,
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


#: The row checks that are local to a row: their chunk results merge by count and sample.
_LOCAL_CHECKS: dict[str, Callable[[pl.DataFrame], _Failing]] = {
    "roles_valid": _roles_valid,
    "system_only_first": _system_only_first,
    "first_turn_is_user": _first_turn_is_user,
    "turns_alternate": _turns_alternate,
    "ends_with_assistant": _ends_with_assistant,
    "no_empty_content": _no_empty_content,
}


class SourceChecks:
    """Every check of one source, fed chunk by chunk (in any order) with :meth:`add`.

    Why: a ten-million-row source cannot be checked as one frame. Row-local checks keep a
    count and the first failing rows per check; ``one_format_per_source`` keeps rows per
    format; ``example_id_unique`` keeps the ids with their (file, row) -- about 50 bytes a
    row, the only state that grows with the source -- because a duplicate may span chunks.
    The outcomes equal :func:`source_checks` on the concatenated frame.
    """

    def __init__(self) -> None:
        self.rows = 0
        self._schema: CheckOutcome | None = None
        self._local: dict[str, _Failing] = {}
        self._formats = _Formats()
        self._ids: list[pl.DataFrame] = []
        self._files: dict[str, int] = {}

    def add(self, frame: pl.DataFrame) -> None:
        self.rows += frame.height
        schema = schema_matches(frame)
        if self._schema is None or (self._schema.passed and not schema.passed):
            self._schema = schema
        for name, check in _LOCAL_CHECKS.items():
            part = check(frame)
            self._local[name] = self._local[name].merge(part) if name in self._local else part
        self._formats.add(frame)
        self._ids.append(self._narrow_ids(frame))

    @property
    def formats(self) -> dict[str | None, int]:
        """Rows per ``source_format`` over every frame added."""
        return dict(self._formats.counts)

    def _narrow_ids(self, frame: pl.DataFrame) -> pl.DataFrame:
        """(example_id, file index, source_row): file names are kept once, not per row."""
        names = frame["source_file"].unique(maintain_order=True).to_list()
        for name in names:
            self._files.setdefault(name, len(self._files))
        if not names:
            file = pl.lit(None, dtype=pl.UInt32)
        elif len(names) == 1:
            file = pl.lit(self._files[names[0]], dtype=pl.UInt32)
        else:
            file = pl.col("source_file").replace_strict(self._files, return_dtype=pl.UInt32)
        return frame.select("example_id", file.alias("_file"), "source_row")

    def _id_unique(self) -> CheckOutcome:
        ids = pl.concat(self._ids) if len(self._ids) > 1 else self._ids[0]
        example_ids = ids.get_column("example_id")
        bad = repeated(example_ids) | example_ids.is_null()
        failing = ids.filter(bad)
        names = pl.DataFrame({"_file": range(len(self._files)), "source_file": list(self._files)},
                             schema={"_file": pl.UInt32, "source_file": pl.String})
        narrow = failing.join(names, on="_file", how="left", maintain_order="left").select(
            "source_file", "source_row", "example_id")
        head = _first_rows(narrow)
        return _Failing(_ID_UNIQUE, failing.height, head).outcome(self.rows)

    def outcomes(self, records_read: int, rejects: int,
                 max_reject_rate: float) -> dict[str, CheckOutcome]:
        if self._schema is None:
            self.add(pl.DataFrame(schema=NORMALIZED_SCHEMA))
        assert self._schema is not None
        out: dict[str, CheckOutcome] = {"schema_matches_contract": self._schema}
        out |= {name: failing.outcome(self.rows) for name, failing in self._local.items()}
        out["example_id_unique"] = self._id_unique()
        out["one_format_per_source"] = self._formats.outcome()
        out["row_accounting"] = row_accounting(records_read, self.rows, rejects)
        out["reject_rate_below_ceiling"] = reject_rate(records_read, rejects, max_reject_rate)
        return out


def source_checks(examples: pl.DataFrame, records_read: int, rejects: int,
                  max_reject_rate: float) -> dict[str, CheckOutcome]:
    """Every check of one normalized source, by name (the ingestion asset's checks)."""
    checks = SourceChecks()
    checks.add(examples)
    return checks.outcomes(records_read, rejects, max_reject_rate)
