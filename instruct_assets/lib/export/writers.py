"""Export one split to every training format, validate an export, and read one back.

Layout under the export folder ``out`` (one file per split, so train and eval can be
written independently and concurrently)::

    openai/<split>.jsonl           {"messages": [...], "tools": [...]?}   kind "openai"
    openai/<split>.parquet         same rows, columns messages, tools     kind "openai_parquet"
    openai/axolotl.<split>.yaml    Axolotl datasets/test_datasets block (with "openai")
    sharegpt/<split>.json          LLaMA-Factory ShareGPT JSON array      kind "sharegpt"
    sharegpt/dataset_info.json     LLaMA-Factory entries "<name>_<split>" (with "sharegpt")
    alpaca/<split>.json            Alpaca JSON array, single-turn rows    kind "alpaca"
    text/chatml/<split>.jsonl      {"text": ChatML rendering}             kind "text_chatml"
    text/llama3/<split>.jsonl      {"text": Llama 3 rendering}            kind "text_llama3"
    text/alpaca/<split>.jsonl      {"text": Alpaca prompt}, single-turn   kind "text_alpaca"

Every file holds the split's rows sorted by ``(source, example_id)`` (the same order in
every format), is written atomically, and is byte-identical for identical input. Checking
and reading exports back lives in ``validate.py``.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import polars as pl

from instruct_assets.lib.export.alpaca import NOT_SINGLE_TURN, alpaca_lines, single_turn_mask
from instruct_assets.lib.export.common import key_list, split_rows, with_tools, write_lines
from instruct_assets.lib.export.openai_jsonl import (
    openai_lines,
    write_axolotl_yaml,
    write_openai_parquet,
)
from instruct_assets.lib.export.rendered import load_template, template_token_mask, text_lines
from instruct_assets.lib.export.sharegpt import (
    dataset_info_entry,
    has_system,
    sharegpt_lines,
    update_dataset_info,
)

#: kind -> file path relative to the export folder (``{split}`` is filled in).
KIND_PATHS: dict[str, str] = {
    "openai": "openai/{split}.jsonl",
    "openai_parquet": "openai/{split}.parquet",
    "sharegpt": "sharegpt/{split}.json",
    "alpaca": "alpaca/{split}.json",
    "text_chatml": "text/chatml/{split}.jsonl",
    "text_llama3": "text/llama3/{split}.jsonl",
    "text_alpaca": "text/alpaca/{split}.jsonl",
}

#: All kinds, the default of ``export_split``.
KINDS: tuple[str, ...] = tuple(KIND_PATHS)

#: Kinds that hold only single-turn rows and list the others as not exportable.
SINGLE_TURN_KINDS: frozenset[str] = frozenset({"alpaca", "text_alpaca"})

_SPLIT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def export_path(out_dir: str | os.PathLike[str], kind: str, split: str) -> Path:
    """Where ``kind`` of ``split`` lives under ``out_dir``."""
    if kind not in KIND_PATHS:
        raise ValueError(f"unknown export kind {kind!r}; known: {KINDS}")
    return Path(out_dir) / KIND_PATHS[kind].format(split=split)


def export_split(
    frame: pl.DataFrame | pl.LazyFrame,
    out_dir: str | os.PathLike[str],
    split: str,
    formats: tuple[str, ...] | list[str] = KINDS,
    *,
    name: str = "instruct_assets",
) -> dict[str, Any]:
    """Write ``split`` of ``frame`` in each of ``formats`` under ``out_dir``.

    ``frame``: canonical normalized columns (at least example_id, source, messages, tools)
    plus ``split``; rows of other splits are ignored (a frame without ``split`` is taken as
    the split itself). ``name`` prefixes the LLaMA-Factory dataset name (``<name>_<split>``).

    Returns ``{"split", "rows", "out_dir", "invalid_tools": [keys], "formats": {kind: {"path",
    "rows", "bytes", "seconds", ...}}}``; single-turn kinds add ``not_exportable`` (reason,
    count, keys ``{"source", "example_id"}``), text kinds ``rows_with_template_tokens``,
    "openai" ``axolotl_yaml``, "sharegpt" ``dataset_info`` and ``dataset_name``.
    """
    if not _SPLIT_NAME.fullmatch(split):
        raise ValueError(f"split name {split!r} is not a safe file name")
    unknown = [k for k in formats if k not in KIND_PATHS]
    if unknown:
        raise ValueError(f"unknown export kinds {unknown}; known: {KINDS}")
    out = Path(out_dir)
    rows = with_tools(split_rows(frame, split))
    single = rows.select(single_turn_mask().alias("single")).to_series()
    result: dict[str, Any] = {
        "split": split,
        "rows": rows.height,
        "out_dir": str(out),
        "invalid_tools": key_list(rows, pl.col("tools_status") == "invalid"),
        "formats": {},
    }
    for kind in dict.fromkeys(formats):  # keep caller order, drop repeats
        started = time.perf_counter()
        path = export_path(out, kind, split)
        source = rows.filter(single) if kind in SINGLE_TURN_KINDS else rows
        entry: dict[str, Any] = {"path": str(path), "rows": source.height}
        if kind == "openai":
            entry["bytes"] = write_lines(path, openai_lines(source))
            yaml_path = out / "openai" / f"axolotl.{split}.yaml"
            write_axolotl_yaml(yaml_path, KIND_PATHS[kind].format(split=split), split)
            entry["axolotl_yaml"] = str(yaml_path)
        elif kind == "openai_parquet":
            entry["bytes"] = write_openai_parquet(path, source)
        elif kind == "sharegpt":
            entry["bytes"] = write_lines(path, sharegpt_lines(source), json_array=True)
            info_path = path.parent / "dataset_info.json"
            dataset_name = f"{name}_{split}"
            info = dataset_info_entry(
                path.name,
                has_system=bool(source.select(has_system().any()).item()),
                has_tools=source.get_column("tools_json").is_not_null().any(),
            )
            update_dataset_info(info_path, dataset_name, info)
            entry["dataset_info"] = str(info_path)
            entry["dataset_name"] = dataset_name
        elif kind == "alpaca":
            entry["bytes"] = write_lines(path, alpaca_lines(source), json_array=True)
        else:
            template = load_template(kind.removeprefix("text_"))
            entry["bytes"] = write_lines(path, text_lines(source, template))
            entry["rows_with_template_tokens"] = int(
                source.select(template_token_mask(template).sum()).item()
            )
        if kind in SINGLE_TURN_KINDS:
            skipped = key_list(rows, ~single)
            entry["not_exportable"] = {
                "reason": NOT_SINGLE_TURN,
                "count": len(skipped),
                "ids": skipped,
            }
        entry["seconds"] = round(time.perf_counter() - started, 3)
        result["formats"][kind] = entry
    return result
