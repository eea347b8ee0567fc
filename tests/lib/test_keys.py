"""The example key helpers: the fast order is polars' stable sort, the checks their rules."""

import numpy as np
import polars as pl
import pytest

from instruct_assets.lib import keys
from instruct_assets.lib.keys import KEY, adjacent_repeats, key_order, key_sorted, repeated

#: ids that stress the 8-byte words: prefixes of each other, NUL, non-ASCII, >16 bytes, empty
IDS = ["b", "a", "ab", "a\0", "a\0\0", "\0", "", "é", "日本", "ée", "0003d4211ad9bce8",
       "0003d4211ad9bce8-1", "0003d4211ad9bce", "z" * 17, "z" * 16, "z" * 16 + "\0",
       "aaaaaaaa", "aaaaaaaab", "aaaaaaaa\0b", "éééééééé"]


def _stable(frame: pl.DataFrame) -> list[int]:
    return frame.select(pl.arg_sort_by(KEY, maintain_order=True)).to_series().to_list()


def _frame(rows: list[tuple[str | None, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"source": pl.String, "example_id": pl.String},
                        orient="row")


def _shuffled(frame: pl.DataFrame, seed: int = 0) -> pl.DataFrame:
    return frame[np.random.default_rng(seed).permutation(frame.height)]


@pytest.mark.parametrize("sources", [["s"], ["s2", "s1", "é", "s10"]])
def test_key_order_is_the_stable_sort_on_awkward_ids(sources: list[str]) -> None:
    rows = [(sources[i % len(sources)], IDS[(i * 7) % len(IDS)] + IDS[i % 3])
            for i in range(400)]
    frame = _shuffled(_frame(rows))
    assert frame["example_id"].is_duplicated().any()  # equal keys keep their order
    assert key_order(frame).to_list() == _stable(frame)


def test_key_order_with_null_keys_is_polars_stable_order() -> None:
    frame = _frame([("b", "x"), (None, "y"), ("a", None), ("a", "z"), (None, None),
                    ("b", "a"), ("a", None), (None, "y")])
    assert key_order(frame).to_list() == _stable(frame)


@pytest.mark.parametrize("rows", [[], [("s", "x")], [(None, None)], [("s", "x"), ("s", "x")]])
def test_key_order_of_tiny_frames(rows: list[tuple[str | None, str | None]]) -> None:
    frame = _frame(rows)
    order = key_order(frame)
    assert isinstance(order, pl.Series)
    assert order.to_list() == _stable(frame) == list(range(len(rows)))


def test_key_order_is_not_fooled_by_a_shared_16_byte_prefix() -> None:
    frame = _frame([("s", "0123456789abcdefZ"), ("s", "0123456789abcdef"),
                    ("s", "0123456789abcdefA"), ("s", "0123456789abcdef\0")])
    assert key_order(frame).to_list() == [1, 3, 2, 0]


def _id_like(n: int, seed: int) -> pl.Series:
    """``n`` ids shaped like real ones: 16 hex digits, every 30th with a ``-<k>`` repeat
    suffix (as ``normalize.assign_ids`` numbers repeated conversations)."""
    raw = np.frombuffer(np.random.default_rng(seed).bytes(8 * n), np.uint8).reshape(n, 8)
    digits = np.frombuffer(b"0123456789abcdef", np.uint8)
    text = np.empty((n, 16), np.uint8)
    text[:, 0::2], text[:, 1::2] = digits[raw >> 4], digits[raw & 15]
    ids = pl.Series("example_id", text.view("S16").ravel()).cast(pl.String)
    k = pl.int_range(n, eager=True)
    return pl.select(pl.when(k % 30 == 0).then(pl.format("{}-{}", ids, k % 7 + 1))
                     .otherwise(ids)).to_series().alias("example_id")


def test_key_order_is_the_stable_sort_on_many_id_like_keys() -> None:
    """300k id-like keys, shuffled: one source, three sources, and every key twice (ties)."""
    ids = _id_like(300_000, seed=2)
    one = pl.DataFrame({"source": "s", "example_id": ids})
    many = one.with_columns(source=pl.format("s{}", pl.int_range(pl.len()) % 3))
    twice = _shuffled(pl.concat([many.head(100_000), many.head(100_000)]), seed=1)
    for case in (_shuffled(one), _shuffled(many), twice):
        assert np.array_equal(key_order(case).to_numpy(), np.asarray(_stable(case)))


def test_key_sorted_strict_needs_increasing_unique_non_null_keys() -> None:
    assert key_sorted(_frame([("a", "z"), ("b", "a"), ("b", "b")]), strict=True)
    assert not key_sorted(_frame([("a", "x"), ("a", "x")]), strict=True)  # tie
    assert not key_sorted(_frame([("b", "a"), ("a", "z")]), strict=True)
    assert not key_sorted(_frame([("a", "b"), ("a", "a")]), strict=True)
    assert not key_sorted(_frame([("a", "x"), ("b", None), ("c", "y")]), strict=True)
    assert not key_sorted(_frame([(None, "x"), ("b", "y")]), strict=True)
    assert key_sorted(_frame([]), strict=True)
    assert key_sorted(_frame([("a", "x")]), strict=True)
    assert not key_sorted(_frame([("a", None)]), strict=True)


def test_key_sorted_allows_ties_unless_strict() -> None:
    assert key_sorted(_frame([("a", "x"), ("a", "x"), ("b", "a")]), strict=False)
    assert not key_sorted(_frame([("a", "y"), ("a", "x")]), strict=False)
    assert not key_sorted(_frame([("b", "a"), ("a", "b")]), strict=False)
    assert not key_sorted(_frame([("a", "x"), ("b", None), ("c", "y")]), strict=False)
    # fewer than two rows: a (stable) sort is the identity, whatever the keys
    assert key_sorted(_frame([]), strict=False)
    assert key_sorted(_frame([(None, None)]), strict=False)


@pytest.mark.parametrize("strict", [True, False])
def test_key_sorted_sees_a_disorder_at_a_slice_boundary(monkeypatch: pytest.MonkeyPatch,
                                                        strict: bool) -> None:
    monkeypatch.setattr(keys, "_SLICE_ROWS", 4)
    ordered = _frame([("s", f"{i:03d}") for i in range(12)])
    assert key_sorted(ordered, strict=strict)
    for at in (3, 4, 5, 8, 11):  # swap rows at-1 and at: across and inside slices
        swapped = ordered[[*range(at - 1), at, at - 1, *range(at + 1, 12)]]
        assert not key_sorted(swapped, strict=strict), at
    tied = ordered[[0, 1, 2, 3, 3, 4, 5, 6]]  # repeat across the 4-row boundary
    assert key_sorted(tied, strict=strict) is not strict


def test_adjacent_repeats_counts_rows_equal_to_a_neighbour() -> None:
    frame = _frame([("a", "1"), ("a", "1"), ("a", "2"), ("b", "2"), ("b", "2"), ("b", "2"),
                    ("c", "1")])
    assert adjacent_repeats(frame) == 5
    assert adjacent_repeats(_frame([("a", "1"), ("a", "2"), ("b", "1")])) == 0
    assert adjacent_repeats(_frame([(None, None), (None, None), ("a", None), ("a", None)])) == 0
    assert adjacent_repeats(_frame([])) == 0


def test_repeated_is_is_duplicated_on_strings_numbers_and_nulls() -> None:
    rng = np.random.default_rng(5)
    ids = _id_like(50_000, seed=3)
    values = pl.concat([ids, ids.sample(500, seed=1), pl.Series([None, None], dtype=pl.String)])
    values = values.gather(rng.permutation(values.len()))
    for series in (values, pl.Series([3, 1, 3, None, 2]), pl.Series([], dtype=pl.String),
                   pl.Series(["only"]), pl.Series(["a", "b"])):
        got = repeated(series)
        assert got.dtype == pl.Boolean
        assert got.to_list() == series.is_duplicated().to_list()
    assert repeated(values).sum() == 1002  # 500 repeated ids, twice each, and two nulls
