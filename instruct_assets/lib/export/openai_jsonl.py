"""OpenAI / TRL conversational export: ``{"messages": [...], "tools": [...]}`` per line.

Why this shape: it is the one format TRL's SFTTrainer (conversational language modelling),
Axolotl's ``chat_template`` type and OpenAI fine-tuning all read. Tool results are ``tool``
turns; a tool *call* stays an assistant turn whose content is the call JSON, as in the
canonical schema (no ``tool_calls`` / ``tool_call_id`` fields are invented). ``tools`` is the
parsed JSON list, present only where the example has a non-empty tool list.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from instruct_assets.lib.export.atomic import (
    atomic_write_text,
    atomic_writer,
    start_writeback,
)
from instruct_assets.lib.export.common import dumps, encode_records

#: Arrow types of the Parquet copy. ``tools`` items use the canonical ``arrow.json``
#: extension type, which Hugging Face ``datasets`` decodes to dicts (its ``Json`` feature),
#: so the Parquet copy loads exactly like the JSONL even when tool schemas differ per row.
PARQUET_SCHEMA = pa.schema(
    [
        ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("tools", pa.list_(pa.json_())),
    ]
)

#: Parquet column path of the message role (the one column worth a dictionary).
ROLE_COLUMN = "messages.list.element.role"

#: Rows per Parquet row group (bounded reader memory; 32-bit string offsets never overflow).
PARQUET_ROW_GROUP = 100_000


def openai_lines(rows: pl.DataFrame) -> pl.Series:
    """One JSON text per row from ``messages`` and ``tools_json`` (see ``common.with_tools``).

    Output: a String series named ``line``; keys ``messages`` then ``tools`` (when present).
    """
    values = rows.select("messages", pl.col("tools_json").alias("tools"))
    return encode_records(values, raw="tools")


def write_openai_parquet(path: str | os.PathLike[str], rows: pl.DataFrame) -> int:
    """Atomically write the Parquet copy (``messages``, ``tools``); return its bytes.

    Why a Parquet copy: ``datasets``/Polars/DuckDB read it column-wise and far faster than
    JSONL; same rows, same order as the JSONL.
    """
    writer = OpenAIParquetWriter(path)
    try:
        writer.write(rows)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


#: No rows, in the types the cast to :data:`PARQUET_SCHEMA` starts from (the JSON
#: extension type has no empty table of its own).
_EMPTY = pa.table({"messages": pa.array([], PARQUET_SCHEMA.field("messages").type),
                   "tools": pa.array([], pa.list_(pa.string()))})


class OpenAIParquetWriter:
    """The Parquet copy written chunk by chunk (:meth:`write` per chunk of rows, then
    :meth:`close`); atomic like every export (:meth:`abort` discards it).

    Row groups are always :data:`PARQUET_ROW_GROUP` rows (the last one shorter), each built
    from contiguous arrays, whatever the chunks: the file's bytes do not depend on how the
    rows were chunked. The rows left over from a chunk (fewer than a row group) are copied,
    so they do not keep the previous chunk's buffers alive.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.target = Path(path)
        self._atomic = atomic_writer(self.target)
        self._handle = self._atomic.__enter__()
        # Dictionary-encode only ``role`` (four values): every ``content`` is distinct, and
        # trying a dictionary for it first hashed every string for nothing.
        self._writer = pq.ParquetWriter(
            self._handle, PARQUET_SCHEMA, compression="zstd", use_dictionary=[ROLE_COLUMN])
        self._pending: pa.Table | None = None
        self._written = 0

    def write(self, rows: pl.DataFrame) -> None:
        # One conversion of whole columns (64-bit offsets): converting polars slices that
        # share the column's string buffers measured twice as slow. Each row group is cast to
        # the 32-bit schema on its own, so no offset overflows however big the split.
        table = pa.table(
            {
                "messages": rows.get_column("messages").to_arrow(),
                "tools": rows.get_column("tools_items").to_arrow(),
            }
        )
        offset = 0
        if self._pending is not None:  # complete the row group a previous chunk began
            need = PARQUET_ROW_GROUP - self._pending.num_rows
            head = table.slice(0, need).cast(PARQUET_SCHEMA)
            group = pa.concat_tables([self._pending, head]).combine_chunks()
            offset = head.num_rows
            if group.num_rows < PARQUET_ROW_GROUP:
                self._pending = group
                return
            self._pending = None
            self._write(group)
        while table.num_rows - offset >= PARQUET_ROW_GROUP:
            self._write(table.slice(offset, PARQUET_ROW_GROUP).cast(PARQUET_SCHEMA))
            offset += PARQUET_ROW_GROUP
        if offset < table.num_rows:
            self._pending = table.slice(offset).cast(PARQUET_SCHEMA).combine_chunks()

    def _write(self, group: pa.Table) -> None:
        self._writer.write_table(group, row_group_size=PARQUET_ROW_GROUP)
        self._written += 1
        start_writeback(self._handle)

    def close(self) -> int:
        """Write the last row group (an empty one if no row came), publish; return bytes."""
        try:
            if self._pending is not None or not self._written:
                self._write(self._pending if self._pending is not None else _EMPTY.cast(
                    PARQUET_SCHEMA))
            self._pending = None
            self._writer.close()
        except BaseException:
            self.abort()
            raise
        self._atomic.__exit__(None, None, None)
        return self.target.stat().st_size

    def abort(self) -> None:
        """Discard the file being written (the target keeps its previous content)."""
        self._pending = None
        with contextlib.suppress(Exception):
            self._writer.close()
        with contextlib.suppress(RuntimeError):
            self._atomic.__exit__(RuntimeError, RuntimeError("export aborted"), None)


def axolotl_yaml(data_path: str, split: str) -> str:
    """The Axolotl config block that reads the OpenAI JSONL with ``type: chat_template``.

    ``split == "train"`` goes under ``datasets:``, any other split under ``test_datasets:``.
    ``data_path`` is written as given (the export writes it relative to the export folder).
    Scalars are JSON-quoted, which is valid YAML and needs no YAML library.
    """
    key = "datasets" if split == "train" else "test_datasets"
    quoted = dumps(data_path)
    return (
        f"# Axolotl {key} block for {data_path} (OpenAI-style messages JSONL).\n"
        "# Paths are relative to the export folder: run axolotl from there or prefix them.\n"
        f"{key}:\n"
        f"  - path: {quoted}\n"
        "    ds_type: json\n"
        "    data_files:\n"
        f"      - {quoted}\n"
        '    split: "train"\n'
        "    type: chat_template\n"
        "    field_messages: messages\n"
        "    message_property_mappings:\n"
        "      role: role\n"
        "      content: content\n"
    )


def write_axolotl_yaml(path: str | os.PathLike[str], data_path: str, split: str) -> int:
    """Atomically write :func:`axolotl_yaml`; return its bytes."""
    return atomic_write_text(path, axolotl_yaml(data_path, split))
