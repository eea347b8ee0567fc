"""ShareGPT export for LLaMA-Factory: a JSON array of ``{"conversations", "system", "tools"}``.

Why this layout: it is LLaMA-Factory's documented ``sharegpt`` formatting. The leading system
turn moves to the ``system`` key (LLaMA-Factory's ``system`` column), tools go to ``tools`` as
a JSON *string* (that is how LLaMA-Factory reads them), and roles map user->human,
assistant->gpt, tool->observation. An assistant turn that is a tool call (a JSON object
with ``name`` and ``arguments``) directly before a tool turn becomes ``function_call``, so
LLaMA-Factory trains the call with its tool template.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import polars as pl

from instruct_assets.lib.export.atomic import atomic_write_text
from instruct_assets.lib.export.common import CONTENT, ROLE, by_mask, encode_records

#: Canonical role -> ShareGPT ``from`` (``function_call`` is decided per turn, see above).
ROLE_TO_FROM: dict[str, str] = {
    "system": "system",
    "user": "human",
    "assistant": "gpt",
    "tool": "observation",
}

#: ``from`` -> canonical role, for reading an export back.
FROM_TO_ROLE: dict[str, str] = {
    "system": "system",
    "human": "user",
    "gpt": "assistant",
    "function_call": "assistant",
    "observation": "tool",
}

#: LLaMA-Factory ``tags`` for this file.
SHAREGPT_TAGS: dict[str, str] = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "observation_tag": "observation",
    "function_tag": "function_call",
    "system_tag": "system",
}


def is_tool_call(content: pl.Expr) -> pl.Expr:
    """Content is one JSON object with top-level ``name`` and ``arguments`` (nothing after).

    ``json_path_match`` returns null for invalid or trailing-garbage JSON, so this is a full
    parse check without a Python call per turn.
    """
    return (
        content.str.strip_chars_start().str.starts_with("{")
        & content.str.json_path_match("$.name").is_not_null()
        & content.str.json_path_match("$.arguments").is_not_null()
    )


def _without_system() -> pl.Expr:
    """``messages`` minus the leading system turn (the schema allows it only first)."""
    first_is_system = pl.col("messages").list.first().struct.field("role") == "system"
    return pl.col("messages").list.slice(first_is_system.cast(pl.Int64))


def conversations_expr(detect_calls: bool = True) -> pl.Expr:
    """``messages`` -> ``list[struct{from, value}]`` without the system turn.

    ``detect_calls=False`` skips the tool-call check (for rows without tool turns, where no
    turn can become ``function_call``).
    """
    speaker = ROLE.replace_strict(ROLE_TO_FROM, return_dtype=pl.String)
    if detect_calls:
        call = (ROLE == "assistant") & (ROLE.shift(-1) == "tool") & is_tool_call(CONTENT)
        speaker = pl.when(call).then(pl.lit("function_call")).otherwise(speaker)
    turn = pl.struct(speaker.alias("from"), CONTENT.alias("value"))
    return _without_system().list.eval(turn)


def has_tool_turn() -> pl.Expr:
    """True for conversations holding a tool turn."""
    return pl.col("messages").list.eval(ROLE == "tool").list.any()


def has_system() -> pl.Expr:
    """True where the conversation opens with a system turn."""
    return pl.col("messages").list.first().struct.field("role") == "system"


def system_expr() -> pl.Expr:
    """Content of the leading system turn, or null."""
    first = pl.col("messages").list.first()
    return pl.when(first.struct.field("role") == "system").then(first.struct.field("content"))


def sharegpt_lines(rows: pl.DataFrame) -> pl.Series:
    """One JSON object text per row (array elements); keys conversations, system?, tools?.

    Input columns: ``messages``, ``tools_json`` (see ``common.with_tools``).
    """
    tool_rows = rows.select(has_tool_turn()).to_series()
    conversations = by_mask(rows, tool_rows, conversations_expr(), conversations_expr(False))
    values = rows.select(
        conversations.alias("conversations"),
        system_expr().alias("system"),
        pl.col("tools_json").alias("tools"),
    )
    return encode_records(values)


def dataset_info_entry(
    file_name: str, *, has_system: bool = True, has_tools: bool = True
) -> dict[str, object]:
    """The LLaMA-Factory ``dataset_info.json`` entry for a ShareGPT file of this export.

    ``system``/``tools`` columns are declared only if some row of the file has them: the
    keys are omitted per row when absent, and a file where no row has one loads without
    that column at all, which LLaMA-Factory would fail to look up.
    """
    columns = {"messages": "conversations"}
    if has_system:
        columns["system"] = "system"
    if has_tools:
        columns["tools"] = "tools"
    return {
        "file_name": file_name,
        "formatting": "sharegpt",
        "columns": columns,
        "tags": dict(SHAREGPT_TAGS),
    }


def update_dataset_info(path: str | os.PathLike[str], name: str, entry: dict[str, object]) -> int:
    """Set ``name`` in ``dataset_info.json`` (keeping other splits' entries); return bytes.

    Why a lock: train and eval may be exported concurrently into the same folder, and the
    read-modify-write of the shared file must not lose the other split's entry. Keys are
    sorted so the file only depends on which entries exist.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Lock the folder itself: no lock file is left among the exports.
    lock = os.open(target.parent, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            current: dict[str, object] = {}
            if target.exists():
                try:
                    loaded = json.loads(target.read_text(encoding="utf-8"))
                    if isinstance(loaded, dict):
                        current = loaded
                except ValueError:
                    current = {}
            current[name] = entry
            text = json.dumps(current, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
            return atomic_write_text(target, text)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    finally:
        os.close(lock)
