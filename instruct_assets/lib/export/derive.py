"""Several JSON exports from one encoding of the messages, by literal replacement.

Why: encoding the conversation text is most of the cost of every JSON export, and the
OpenAI line ``{"messages":[{"role":"user","content":"…"},…]}`` already holds every content
JSON-escaped. For the common rows, ShareGPT, Alpaca and a chat template's ``{"text"}`` line
differ from it only in the markup around the contents, so one Aho-Corasick pass
(``str.replace_many``) over the OpenAI text rewrites the markup, instead of encoding the
contents again.

Why it is exact: the patterns are the structural markup between two contents, e.g.
``"},{"role":"assistant","content":"``. Each holds a quote after ``{``, and inside an
encoded string every quote is escaped (``\\"``), so ``{"`` can only be structure: no
content can match (the closing ``"}]}`` has no such quote, so it is cut at the end
instead of searched). Rows the markup
rewrite cannot express (a system turn for ShareGPT, tools, an unknown role, a chat
template with per-role suffixes or trimmed content) keep the per-format encoders; tests
check both paths give the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from instruct_assets.lib.export.common import ROLE, dumps
from instruct_assets.lib.export.rendered import ChatTemplate, Template
from instruct_assets.lib.export.sharegpt import ROLE_TO_FROM
from instruct_assets.lib.schema import ROLES

#: The column holding ``{"messages":[...]}`` per row (see :func:`with_messages_json`).
MESSAGES_JSON = "_messages_json"

_HEAD = '{"messages":['
_TAIL = '"}]}'


def _open(role: str) -> str:
    return '{"role":' + dumps(role) + ',"content":"'


def _escaped(text: str) -> str:
    """``text`` as it appears inside a JSON string."""
    return dumps(text)[1:-1]


def with_messages_json(rows: pl.DataFrame) -> pl.DataFrame:
    """``rows`` plus :data:`MESSAGES_JSON`: ``{"messages":[...]}``, the OpenAI line of a row
    without tools."""
    return rows.with_columns(pl.struct("messages").struct.json_encode().alias(MESSAGES_JSON))


def _rewrite(first: dict[str, str], between: dict[str, str], last: str) -> pl.Expr:
    """Replace the markup before the first content (per role), between two contents (per
    role of the next turn) and after the last content.

    The closing markup ``"}]}`` holds no quote after its first character, so it could match
    at an escaped quote inside a content: it is cut at the end of the text, not searched.
    """
    patterns = [_HEAD + _open(r) for r in first] + ['"},' + _open(r) for r in between]
    replacements = [*first.values(), *between.values()]
    body = pl.col(MESSAGES_JSON).str.strip_suffix(_TAIL)
    return pl.concat_str(body.str.replace_many(patterns, replacements, leftmost=True), pl.lit(last))


def _roles_within(allowed: tuple[str, ...] | list[str]) -> pl.Expr:
    """True for non-empty conversations whose roles are all in ``allowed``."""
    return (pl.col("messages").list.len() > 0) & pl.col("messages").list.eval(
        ROLE.is_in(list(allowed)).fill_null(False)
    ).list.all().fill_null(False)


def derivable_template(template: Template) -> bool:
    """A chat template the rewrite can render: content verbatim, one suffix for all roles."""
    return (
        isinstance(template, ChatTemplate)
        and not template.trim_content
        and len(set(template.suffix.values())) == 1
    )


def text_rewrite(template: ChatTemplate) -> tuple[pl.Expr, pl.Expr]:
    """``(mask, line)``: rows the rewrite renders, and their ``{"text": ...}`` line."""
    suffix = _escaped(next(iter(template.suffix.values())))
    start = '{"text":"' + _escaped(template.bos)
    line = _rewrite(
        {r: start + _escaped(template.prefix[r]) for r in ROLES},
        {r: suffix + _escaped(template.prefix[r]) for r in ROLES},
        suffix + _escaped(template.eos) + '"}',
    )
    return _roles_within(ROLES), line


def sharegpt_rewrite() -> tuple[pl.Expr, pl.Expr]:
    """``(mask, line)`` for rows of user/assistant turns only and no tools (no system key,
    no tools key, no ``function_call``, which needs a tool turn)."""
    roles = ("user", "assistant")
    line = _rewrite(
        {r: '{"conversations":[{"from":' + dumps(ROLE_TO_FROM[r]) + ',"value":"' for r in roles},
        {r: '"},{"from":' + dumps(ROLE_TO_FROM[r]) + ',"value":"' for r in roles},
        _TAIL,
    )
    return _roles_within(roles) & pl.col("tools_json").is_null(), line


def alpaca_rewrite() -> tuple[pl.Expr, pl.Expr]:
    """``(mask, line)`` for single-turn rows (filtered first) without system turn or tools."""
    line = _rewrite(
        {"user": '{"instruction":"'},
        {"assistant": '","input":"","output":"'},
        '"}',
    )
    return _roles_within(("user", "assistant")) & pl.col("tools_json").is_null(), line


def openai_rewrite() -> tuple[pl.Expr, pl.Expr]:
    """``(mask, line)``: a row without tools is its messages JSON as is."""
    return pl.col("tools_json").is_null(), pl.col(MESSAGES_JSON)


def mixed_lines(
    rows: pl.DataFrame,
    rewrite: tuple[pl.Expr, pl.Expr],
    encode: Callable[[pl.DataFrame], pl.Series],
) -> pl.Series:
    """Lines of ``rows`` (with :data:`MESSAGES_JSON`): the rewrite where its mask holds,
    ``encode`` (the format's own encoder) on the other rows; row order kept."""
    mask_expr, line = rewrite
    mask = rows.select(mask_expr.alias("m")).to_series()
    hits = int(mask.sum())
    if hits == rows.height:
        return rows.select(line.alias("line")).to_series()
    if hits == 0:
        return encode(rows).alias("line")
    indexed = rows.with_row_index("_row")
    done = indexed.filter(mask).select("_row", line.alias("line"))
    rest = indexed.filter(~mask)
    other = rest.select("_row").with_columns(encode(rest.drop("_row")).alias("line"))
    merged = pl.concat([done, other])
    return merged.get_column("line").gather(merged.get_column("_row").arg_sort())
