"""The baseline: what a user would write with Hugging Face ``datasets`` for the same job.

Load the Alpaca JSONL, map each row to chat ``messages`` (user = instruction, plus a blank
line and the input when there is one; assistant = output), drop rows with an empty output,
split 90/10 with a fixed seed and write both splits to Parquet. Plain, documented
``datasets`` calls, one process, no tuning (no batching, no ``num_proc``): the script a
person would write first, which is what the pipeline's speed is compared with.

Usage (offline; ``bench/run.py`` runs it in a subprocess with a fresh cache dir so no
earlier run's Arrow cache is reused)::

    HF_DATASETS_OFFLINE=1 .venv/bin/python bench/baseline_datasets.py IN.jsonl OUT_DIR \
        --cache-dir /tmp/hf-cache

Prints one JSON line: rows in, rows per split, seconds per step and in total.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def to_messages(example: dict) -> dict:
    user = example["instruction"]
    if example.get("input") and example["input"].strip():
        user = f"{user}\n\n{example['input']}"
    return {"messages": [{"role": "user", "content": user},
                         {"role": "assistant", "content": example["output"] or ""}]}


def has_output(example: dict) -> bool:
    return bool(example["messages"][-1]["content"].strip())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--cache-dir", type=Path, required=True)
    args = ap.parse_args()

    t0 = time.perf_counter()
    from datasets import load_dataset  # import counted: a user's script pays for it too

    steps: dict[str, float] = {"import": time.perf_counter() - t0}

    def step(name: str, started: float) -> float:
        now = time.perf_counter()
        steps[name] = round(now - started, 3)
        return now

    t = time.perf_counter()
    ds = load_dataset("json", data_files=str(args.input), split="train",
                      cache_dir=str(args.cache_dir))
    rows_in = ds.num_rows
    t = step("load_dataset", t)
    ds = ds.map(to_messages, remove_columns=ds.column_names)
    t = step("map", t)
    ds = ds.filter(has_output)
    t = step("filter", t)
    parts = ds.train_test_split(test_size=0.1, seed=0)
    t = step("train_test_split", t)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    parts["train"].to_parquet(str(args.out_dir / "train.parquet"))
    parts["test"].to_parquet(str(args.out_dir / "test.parquet"))
    step("to_parquet", t)
    print(json.dumps({
        "rows": rows_in,
        "train_rows": parts["train"].num_rows,
        "test_rows": parts["test"].num_rows,
        "steps": {k: round(v, 3) for k, v in steps.items()},
        "seconds": round(time.perf_counter() - t0, 3),
    }))


if __name__ == "__main__":
    main()
