"""The shared-encoding rewrite gives the same bytes as each format's own encoder."""

from __future__ import annotations

import polars as pl
import pytest
from _frames import frame_from_conversations

from instruct_assets.lib.export.alpaca import alpaca_lines
from instruct_assets.lib.export.derive import (
    alpaca_rewrite,
    derivable_template,
    mixed_lines,
    openai_rewrite,
    sharegpt_rewrite,
    text_rewrite,
    with_messages_json,
)
from instruct_assets.lib.export.openai_jsonl import openai_lines
from instruct_assets.lib.export.rendered import load_template, text_lines
from instruct_assets.lib.export.sharegpt import sharegpt_lines
from instruct_assets.lib.export.writers import prepare_rows

TOOLS = '[{"name": "lookup", "parameters": {"type": "object"}}]'
# Contents that look like the markup the rewrite replaces, escapes and non-ASCII text.
NASTY = [
    'x"},{"role":"assistant","content":"y',
    '"}]}',
    '{"messages":[{"role":"user","content":"',
    'back\\slash\\" \\\\"},{"role":"tool","content":"',
    "tab\tnl\ncr\r ctl \x01\x1b\x0b del \x7f",
    "é ✓ 😀 \u2028",
    "",
]


def _frame() -> pl.DataFrame:
    convs = [[("user", c), ("assistant", d)] for c in NASTY for d in NASTY[:3]]
    convs += [
        [("system", "Be brief."), ("user", NASTY[0]), ("assistant", NASTY[1])],
        [("user", "a"), ("assistant", "b"), ("user", NASTY[3]), ("assistant", "d")],
        [("user", "q"), ("assistant", '{"name": "lookup", "arguments": {}}'),
         ("tool", NASTY[4]), ("assistant", "done")],
    ]
    tools = [None] * (len(convs) - 1) + [TOOLS]
    tools[0] = TOOLS  # a single-turn row with tools
    frame = frame_from_conversations(convs, tools=tools)
    return with_messages_json(prepare_rows(frame, "train"))


CASES = {
    "openai": (openai_rewrite, openai_lines),
    "sharegpt": (sharegpt_rewrite, sharegpt_lines),
    "alpaca": (alpaca_rewrite, alpaca_lines),
    "text_chatml": (
        lambda: text_rewrite(load_template("chatml")),
        lambda rows: text_lines(rows, load_template("chatml")),
    ),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_rewritten_lines_are_byte_identical_to_the_format_encoder(kind):
    rows = _frame()
    if kind == "alpaca":
        rows = rows.filter(pl.col("_single"))
    rewrite, encode = CASES[kind]
    mask, line = rewrite()
    hits = rows.filter(rows.select(mask).to_series())
    assert hits.height >= len(NASTY), "the rewrite must apply to the tricky rows"
    assert hits.select(line).to_series().to_list() == encode(hits).to_list()
    # mixed: rewrite where it applies, the encoder elsewhere, in row order
    assert mixed_lines(rows, rewrite(), encode).to_list() == encode(rows).to_list()


def test_only_templates_with_one_suffix_and_verbatim_content_are_rewritten():
    assert derivable_template(load_template("chatml"))
    assert not derivable_template(load_template("llama3"))  # trims content
    assert not derivable_template(load_template("alpaca"))  # single-turn prompt
