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

import contextlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

from instruct_assets.lib.export.alpaca import NOT_SINGLE_TURN, alpaca_lines, single_turn_mask
from instruct_assets.lib.export.atomic import atomic_writer
from instruct_assets.lib.export.common import (
    LineSink,
    key_list,
    row_chunks,
    split_rows,
    with_tools,
)
from instruct_assets.lib.export.derive import (
    alpaca_rewrite,
    derivable_template,
    mixed_lines,
    openai_rewrite,
    sharegpt_rewrite,
    text_rewrite,
    with_messages_json,
)
from instruct_assets.lib.export.openai_jsonl import (
    OpenAIParquetWriter,
    openai_lines,
    write_axolotl_yaml,
)
from instruct_assets.lib.export.rendered import (
    ChatTemplate,
    load_template,
    template_token_mask,
    text_lines,
)
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

#: Kinds written as one JSON array (the others are JSONL, or Parquet).
ARRAY_KINDS: frozenset[str] = frozenset({"sharegpt", "alpaca"})

#: Kinds that hold only single-turn rows and list the others as not exportable.
SINGLE_TURN_KINDS: frozenset[str] = frozenset({"alpaca", "text_alpaca"})

_SPLIT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def export_path(out_dir: str | os.PathLike[str], kind: str, split: str) -> Path:
    """Where ``kind`` of ``split`` lives under ``out_dir``."""
    if kind not in KIND_PATHS:
        raise ValueError(f"unknown export kind {kind!r}; known: {KINDS}")
    return Path(out_dir) / KIND_PATHS[kind].format(split=split)


def prepare_rows(frame: pl.DataFrame | pl.LazyFrame, split: str) -> pl.DataFrame:
    """The rows every format of ``split`` is written from: sorted by key, tools parsed
    (``common.with_tools``), plus ``_single`` (the row fits the single-turn kinds)."""
    if not _SPLIT_NAME.fullmatch(split):
        raise ValueError(f"split name {split!r} is not a safe file name")
    rows = with_tools(split_rows(frame, split))
    return rows.with_columns(single_turn_mask().alias("_single"))


_Encoder = Callable[[pl.DataFrame], pl.Series]


def _encoders_of(kind: str) -> tuple[tuple[pl.Expr, pl.Expr] | None, _Encoder]:
    """How to encode ``kind`` for a chunk of rows (single-turn kinds: already filtered):
    the shared rewrite ``(mask, line)`` over ``derive.MESSAGES_JSON`` if the kind has one,
    and the format's own encoder (for the rows the rewrite cannot express)."""
    if kind == "openai":
        return openai_rewrite(), openai_lines
    if kind == "sharegpt":
        return sharegpt_rewrite(), sharegpt_lines
    if kind == "alpaca":
        return alpaca_rewrite(), alpaca_lines
    template = load_template(kind.removeprefix("text_"))
    encode = partial(text_lines, template=template)
    if isinstance(template, ChatTemplate) and derivable_template(template):
        return text_rewrite(template), encode
    return None, encode


def _chunk_lines(
    chunk: pl.DataFrame, kinds: list[str], plans: dict[str, tuple[Any, _Encoder]]
) -> dict[str, pl.Series]:
    """Every kind's lines for one chunk. Where a kind's rewrite covers the whole chunk
    (the common case) the rewrites of all kinds run as one parallel ``collect_all``."""
    single = chunk.filter(pl.col("_single")) if SINGLE_TURN_KINDS & set(kinds) else None
    frames = {k: single if k in SINGLE_TURN_KINDS else chunk for k in kinds}
    rewritten = [k for k in kinds if plans[k][0] is not None and frames[k].height]
    covered = set()
    for frame in {id(f): f for f in (frames[k] for k in rewritten)}.values():
        mine = [k for k in rewritten if frames[k] is frame]
        flags = frame.select([plans[k][0][0].all().alias(k) for k in mine]).row(0, named=True)
        covered |= {k for k, ok in flags.items() if ok}
    fast = [k for k in kinds if k in covered]
    done = pl.collect_all(
        [frames[k].lazy().select(plans[k][0][1].alias("line")) for k in fast]
    ) if fast else []
    lines = {k: frame.get_column("line") for k, frame in zip(fast, done, strict=True)}
    for kind in kinds:
        if kind in lines:
            continue
        rewrite, encode = plans[kind]
        frame = frames[kind]
        lines[kind] = mixed_lines(frame, rewrite, encode) if rewrite is not None else encode(
            frame)
    return lines


class SharedChunks:
    """``rows`` in ``common.row_chunks``, each with ``derive.MESSAGES_JSON`` (the shared
    encoding of the JSON-line kinds), for ``consumers`` concurrent iterations.

    Why: the stage writes the JSON-line kinds in two concurrent groups; encoding the
    messages once for both (instead of once per group) saves a full JSON encoding of the
    split. Whichever iteration reaches a chunk first encodes it, the other waits for it;
    a chunk is dropped once every consumer has taken it, so memory holds only the chunks
    between the two iterations. Each iteration yields every chunk in order.
    """

    def __init__(self, rows: pl.DataFrame, consumers: int = 2) -> None:
        self.rows = rows
        self.consumers = consumers
        self.lock = threading.Lock()
        self.slots: dict[int, _Slot] = {}

    def __iter__(self) -> Iterator[pl.DataFrame]:
        for index, chunk in enumerate(row_chunks(self.rows)):
            with self.lock:
                slot = self.slots.get(index)
                owner = slot is None
                if owner:
                    slot = self.slots[index] = _Slot(self.consumers)
            if owner:
                try:
                    slot.value = with_messages_json(chunk)
                except BaseException as exc:
                    slot.error = exc
                    raise
                finally:
                    slot.ready.set()
            else:
                slot.ready.wait()
            with self.lock:
                slot.left -= 1
                if not slot.left:
                    del self.slots[index]
            if slot.error is not None:
                raise RuntimeError("encoding a shared chunk failed") from slot.error
            yield slot.value


class _Slot:
    def __init__(self, consumers: int) -> None:
        self.ready = threading.Event()
        self.left = consumers
        self.value: pl.DataFrame | None = None
        self.error: BaseException | None = None


def write_kinds(
    rows: pl.DataFrame,
    out_dir: str | os.PathLike[str],
    split: str,
    kinds: list[str] | tuple[str, ...],
    *,
    name: str = "instruct_assets",
    chunks: Iterable[pl.DataFrame] | None = None,
) -> dict[str, dict[str, Any]]:
    """Write ``kinds`` of ``split`` from :func:`prepare_rows` output in one pass over the
    rows; return each kind's entry of ``export_split``'s ``formats``.

    The JSON-line kinds are encoded chunk by chunk from one shared encoding of the messages
    (see ``derive``) and written as they come; ``openai_parquet`` is written on its own.
    ``chunks``: a :class:`SharedChunks` of ``rows``, when the caller shares one encoding
    between concurrent calls. Any failure leaves every target file as it was (each write is
    atomic).
    """
    writer = KindsWriter(out_dir, split, kinds, name=name)
    try:
        writer.write(rows, chunks)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


class KindsWriter:
    """``kinds`` of one split written from consecutive parts of its rows: :meth:`write` per
    part (each :func:`prepare_rows` output, the parts in key order), then :meth:`close`,
    which publishes every file and returns the entries :func:`write_kinds` returns.

    Why: a split of ten million rows is read and written a part at a time; every file (a
    JSON array too: its brackets are written once, see ``common.LineSink``) gets the bytes
    of a one-part write, and the figures of the entries (rows, flags, not-exportable keys)
    are summed over the parts. Nothing is visible until :meth:`close`; :meth:`abort` (or a
    failing :meth:`close`) leaves every target as it was. One thread at a time.
    """

    def __init__(self, out_dir: str | os.PathLike[str], split: str,
                 kinds: list[str] | tuple[str, ...], *, name: str = "instruct_assets") -> None:
        self.started: float | None = None  # the first write (a queued task is not timed)
        self.out = Path(out_dir)
        self.split = split
        self.name = name
        self.kinds = check_kinds(kinds)
        self.entries: dict[str, dict[str, Any]] = {
            k: {"path": str(export_path(self.out, k, split)), "rows": 0} for k in self.kinds}
        self.texts = [k for k in self.kinds if k != "openai_parquet"]
        self.plans = {k: _encoders_of(k) for k in self.texts}
        self.shared = any(rewrite is not None for rewrite, _ in self.plans.values())
        self.templates = {k: load_template(k.removeprefix("text_"))
                          for k in self.kinds if k.startswith("text_")}
        self.template_tokens = dict.fromkeys(self.templates, 0)
        self.skipped: list[dict[str, str]] = []
        self.has_system = False
        self.has_tools = False
        self._stack = contextlib.ExitStack()
        self.parquet: OpenAIParquetWriter | None = None
        try:
            self.sinks = {
                k: LineSink(self._stack.enter_context(atomic_writer(self.entries[k]["path"])),
                            json_array=k in ARRAY_KINDS)
                for k in self.texts
            }
            if "openai_parquet" in self.kinds:
                self.parquet = OpenAIParquetWriter(self.entries["openai_parquet"]["path"])
        except BaseException:
            self.abort()
            raise

    def write(self, rows: pl.DataFrame, chunks: Iterable[pl.DataFrame] | None = None) -> None:
        """Append ``rows`` (``chunks``: a :class:`SharedChunks` of them, or None)."""
        if self.started is None:
            self.started = time.perf_counter()
        singles = None
        for kind in self.kinds:
            if kind in SINGLE_TURN_KINDS:
                if singles is None:
                    singles = int(rows.get_column("_single").sum())
                self.entries[kind]["rows"] += singles
            else:
                self.entries[kind]["rows"] += rows.height
        if self.texts:
            if chunks is None:  # encoded as they come: one chunk's text in memory at a time
                chunks = (with_messages_json(c) if self.shared else c for c in row_chunks(rows))
            for chunk in chunks:
                lines = _chunk_lines(chunk, self.texts, self.plans)
                for kind in self.texts:
                    self.sinks[kind].write(lines[kind])
        if self.parquet is not None:
            self.parquet.write(rows)
        if "sharegpt" in self.kinds:
            self.has_system = self.has_system or bool(rows.select(has_system().any()).item())
            self.has_tools = self.has_tools or bool(
                rows.get_column("tools_json").is_not_null().any())
        for kind, template in self.templates.items():
            source = rows.filter(pl.col("_single")) if kind in SINGLE_TURN_KINDS else rows
            self.template_tokens[kind] += int(
                source.select(template_token_mask(template).sum()).item())
        if SINGLE_TURN_KINDS & set(self.kinds):
            self.skipped += key_list(rows, ~pl.col("_single"))

    def close(self) -> dict[str, dict[str, Any]]:
        """Finish and publish every file; return the entries."""
        try:
            for sink in self.sinks.values():
                sink.close()
        except BaseException:
            self.abort()
            raise
        self._stack.close()
        now = time.perf_counter()
        for kind in self.kinds:
            entry = self.entries[kind]
            path = Path(entry["path"])
            if kind == "openai_parquet":
                assert self.parquet is not None
                entry["bytes"] = self.parquet.close()
            else:
                entry["bytes"] = path.stat().st_size
            if kind == "openai":
                yaml_path = self.out / "openai" / f"axolotl.{self.split}.yaml"
                write_axolotl_yaml(yaml_path, KIND_PATHS[kind].format(split=self.split),
                                   self.split)
                entry["axolotl_yaml"] = str(yaml_path)
            elif kind == "sharegpt":
                info_path = path.parent / "dataset_info.json"
                dataset_name = f"{self.name}_{self.split}"
                info = dataset_info_entry(path.name, has_system=self.has_system,
                                          has_tools=self.has_tools)
                update_dataset_info(info_path, dataset_name, info)
                entry["dataset_info"] = str(info_path)
                entry["dataset_name"] = dataset_name
            elif kind.startswith("text_"):
                entry["rows_with_template_tokens"] = self.template_tokens[kind]
            if kind in SINGLE_TURN_KINDS:
                entry["not_exportable"] = {
                    "reason": NOT_SINGLE_TURN,
                    "count": len(self.skipped),
                    "ids": list(self.skipped),
                }
            entry["seconds"] = round(time.perf_counter() - (self.started or now), 3)
        return self.entries

    def abort(self) -> None:
        """Discard every file being written (targets keep their previous content)."""
        with contextlib.suppress(RuntimeError):
            self._stack.__exit__(RuntimeError, RuntimeError("export aborted"), None)
        if self.parquet is not None:
            self.parquet.abort()


def check_kinds(formats: tuple[str, ...] | list[str]) -> list[str]:
    """``formats`` without repeats, in caller order; raises on an unknown kind."""
    unknown = [k for k in formats if k not in KIND_PATHS]
    if unknown:
        raise ValueError(f"unknown export kinds {unknown}; known: {KINDS}")
    return list(dict.fromkeys(formats))


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
    kinds = check_kinds(formats)
    rows = prepare_rows(frame, split)
    result = split_result(rows, out_dir, split)
    result["formats"] = write_kinds(rows, out_dir, split, kinds, name=name)
    return result


def split_result(rows: pl.DataFrame, out_dir: str | os.PathLike[str], split: str
                 ) -> dict[str, Any]:
    """``export_split``'s result without ``formats`` (filled in by the caller)."""
    return {
        "split": split,
        "rows": rows.height,
        "out_dir": str(Path(out_dir)),
        "invalid_tools": key_list(rows, pl.col("tools_status") == "invalid"),
        "formats": {},
    }
