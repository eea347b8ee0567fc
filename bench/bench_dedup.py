"""Benchmark ``find_duplicates`` on N synthetic Alpaca-like rows (not a test).

Rows are built from the real alpaca_en_demo.json + code_alpaca_2k.json files: each row takes a
random base example and replaces ~30% of its words with random words from the pool vocabulary
(so variants of one base are far apart, Jaccard ~0.02); then ``--exact-frac`` of the rows are
replaced by copies of other rows (half of them upper-cased with doubled spaces, which the exact
key ignores) and ``--near-frac`` by copies with one word changed. Generation is vectorised and
seeded, and not timed.

Usage: .venv/bin/python bench/bench_dedup.py --rows 1000000
Prints a line about the data (stderr), then one JSON line last: wall and CPU seconds of
``find_duplicates``, rows/s, peak RSS (ru_maxrss, input frame included), what was found.
The machine's load average is printed too: on a shared 2-core box it explains most spread.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from instruct_assets.lib.quality.dedup import DedupConfig, find_duplicates  # noqa: E402
from instruct_assets.lib.schema import MESSAGE_DTYPE  # noqa: E402

REAL = ROOT / ".." / "shared" / "data" / "real"
FILES = (
    REAL / "hiyouga__LLaMA-Factory" / "alpaca_en_demo.json",
    REAL / "sahil280114__codealpaca" / "code_alpaca_2k.json",
)


def _pool() -> tuple[list[str], list[list[int]], list[list[int]]]:
    """Vocabulary and per-example word-id lists of (prompt, response)."""
    vocab: dict[str, int] = {}
    prompts, responses = [], []
    for path in FILES:
        for r in json.loads(path.read_text(encoding="utf-8")):
            user = r["instruction"] + (" " + r["input"] if r.get("input") else "")
            ids = [
                [vocab.setdefault(w, len(vocab)) for w in text.split()]
                for text in (user, r["output"])
            ]
            if ids[0] and ids[1]:
                prompts.append(ids[0])
                responses.append(ids[1])
    return list(vocab), prompts, responses


def _texts(
    rng: np.random.Generator, vocab: pa.Array, pool: list[list[int]], base: np.ndarray, p: float
) -> pl.Series:
    """One string per row: the base's words with a fraction ``p`` swapped for random words."""
    lens = np.array([len(x) for x in pool])
    flat = np.concatenate([np.array(x, dtype=np.int64) for x in pool])
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    row_len = lens[base]
    offsets = np.concatenate([[0], np.cumsum(row_len)])
    idx = np.repeat(starts[base] - offsets[:-1], row_len) + np.arange(offsets[-1])
    words = flat[idx]
    swap = rng.random(words.size) < p
    words[swap] = rng.integers(0, len(vocab), swap.sum())
    lists = pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), vocab.take(words))
    return pl.Series(lists).list.join(" ")


def build(rows: int, exact_frac: float, near_frac: float, seed: int = 0) -> pl.DataFrame:
    """The synthetic normalized frame (columns the dedup needs, canonical types)."""
    rng = np.random.default_rng(seed)
    vocab_list, prompts, responses = _pool()
    vocab = pa.array(vocab_list, pa.large_string())
    base = rng.integers(0, len(prompts), rows)
    user = _texts(rng, vocab, prompts, base, 0.3)
    asst = _texts(rng, vocab, responses, base, 0.3)
    kind = rng.random(rows)
    exact = kind < exact_frac
    near = (kind >= exact_frac) & (kind < exact_frac + near_frac)
    originals = np.flatnonzero(~(exact | near))
    src = np.where(exact | near, originals[rng.integers(0, originals.size, rows)], -1)
    shout = exact & (rng.random(rows) < 0.5)
    copy = pl.Series(exact | near)
    new_word = pl.Series(vocab.take(rng.integers(0, len(vocab), rows))).str.replace_all(
        "$", "$$", literal=True
    )
    df = pl.DataFrame({"user": user, "asst": asst, "cu": user[src], "ca": asst[src]}).select(
        pl.when(copy).then(pl.col("cu")).otherwise(pl.col("user")).alias("user"),
        pl.when(pl.Series(near))
        .then(pl.col("ca").str.replace(r" \S+ ", " " + new_word + " "))
        .when(copy)
        .then(pl.col("ca"))
        .otherwise(pl.col("asst"))
        .alias("asst"),
    )
    return df.select(
        pl.format("b{}", pl.int_range(pl.len())).alias("example_id"),
        pl.when(pl.Series(base) < 999)
        .then(pl.lit("alpaca"))
        .otherwise(pl.lit("code"))
        .alias("source"),
        pl.concat_list(
            [
                pl.struct(role=pl.lit("user"), content=_shout(pl.col("user"), shout)),
                pl.struct(role=pl.lit("assistant"), content=_shout(pl.col("asst"), shout)),
            ]
        )
        .cast(pl.List(MESSAGE_DTYPE))
        .alias("messages"),
        pl.lit(None, dtype=pl.String).alias("tools"),
        pl.Series("_planted", np.where(exact, 1, np.where(near, 2, 0)).astype(np.int8)),
        pl.Series("_src", src),
    )


def _shout(col: pl.Expr, mask: np.ndarray) -> pl.Expr:
    return (
        pl.when(pl.Series(mask))
        .then(col.str.to_uppercase().str.replace_all(" ", "  ", literal=True))
        .otherwise(col)
    )


def _shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + n]) for i in range(max(len(words) - n + 1, 1))} if words else set()


def _recall(df: pl.DataFrame, dups: pl.DataFrame, planted: pl.DataFrame) -> dict:
    """Share of planted copies found in their original's cluster.

    Exact copies must all be found. Near copies (one word changed) are judged against their
    true 5-gram Jaccard (plain Python, on a sample of 2000): those at >= 0.85 should be found,
    those below 0.7 should mostly not.
    """
    cluster = dups["dup_cluster_id"]
    kind, src = planted["_planted"].to_numpy(), planted["_src"].to_numpy()
    rows = np.flatnonzero(kind == 1)
    same = (cluster.gather(rows) == cluster.gather(src[rows])).to_numpy()
    out = {"planted_exact_found": round(float(same.mean()), 4) if rows.size else None}
    near = np.flatnonzero(kind == 2)[:2000]
    texts = df["messages"].gather(np.concatenate([near, src[near]])).to_list()
    hi_hit = hi_n = lo_hit = lo_n = 0
    for i, row in enumerate(near):
        a = _shingles(" ".join(m["content"] for m in texts[i]))
        b = _shingles(" ".join(m["content"] for m in texts[near.size + i]))
        jac = len(a & b) / max(len(a | b), 1)
        hit = cluster[int(row)] == cluster[int(src[row])]
        if jac >= 0.85:
            hi_n, hi_hit = hi_n + 1, hi_hit + hit
        elif jac < 0.7:
            lo_n, lo_hit = lo_n + 1, lo_hit + hit
    out["planted_near_found_if_jaccard_ge_0.85"] = round(hi_hit / hi_n, 4) if hi_n else None
    out["planted_near_clustered_if_jaccard_lt_0.7"] = round(lo_hit / lo_n, 4) if lo_n else None
    return out


def _build_to(path: str, rows: int, exact_frac: float, near_frac: float) -> None:
    build(rows, exact_frac, near_frac).write_parquet(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--exact-frac", type=float, default=0.05)
    ap.add_argument("--near-frac", type=float, default=0.05)
    args = ap.parse_args()

    # Build in a child process so that the peak RSS measured here is the dedup's (plus the
    # input frame), not the generator's.
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/bench.parquet"
        t0 = time.perf_counter()
        ctx = multiprocessing.get_context("spawn")
        child = ctx.Process(
            target=_build_to, args=(path, args.rows, args.exact_frac, args.near_frac)
        )
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"building the data failed ({child.exitcode})")
        t_build = time.perf_counter() - t0
        df = pl.read_parquet(path)
    text_mb = (
        df.select(
            pl.col("messages")
            .list.eval(pl.element().struct.field("content").str.len_bytes())
            .list.sum()
            .sum()
        ).item()
        / 1e6
    )
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load = os.getloadavg()[0]
    print(
        f"built {args.rows} rows ({text_mb:.0f} MB text) in {t_build:.1f}s;"
        f" rss with input {rss_before:.0f} MB; load average {load:.2f}",
        file=sys.stderr,
    )

    planted = df.select("_planted", "_src")
    df = df.drop("_planted", "_src")
    t0, c0 = time.perf_counter(), time.process_time()
    dups = find_duplicates(df, DedupConfig())
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stats = dups.select(
        exact_members=pl.col("is_exact_duplicate").sum(),
        near_members=pl.col("is_near_duplicate").sum(),
        clusters_gt1=pl.col("dup_cluster_id").filter(pl.col("dup_cluster_size") > 1).n_unique(),
        removable=(pl.len() - pl.col("dup_cluster_id").n_unique()),
    ).row(0, named=True)
    print(
        json.dumps(
            {
                "rows": args.rows,
                "text_mb": round(text_mb, 1),
                "seconds": round(seconds, 2),
                "cpu_seconds": round(cpu, 2),
                "rows_per_s": round(args.rows / seconds),
                "peak_rss_mb": round(peak),
                "rss_with_input_mb": round(rss_before),
                "load_avg_1m_before": round(load, 2),
                "planted_exact_frac": args.exact_frac,
                "planted_near_frac": args.near_frac,
                **stats,
                **_recall(df, dups, planted),
            }
        )
    )


if __name__ == "__main__":
    main()
