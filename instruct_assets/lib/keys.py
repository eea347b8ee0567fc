"""The example key and its order: every table is keyed and sorted by (source, example_id).

Why one module: the key, its row order and the "already in order?" checks decide which
rows line up across stages; written once, every stage sorts and checks the same way (and
the fast order is tested against polars' stable sort once).
"""

import polars as pl

#: The unique key of an example; every published table is sorted by it.
KEY = ["source", "example_id"]

#: Leading bytes of ``example_id`` turned into integer sort keys (see :func:`key_order`).
_ID_PREFIX_WORDS = 2
#: Rows per slice of :func:`key_sorted` (no shifted copy of a whole 10M-row key).
_SLICE_ROWS = 128 * 1024


def key_order(frame: pl.DataFrame) -> pl.Series:
    """Row positions of ``frame`` in (source, example_id) order: exactly
    ``frame.select(pl.arg_sort_by(KEY, maintain_order=True))`` (stable: equal keys keep
    their relative order; null keys as polars places them).

    Sorting a million string ids costs ~2 s; integer keys sort ~10x faster. So the order
    is taken over (source rank, the first 16 bytes of ``example_id`` as two big-endian
    UInt64 words, ``example_id``): the words order ids as their bytes do (shorter ids are
    zero-padded, and the zero byte sorts first), so they agree with the string order and
    the string itself only breaks their ties. Sources are ranked through their sorted
    distinct values (a few), not by sorting every row's name.
    """
    if frame.height == 0 or _null_keys(frame):
        return frame.select(pl.arg_sort_by(KEY, maintain_order=True)).to_series()
    n = 8 * _ID_PREFIX_WORDS
    raw = pl.col("example_id").str.pad_end(n, "\0").cast(pl.Binary)
    words = [
        raw.bin.slice(8 * i, 8).bin.reinterpret(dtype=pl.UInt64, endianness="big").alias(f"_w{i}")
        for i in range(_ID_PREFIX_WORDS)
    ]
    sources = frame.get_column("source").unique().sort()
    ranks = pl.int_range(sources.len(), eager=True, dtype=pl.UInt32)
    rank = (
        []
        if sources.len() <= 1
        else [pl.col("source").replace_strict(sources, ranks, return_dtype=pl.UInt32).alias("_src")]
    )
    keys = frame.lazy().select(*rank, *words, "example_id").collect(engine="in-memory")
    return keys.select(pl.arg_sort_by(keys.columns, maintain_order=True)).to_series()


def key_sorted(frame: pl.DataFrame, *, strict: bool) -> bool:
    """Whether ``frame``'s rows are in (source, example_id) order, so a sort can be skipped.

    ``strict``: keys strictly increase (sorted and unique, no null key). Otherwise ties are
    allowed (a stable sort is then the identity); a frame of two or more rows with a null
    key is not sorted (the sort decides where nulls go), fewer rows always are. Checked a
    slice at a time, each with the previous slice's last row: no shifted copy of the whole
    key, and an unsorted frame is refused at its first unsorted slice.
    """
    if frame.height < 2:
        return not strict or _null_keys(frame) == 0
    if _null_keys(frame):
        return False
    s, e = pl.col("source"), pl.col("example_id")
    later = (s > s.shift(1)) | ((s == s.shift(1)) & ((e > e.shift(1)) if strict
                                                     else (e >= e.shift(1))))
    keys = frame.select(KEY)
    return all(keys.slice(max(i - 1, 0), _SLICE_ROWS + 1).select(later.slice(1).all()).item()
               for i in range(0, keys.height, _SLICE_ROWS))


def adjacent_repeats(keys: pl.DataFrame) -> int:
    """Rows of key-sorted ``keys`` whose key equals a neighbour's (repeated keys; in key
    order a repeat sits next to its copy). Null keys never count as repeats."""
    s, e = pl.col("source"), pl.col("example_id")
    prev = (s == s.shift(1)) & (e == e.shift(1))
    nxt = (s == s.shift(-1)) & (e == e.shift(-1))
    return int(keys.select((prev.fill_null(False) | nxt.fill_null(False)).sum()).item())


def repeated(values: pl.Series) -> pl.Series:
    """``values.is_duplicated()``, exactly, at about a third of the cost on strings.

    Why: hashing strings into a table costs ~0.4 s per million ids; their 64-bit hashes
    find the same repeats for ~0.1 s. Rows whose hash repeats (the real repeats, plus any
    hash collision) are then compared as strings, so a collision never counts. The hash is
    polars' (not stable across versions): it lives only inside this call.
    """
    hashes = values.hash(seed=0)
    maybe = hashes.is_duplicated()
    if not maybe.any():
        return maybe
    rows = maybe.arg_true()
    return maybe.scatter(rows, values.gather(rows).is_duplicated())


def _null_keys(frame: pl.DataFrame) -> int:
    """Null values in the key columns (read from the arrays' metadata: no scan)."""
    return frame.select(pl.col(KEY).null_count()).sum_horizontal().item()
