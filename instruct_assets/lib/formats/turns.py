"""Turns -> canonical ``messages``: speaker names to roles, and the turn-order contract.

Every mapper yields turns ``{speaker, stype, ttype, ctype, content, bad_part, non_text,
tool_calls}`` (``stype``/``ttype``/``ctype``: the JSON types of the speaker, of the turn
itself and of its content, so a number or list where text belongs is a ``wrong_type``
reject, never a stringified turn); this module maps speakers to the four canonical roles
and rejects what breaks the contract, naming the turn. Mapping of tool use (documented in
the README):

* ShareGPT ``function_call`` and OpenAI assistant ``tool_calls`` -> an ``assistant`` turn
  whose content is the call JSON as written (a *call turn*);
* ShareGPT ``observation`` and OpenAI ``tool``/``function`` results -> ``tool`` turns.

Order rules: an optional system turn first; then a user turn; then user/assistant alternate,
except that a call turn (a marked call, or any assistant turn right before a tool turn) may
follow an assistant turn, tool turns follow a call turn (or
another tool turn), and an assistant or call turn follows tool turns; the last turn is an
assistant turn. Empty system turns are dropped (an empty system prompt means none); empty
user/assistant/tool turns are rejects. ``\\r\\n`` line endings become ``\\n``; no other
change is made to text.
"""

from __future__ import annotations

import polars as pl

DEFAULT_ROLES: dict[str, str] = {
    "system": "system",
    "human": "user", "user": "user", "q": "user", "instruction": "user", "prompter": "user",
    "gpt": "assistant", "assistant": "assistant", "bot": "assistant", "model": "assistant",
    "chatgpt": "assistant", "a": "assistant", "response": "assistant", "function_call": "assistant",
    "observation": "tool", "tool": "tool", "function": "tool", "ipython": "tool",
}
CALL_SPEAKERS: frozenset[str] = frozenset({"function_call"})

ALLOWED_TRANSITIONS: frozenset[str] = frozenset({
    "system>user",
    "user>assistant", "user>call",
    "assistant>user", "assistant>call",
    "call>tool", "call>call",
    "tool>tool", "tool>assistant", "tool>call",
})


def role_map(tags: dict[str, str], roles: dict[str, str]) -> dict[str, str]:
    """Speaker (lowercased) -> role: defaults, then ``tags`` (LLaMA-Factory style), then
    explicit ``roles`` from ``sources.yaml``."""
    out = dict(DEFAULT_ROLES)
    for tag, role in (("user_tag", "user"), ("assistant_tag", "assistant"),
                      ("observation_tag", "tool"), ("function_tag", "assistant"),
                      ("system_tag", "system")):
        if tag in tags:
            out[tags[tag].strip().lower()] = role
    out.update({k.strip().lower(): v for k, v in roles.items()})
    return out


def _speaker_key(expr: pl.Expr) -> pl.Expr:
    return expr.str.strip_chars().str.to_lowercase().str.strip_prefix("### ")


def build_messages(
    frame: pl.DataFrame, roles: dict[str, str], call_speakers: set[str], system_prompt: str | None
) -> pl.DataFrame:
    """Add ``messages`` and fill ``error_code``/``error_detail`` for contract violations.

    ``frame`` has ``turns``, ``system`` (a record-level system prompt or null) and the
    mapper's own ``error_code``/``error_detail``. Rows that already carry an error keep it.
    """
    frame = frame.with_columns(
        pl.col(c).cast(pl.String)
        for c in ("system", "tools", "extra", "error_code", "error_detail")
    )
    el = pl.element()
    speaker = el.struct.field("speaker")
    key = _speaker_key(speaker)
    ctype = el.struct.field("ctype")
    tool_calls = el.struct.field("tool_calls")
    raw_content = el.struct.field("content")
    role = key.replace_strict(roles, default=None, return_dtype=pl.String)
    is_call = key.is_in(list(call_speakers)) | (
        (role == "assistant") & (raw_content.is_null() | (raw_content == ""))
        & tool_calls.is_not_null())
    content = (
        pl.when(is_call & (raw_content.is_null() | (raw_content == "")))
        .then(tool_calls).otherwise(raw_content)
        .str.replace_all("\r\n", "\n", literal=True)
    )
    system_turn = pl.struct(
        pl.lit("system").alias("speaker"), pl.lit("VARCHAR").alias("stype"),
        pl.lit("OBJECT").alias("ttype"), pl.lit("system").alias("role"),
        pl.lit("VARCHAR").alias("ctype"), pl.col("system").alias("content"),
        pl.lit(None, dtype=pl.String).alias("bad_part"),
        pl.lit(False).alias("is_call"), pl.lit(0, dtype=pl.Int64).alias("non_text"),
    )
    frame = frame.with_columns(
        pl.col("turns").list.eval(pl.struct(
            speaker.alias("speaker"), el.struct.field("stype").alias("stype"),
            el.struct.field("ttype").alias("ttype"), role.alias("role"), ctype.alias("ctype"),
            content.alias("content"), el.struct.field("bad_part").alias("bad_part"),
            is_call.alias("is_call"), el.struct.field("non_text").alias("non_text"),
        )).alias("turns"),
    )
    if system_prompt:
        frame = frame.with_columns(
            pl.when(pl.col("system").is_null() | (pl.col("system").str.strip_chars() == ""))
            .then(pl.lit(system_prompt)).otherwise("system").alias("system"))
    first_role = pl.col("turns").list.first().struct.field("role")
    frame = frame.with_columns(
        pl.when(pl.col("system").is_not_null() & (pl.col("system").str.strip_chars() != "")
                & (first_role.is_null() | (first_role != "system")))
        .then(pl.concat_list(system_turn, "turns"))
        .otherwise("turns").alias("turns")
    )
    # An empty system turn means "no system prompt" and is dropped. Only a turn that is
    # really a system turn with empty text: a turn of unknown role (null) or a system turn
    # whose content is a number/list/object must stay, so its reject is reported.
    blank = el.struct.field("content").is_null() | (
        el.struct.field("content").str.strip_chars() == "")
    empty_system = ((el.struct.field("role") == "system")
                    & el.struct.field("ctype").is_in(["VARCHAR", "NULL", "ARRAY"])
                    & el.struct.field("bad_part").is_null() & blank).fill_null(False)
    frame = frame.with_columns(
        pl.col("turns").list.eval(el.filter(~empty_system)).alias("turns"),
    )
    frame = frame.with_row_index("_rid")
    errors = _turn_errors(frame.select("_rid", "turns"))
    frame = (
        frame.join(errors, on="_rid", how="left")
        .sort("_rid")
        .with_columns(
            pl.coalesce("error_code", "turn_error_code").alias("error_code"),
            pl.coalesce("error_detail", "turn_error_detail").alias("error_detail"),
            pl.col("turns").list.eval(pl.struct(
                el.struct.field("role"), el.struct.field("content"))).alias("messages"),
            pl.col("turns").list.eval(el.struct.field("non_text")).list.sum()
            .alias("non_text_parts"),
        )
        .drop("_rid", "turn_error_code", "turn_error_detail")
    )
    return frame


def _turn_errors(frame: pl.DataFrame) -> pl.DataFrame:
    """Per row: the first violated rule, as ``turn_error_code``/``turn_error_detail``."""
    long = (
        frame.explode("turns")
        .unnest("turns")
        .with_columns(pl.int_range(pl.len()).over("_rid").alias("t"))
    )
    # An assistant turn right before a tool turn is a call turn, however it was marked
    # (the canonical schema does not mark calls; re-ingesting an export must agree).
    before_tool = (pl.col("role") == "assistant") & (
        pl.col("role").shift(-1).over("_rid") == "tool")
    kind = pl.when(pl.col("is_call") | before_tool).then(pl.lit("call")).otherwise(
        pl.col("role"))
    prev_kind = kind.shift(1).over("_rid")
    n = pl.len().over("_rid")
    first_real = pl.when(pl.col("role").first().over("_rid") == "system").then(1).otherwise(0)
    blank = pl.col("content").is_null() | (pl.col("content").str.strip_chars() == "")
    turn_ref = pl.format("turn {} ({})", pl.col("t"), pl.col("speaker"))
    long = long.with_columns(
        pl.when(pl.col("ttype") != "OBJECT").then(pl.lit("wrong_type|turn"))
        .when(~pl.col("stype").is_in(["VARCHAR", "NULL"])).then(pl.lit("wrong_type|role"))
        .when(pl.col("role").is_null() & pl.col("speaker").is_null())
        .then(pl.lit("missing_field|role"))
        .when(pl.col("role").is_null()).then(pl.lit("bad_role|unknown"))
        .when(pl.col("bad_part").is_not_null()).then(pl.lit("wrong_type|part"))
        .when((pl.col("ctype") == "NULL") & ~pl.col("is_call"))
        .then(pl.lit("missing_field|content"))
        .when(~pl.col("ctype").is_in(["VARCHAR", "ARRAY"]) & ~pl.col("is_call"))
        .then(pl.lit("wrong_type"))
        .when(blank).then(pl.lit("empty_content"))
        .when((pl.col("role") == "system") & (pl.col("t") > 0)).then(pl.lit("order|system"))
        .when((pl.col("t") == first_real) & (pl.col("role") != "user")).then(pl.lit("order|first"))
        .when((pl.col("t") > first_real)
              & ~(prev_kind + ">" + kind).is_in(list(ALLOWED_TRANSITIONS)))
        .then(pl.lit("order|transition"))
        .when((pl.col("t") == n - 1) & (pl.col("role") != "assistant"))
        .then(pl.lit("order|last"))
        .alias("why"),
        prev_kind.alias("prev_kind"),
        kind.alias("kind"),
    )
    bad = long.filter(pl.col("why").is_not_null() & pl.col("t").is_not_null())
    bad = bad.sort("_rid", "t").unique("_rid", keep="first", maintain_order=True)
    why = pl.col("why")
    detail = (
        pl.when(why == "wrong_type|turn").then(pl.format(
            "turn {} is {}, expected a turn object", "t", pl.col("ttype").str.to_lowercase()))
        .when(why == "wrong_type|role").then(pl.format(
            "turn {} speaker/role is {}, expected text", "t", pl.col("stype").str.to_lowercase()))
        .when(why == "missing_field|role").then(pl.format(
            "turn {} has no speaker/role (missing or null)", "t"))
        .when(why == "missing_field|content").then(pl.format(
            "{} has no content (missing or null)", turn_ref))
        .when(why == "wrong_type|part").then(pl.format(
            "{} content is a list whose {}, expected text or typed parts", turn_ref,
            "bad_part"))
        .when(why == "bad_role|unknown").then(pl.format(
            "turn {}: speaker '{}' is not a known role (map it under roles: in sources.yaml)",
            "t", "speaker"))
        .when(why == "wrong_type").then(pl.format(
            "{} content is {}, expected text", turn_ref, pl.col("ctype").str.to_lowercase()))
        .when(why == "empty_content").then(pl.format("{} is empty", turn_ref))
        .when(why == "order|system").then(pl.format("{} is a system turn after the start",
                                                    turn_ref))
        .when(why == "order|first").then(pl.format(
            "{} opens the conversation; the first non-system turn must be the user's",
            turn_ref))
        .when(why == "order|transition").then(pl.format(
            "{}: a {} turn cannot follow a {} turn", turn_ref, "kind", "prev_kind"))
        .otherwise(pl.format(
            "conversation ends with {}; the last turn must be the assistant's", turn_ref))
    )
    code = (
        pl.when(why.str.starts_with("order")).then(pl.lit("bad_turn_order"))
        .otherwise(why.str.split("|").list.first())
    )
    per_row = bad.select("_rid", code.alias("turn_error_code"), detail.alias("turn_error_detail"))
    empty_rows = frame.filter(pl.col("turns").list.len() == 0).select(
        "_rid", pl.lit("empty_content").alias("turn_error_code"),
        pl.lit("the conversation has no turns").alias("turn_error_detail"))
    return pl.concat([per_row, empty_rows]).unique("_rid", keep="first", maintain_order=True)
