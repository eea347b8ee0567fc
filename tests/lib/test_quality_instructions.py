"""Vague instructions and references to content that is not in the prompt."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from instruct_assets.lib.quality import instructions as I
from instruct_assets.lib.quality.config import QualityThresholds
from instruct_assets.lib.quality.text import with_text_columns
from tests.lib._frames import alpaca_conversations, frame_from_conversations

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"
CFG = QualityThresholds()


def _judge(prompts: list[str], system: str | None = None) -> pl.DataFrame:
    convs = []
    for p in prompts:
        conv = [("user", p), ("assistant", "OK, here you go.")]
        convs.append([("system", system), *conv] if system else conv)
    return _score(frame_from_conversations(convs))


def _score(frame: pl.DataFrame) -> pl.DataFrame:
    out = with_text_columns(frame)
    for stage in I.instruction_columns(CFG):
        out = out.with_columns(stage)
    return out


@pytest.mark.parametrize(
    "prompt",
    [
        "Do something with this text",
        "Make this better",
        "Fix it",
        "Improve this.",
        "Help me",
        "help me please!",
        "Can you make it better?",
        "Please fix this",
        "Make this text better please",
    ],
)
def test_generic_directives_are_vague(prompt):
    assert _judge([prompt])["vague_instruction"].item()


@pytest.mark.parametrize(
    "prompt",
    [
        "Fix the bug in this Python function that sums a list",
        "Make it more formal",
        "Write a poem",
        "Help me write a cover letter for a nursing job",
        "Make a list of 5 fruits",
        "Improve the following paragraph for clarity:\n\nThe cat sat.",
        "Fix it:\n\ndef f(): retrun 1",
        "hi",
        "What is the capital of France?",
    ],
)
def test_specific_instructions_are_not_vague(prompt):
    assert not _judge([prompt])["vague_instruction"].item()


@pytest.mark.parametrize(
    ("prompt", "reference"),
    [
        ("Summarize the following text.", "the following text"),
        ("Explain this code", "this code"),
        ("Summarize the passage above.", "passage above"),
        ("Summarize the table.", "the table"),
        ("Rewrite the given sentence in passive voice.", "the given sentence"),
        ("Translate the text below into Spanish.", "text below"),
        ("Classify the following:", "the following"),
        ("Is this sentence grammatically correct?", "this sentence"),
        ("Classify the following animals.\n\n<noinput>", "the following animals"),
    ],
)
def test_a_reference_to_absent_content_is_missing_context(prompt, reference):
    row = _judge([prompt]).row(0, named=True)
    assert row["missing_context"]
    assert row["context_reference"] == reference


@pytest.mark.parametrize(
    "prompt",
    [
        "Summarize the following text.\n\nThe quick brown fox jumps over the lazy dog.",
        "Translate this sentence to French: I love cats",
        "Find the sum of the numbers in the following list [1, 2, 3]",
        'Correct the grammar in this sentence "Me and him goes to school"',
        "Given a list of numbers, write a function that returns the maximum.",
        "Write a Python function that evaluates a given expression.",
        "What is the periodic table?",
        "Write a css rule to change the color of all links in the document.",
        "Answer the following multiple-choice question. When was the Constitution ratified?",
        "Tell me about the following day in history",
    ],
)
def test_content_that_is_there_or_generic_phrasing_is_not_missing_context(prompt):
    assert not _judge([prompt])["missing_context"].item()


def test_a_long_system_prompt_may_hold_the_referenced_passage():
    passage = "The mitochondria is the powerhouse of the cell. " * 10
    assert not _judge(["Summarize the passage above."], system=passage)["missing_context"].item()
    assert _judge(["Summarize the passage above."], system="Be brief.")["missing_context"].item()


def test_alpaca_demo_rows_are_rarely_vague_or_missing_context():
    frame = frame_from_conversations(
        alpaca_conversations(str(REAL / "hiyouga__LLaMA-Factory" / "alpaca_en_demo.json"))
    )
    out = _score(frame)
    assert out["vague_instruction"].mean() < 0.05
    assert out["missing_context"].mean() < 0.05
    flagged = out.filter(pl.col("missing_context"))["first_user"].to_list()
    # the real ones: a promised text or sentence that the row does not contain
    assert "Create the HTML code necessary to display the following text." in flagged
    assert "Complete this sentence with an example of a homophone." in flagged


def test_code_alpaca_questions_about_a_missing_table_or_list_are_flagged():
    frame = frame_from_conversations(
        alpaca_conversations(str(REAL / "sahil280114__codealpaca" / "code_alpaca_2k.json"))
    )
    flagged = _score(frame).filter(pl.col("missing_context"))["first_user"].to_list()
    assert "Write a Python function to find the mode of the given list of numbers." in flagged
    assert all("\n" not in p for p in flagged)  # rows with an input are never flagged


@pytest.mark.parametrize(
    "text",
    [
        "Summarize the text.",
        "Translate: hello world!!  ",
        "It's what the user's notes say",
        "a'b'c",
        "x 'quoted' end.",
        "  given text",
        "",
        "?!:",
        "Explain [this] {code} <tag> | 42 things",
    ],
)
def test_the_forward_last_clause_equals_the_reversed_one(text):
    frame = pl.DataFrame({"t": [text]})
    t = pl.col("t")
    reversed_ = t.str.reverse().str.extract(I.REVERSED_LAST_CLAUSE_RE, 1).str.reverse()
    tail = t.str.strip_chars_end().str.strip_chars_end(".!?:")
    forward = tail.str.slice(tail.str.find(I.LAST_CLAUSE_RE))
    out = frame.select(reversed_.alias("r"), forward.alias("f"))
    assert out["r"].item() == out["f"].item()
