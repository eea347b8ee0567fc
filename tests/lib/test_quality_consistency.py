"""Output shapes, instruction templates, the odd row out, and the two summary tables."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from instruct_assets.lib.quality import consistency as C
from instruct_assets.lib.quality.config import QualityThresholds
from instruct_assets.lib.quality.text import with_text_columns
from tests.lib._frames import frame_from_conversations

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"
CFG = QualityThresholds()


def _shape(response: str) -> str:
    frame = with_text_columns(frame_from_conversations([[("user", "Q?"), ("assistant", response)]]))
    return C.output_shape(frame, CFG).item()


@pytest.mark.parametrize(
    ("response", "shape"),
    [
        ('{"a": 1, "b": [1, 2]}', "json"),
        ('```json\n{"a": 1}\n```', "json"),
        ("[1, 2, 3]", "json"),
        ("```python\nprint(1)\n```", "code"),
        ("def f(x):\n    return x", "code"),
        ("| a | b |\n|---|---|\n| 1 | 2 |", "table"),
        ("1. Apples\n2. Pears\n3. Plums", "list"),
        ("Here are some:\n- one\n- two\n- three", "list"),
        ("Positive", "short"),
        ("42", "short"),
        ("The sky is blue because air scatters short wavelengths more.", "prose"),
        ("{not json at all, only a brace and then a few more words", "prose"),
        ("   ", "empty"),
    ],
)
def test_each_response_gets_its_shape(response, shape):
    assert _shape(response) == shape


def _template(prompt: str) -> str:
    frame = with_text_columns(frame_from_conversations([[("user", prompt), ("assistant", "x")]]))
    return C.with_instruction_template(frame, CFG)["instruction_template"].item()


def test_rows_from_one_template_share_a_key_and_other_templates_do_not():
    a = _template('Translate "Good morning" into French.')
    b = _template('Translate "See you tomorrow, my friend" into French.')
    c = _template('Translate "Good morning" into German.')
    assert a == b == "translate <q> into french."
    assert c != a
    assert _template("What is 12 + 30?") == _template("What is 7 + 1?")
    assert _template("Transform this data from TOML to CSV:\nname = 1") == (
        "transform this data from toml to csv:"
    )
    assert _template("Transform this data from TOML to JSON:\nname = 1") != _template(
        "Transform this data from TOML to CSV:\nname = 2"
    )


def test_the_template_stops_at_the_first_line_after_non_ascii_text():
    # a byte offset used as a character count once let the key run past the newline
    assert _template('Edit the following sentence: "Café crème"\n\n"the rest"') == (
        "edit the following sentence: <q>")
    assert _template("Résumé ça\nsecond line") == "résumé ça"


def test_long_tokens_like_ids_and_urls_are_masked():
    assert _template("Summarize https://example.com/a/very/long/path please") == (
        "summarize <tok> please"
    )


def _outlier_frame(
    shapes: list[str], template: str = "Convert this record to JSON:"
) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "source": ["s"] * len(shapes),
            "instruction_template": [template] * len(shapes),
            "output_shape": shapes,
        }
    )


def test_the_odd_row_out_of_a_consistent_template_group_is_an_outlier():
    out = C.with_shape_outlier(_outlier_frame(["json"] * 24 + ["prose"]), CFG)
    assert out["shape_outlier"].to_list() == [False] * 24 + [True]
    assert set(out["template_dominant_shape"]) == {"json"}


def test_small_or_mixed_groups_have_no_dominant_shape():
    small = C.with_shape_outlier(_outlier_frame(["json"] * 5 + ["prose"]), CFG)
    mixed = C.with_shape_outlier(_outlier_frame(["json"] * 15 + ["prose"] * 10), CFG)
    for out in (small, mixed):
        assert out["shape_outlier"].sum() == 0
        assert out["template_dominant_shape"].null_count() == out.height


def test_templates_are_compared_within_a_source_only():
    frame = pl.concat(
        [
            _outlier_frame(["json"] * 24 + ["prose"]),
            _outlier_frame(["prose"] * 3).with_columns(source=pl.lit("other")),
        ]
    )
    out = C.with_shape_outlier(frame, CFG)
    assert out.filter(pl.col("source") == "other")["shape_outlier"].sum() == 0


def test_system_prompt_table_counts_each_prompt_and_its_sources():
    a = frame_from_conversations(
        [[("system", "Be brief."), ("user", "hi"), ("assistant", "yo")]] * 3, source="a"
    )
    b = frame_from_conversations(
        [
            [("system", "Be brief."), ("user", "hi"), ("assistant", "yo")],
            [("system", "Answer in JSON."), ("user", "hi"), ("assistant", "{}")],
            [("user", "no system"), ("assistant", "ok")],
        ],
        source="b",
    )
    table = C.system_prompt_table(pl.concat([a, b]))
    assert table.to_dicts() == [
        {"text": "Be brief.", "count": 4, "sources": ["a", "b"]},
        {"text": "Answer in JSON.", "count": 1, "sources": ["b"]},
    ]


def test_shape_distribution_counts_shapes_per_source():
    frame = frame_from_conversations(
        [[("user", "q"), ("assistant", r)] for r in ["1. a\n2. b", "1. c\n2. d", "Yes"]]
    )
    dist = C.shape_distribution(frame)
    assert dist.to_dicts() == [
        {"source": "test", "shape": "list", "count": 2},
        {"source": "test", "shape": "short", "count": 1},
    ]


def test_structured_data_templates_group_rows_without_false_outliers():
    path = (
        REAL
        / "KentaNishi__2025_llm_comp_main"
        / "structured_data_with_cot_dataset_512_v5_validation.jsonl"
    )
    convs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        convs.append([(m["role"], m["content"]) for m in record["messages"]])
    frame = with_text_columns(frame_from_conversations(convs, source="structured"))
    frame = C.with_instruction_template(frame.with_columns(C.output_shape(frame, CFG)), CFG)
    out = C.with_shape_outlier(frame, CFG)
    # templated prompts ("Transform this data from TOML to CSV:") collapse to few keys ...
    assert out["instruction_template"].n_unique() < out.height / 2
    assert "transform this data from toml to csv:" in set(out["instruction_template"])
    # ... and the chain-of-thought answers mix lists and data blocks, so no group is uniform
    # enough to single out a row: few or no outliers
    assert out["shape_outlier"].mean() < 0.05
