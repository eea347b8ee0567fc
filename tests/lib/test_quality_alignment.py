"""Output misalignment: the response ignores an explicit, checkable request."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from instruct_assets.lib.quality import alignment as A
from instruct_assets.lib.quality.config import QualityThresholds
from instruct_assets.lib.quality.text import with_text_columns
from tests.lib._frames import alpaca_conversations, frame_from_conversations

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"
CFG = QualityThresholds()


def _align(pairs: list[tuple[str, str]]) -> pl.DataFrame:
    frame = frame_from_conversations([[("user", p), ("assistant", r)] for p, r in pairs])
    return A.alignment_frame(with_text_columns(frame).with_row_index("_row"), CFG)


def _kind(prompt: str, response: str) -> str | None:
    return _align([(prompt, response)])["misalignment_kind"].item()


@pytest.mark.parametrize(
    ("prompt", "response", "kind"),
    [
        ("Return the result as JSON.", "The result is a=1 and b=2.", "json"),
        ("Return the result as JSON.", '{"a": 1,', "json"),
        ("Write a Python function that sums a list", "Use the sum builtin.", "code"),
        ("List 5 fruits.", "1. Apple\n2. Pear\n3. Plum", "item_count"),
        ("Name three countries in Europe.", "France.", "item_count"),
        (
            "Summarize the plot in one sentence.",
            "A boy finds a dragon. They become friends. Then war comes. The end.",
            "sentence_count",
        ),
        (
            "Describe a cat in 10 words.",
            "Cats are small furry animals that like to sleep a lot during the day and hunt "
            "mice at night when nobody is watching them closely.",
            "word_count",
        ),
        ("Write a 50-word story.", "Too short.", "word_count"),
        (
            "Translate this into French: The cat is on the table and it is sleeping.",
            "The cat is on the table and it is sleeping with the dog.",
            "language",
        ),
        (
            "Write a short poem in Chinese about the moon.",
            "The moon hangs high in the sky, lighting up the night for everyone.",
            "language",
        ),
    ],
)
def test_a_clear_violation_is_flagged_with_its_kind(prompt, response, kind):
    assert _kind(prompt, response) == kind


@pytest.mark.parametrize(
    ("prompt", "response"),
    [
        ("Return the result as JSON.", '{"a": 1}'),
        ("Return the result as JSON.", 'Here it is:\n```json\n{"a": 1}\n```'),
        ("Return the result as JSON.", 'Sure: {"a": 1, "b": [1, 2]} hope it helps'),
        (
            "Write a Python function to convert a dict to JSON",
            "import json\ndef f(d):\n    return json.dumps(d)",
        ),
        ("Write a Python function that sums a list", "def f(xs):\n    return sum(xs)"),
        ("Write a script for a movie about robots", "INT. LAB - NIGHT. A robot wakes."),
        ("Write a story about a program that becomes alive", "Once upon a time..."),
        ("How do I create a web page with HTML?", "First create a file called index.html."),
        ("List 5 fruits.", "1. Apple\n2. Pear\n3. Plum\n4. Kiwi\n5. Fig"),
        ("Name three countries in Europe.", "France, Germany and Spain."),
        ("Give me 3 tips for sleeping better.", "- Keep a schedule\n- No screens\n- Dark room"),
        (
            "Identify 2 goods and 2 services a restaurant provides.",
            "1. Meals\n2. Drinks\n3. Catering\n4. Delivery",
        ),
        ("Summarize the plot in one sentence.", "A boy finds a dragon and they become friends."),
        ("Describe each planet in one sentence.", "Mercury is hot. Venus is bright. Earth is."),
        ("How do you count the number of words in a sentence?", "Split on spaces. Count. Done."),
        ("Describe a cat in 10 words.", "Small furry hunter that sleeps all day and purrs."),
        ("Write a summary in under 20 words.", "Short."),
        ("Write 50 short stories under ten words.", "1. Lost ring. Found love.\n" * 50),
        (
            "Think of two words that mean the same thing.",
            "Color and colour are spelled differently but mean the same thing in English.",
        ),
        ("Translate the sentence to Spanish: I like cats.", "Me gustan los gatos."),
        ("Translate to French: good morning", "Bonjour"),
        ("Translate 'hello' into Russian.", "Привет"),
        ("Create a function to translate a string to Spanish.", "function t(s) { return s; }"),
        ("What is the capital of France?", "Paris."),
        ('Parse this JSON and tell me the name.\n\n{"name": "x"}', "The name is x."),
        ("Return the result as JSON.", ""),
    ],
)
def test_fulfilled_or_unrecognised_requests_are_not_flagged(prompt, response):
    assert _kind(prompt, response) is None


def test_requests_are_read_from_the_instruction_not_from_its_input():
    prompt = "Summarize this review.\n\nThe hotel staff would only answer in Spanish."
    row = _align([(prompt, "The reviewer disliked the staff.")]).row(0, named=True)
    assert row["requested_language"] is None


def test_raw_measures_are_kept_next_to_the_verdict():
    row = _align([("List 5 fruits.", "1. Apple\n2. Pear\n3. Plum")]).row(0, named=True)
    assert (row["requested_items"], row["response_items"]) == (5, 3)
    assert row["output_misalignment"]
    other = _align([("What is 2+2?", "4")]).row(0, named=True)
    assert other["requested_items"] is None and not other["output_misalignment"]


def test_json_validity_is_checked_row_by_row():
    frame = pl.DataFrame({"a": ['{"x": 1}', "not json", None, "[1, 2]"]})
    assert A.json_valid(frame, ["a"]).to_list() == [True, False, False, True]


def test_code_alpaca_answers_that_give_the_result_instead_of_code_are_misaligned():
    frame = frame_from_conversations(
        alpaca_conversations(str(REAL / "sahil280114__codealpaca" / "code_alpaca_2k.json"))
    )
    texts = with_text_columns(frame).with_row_index("_row")
    out = A.alignment_frame(texts, CFG).hstack(texts.select("first_user", "response"))
    flagged = out.filter(pl.col("output_misalignment"))
    assert 0 < flagged.height < 0.02 * out.height
    java = flagged.filter(pl.col("first_user").str.starts_with("Create a Java program to reverse"))
    assert java["misalignment_kind"].to_list() == ["code"]
    # the two empty outputs are "empty", not "misaligned"
    assert flagged.filter(pl.col("response").str.strip_chars() == "").height == 0


def test_alpaca_demo_has_almost_no_misalignment():
    frame = frame_from_conversations(
        alpaca_conversations(str(REAL / "hiyouga__LLaMA-Factory" / "alpaca_en_demo.json"))
    )
    out = A.alignment_frame(with_text_columns(frame).with_row_index("_row"), CFG)
    assert out["output_misalignment"].mean() < 0.02


def test_the_request_is_the_first_paragraph_counted_in_characters():
    frame = pl.DataFrame({"last_user": ["Écris ça en JSON, s'il te plaît.\n\nIgnore this.",
                                        "a" * 1200, None]})
    got = frame.select(A.request_text()).to_series().to_list()
    assert got == ["Écris ça en JSON, s'il te plaît.", "a" * 1000, None]
