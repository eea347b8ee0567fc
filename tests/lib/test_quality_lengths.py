"""Length signals: characters per role, approximate tokens, what does not fit."""

from __future__ import annotations

from dataclasses import replace

import polars as pl

from instruct_assets.lib.quality import lengths as L
from instruct_assets.lib.quality.config import QualityThresholds
from tests.lib._frames import frame_from_conversations

CFG = QualityThresholds()


def _lengths(conversations, cfg: QualityThresholds = CFG) -> pl.DataFrame:
    frame = frame_from_conversations(conversations)
    for stage in L.length_columns(cfg):
        frame = frame.with_columns(stage)
    return frame


def test_characters_are_counted_per_role_and_tokens_are_chars_over_four():
    conv = [("system", "a" * 40), ("user", "b" * 400), ("assistant", "c" * 800)]
    row = _lengths([conv]).row(0, named=True)
    assert (row["chars_system"], row["chars_user"], row["chars_assistant"]) == (40, 400, 800)
    assert row["chars_tool"] == 0 and row["chars_total"] == 1240
    # 1240 / 4 + 4 template tokens per message
    assert row["approx_tokens"] == 310 + 3 * CFG.tokens_per_message
    assert row["approx_tokens_system"] == 10


def test_characters_are_code_points_not_bytes():
    row = _lengths([[("user", "你好世界"), ("assistant", "é")]]).row(0, named=True)
    assert (row["chars_user"], row["chars_assistant"]) == (4, 1)


def test_a_conversation_longer_than_the_window_is_flagged():
    long = [("user", "x" * 20_000), ("assistant", "ok")]
    short = [("user", "hi"), ("assistant", "hello")]
    out = _lengths([long, short])
    assert out["too_long_for_context"].to_list() == [True, False]
    wider = _lengths([long], replace(CFG, context_window_tokens=8192))
    assert not wider["too_long_for_context"].item()


def test_an_overlong_system_prompt_is_flagged():
    big = [("system", "rule. " * 400), ("user", "hi"), ("assistant", "hello")]
    small = [("system", "Be brief."), ("user", "hi"), ("assistant", "hello")]
    none = [("user", "hi"), ("assistant", "hello")]
    assert _lengths([big, small, none])["overlong_system_prompt"].to_list() == [
        True,
        False,
        False,
    ]


def test_a_row_without_a_non_empty_assistant_turn_has_nothing_to_train_on():
    out = _lengths(
        [
            [("user", "hi"), ("assistant", "   ")],
            [("user", "hi")],
            [("user", "hi"), ("assistant", "hello")],
        ]
    )
    assert out["no_trainable_content"].to_list() == [True, True, False]


def test_length_frame_matches_the_length_expressions():
    conversations = [
        [
            ("system", "Be brief."),
            ("user", "hi"),
            ("assistant", "hello"),
            ("user", "é"),
            ("assistant", " "),
        ],
        [("user", "x"), ("assistant", "  \n ")],
        [("user", "x"), ("assistant", "")],
        [("user", "q"), ("assistant", "a"), ("tool", "{}"), ("assistant", "done")],
    ]
    frame = frame_from_conversations(conversations).select("messages")
    expected = frame
    for stage in L.length_columns(CFG):
        expected = expected.with_columns(stage)
    got = L.length_frame(frame, CFG)
    assert got.equals(expected.select(got.columns))
    # with the "response has visible text" shortcut
    nonblank = pl.Series("_nb", [False, False, False, True])
    got = L.length_frame(frame.hstack([nonblank]), CFG, nonblank_response="_nb").drop("_nb")
    assert got.equals(expected.select(got.columns))
