"""Benchmark decontamination: verbatim copies are caught, paraphrases and near misses are not."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from instruct_assets.lib.decontaminate import (
    CONTAMINATION_SCHEMA,
    HASH_BASE,
    DecontamConfig,
    build_benchmark_index,
    find_contamination,
    hit_table,
    normalize_text_expr,
)
from tests.lib._frames import alpaca_conversations, frame_from_conversations

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"
BBH_DIR = REAL / "suzgunmirac__BIG-Bench-Hard" / "cot-prompts"


def bbh_items() -> pl.DataFrame:
    """One benchmark item per Q:/A: block (text = question + answer), item_id task:index."""
    rows = []
    for path in sorted(BBH_DIR.glob("*.txt")):
        body = path.read_text(encoding="utf-8").split("-----", 1)[1]  # canary + header
        blocks = [b for b in re.split(r"\n\s*\n(?=Q: )", body.strip()) if b.startswith("Q: ")]
        for i, block in enumerate(blocks):
            question, answer = block[3:].split("\nA: ", 1)
            rows.append(
                {
                    "benchmark": "bbh",
                    "item_id": f"{path.stem}:{i}",
                    "text": f"{question}\n{answer}",
                    "question": question.strip(),
                }
            )
    return pl.DataFrame(rows)


@pytest.fixture(scope="module")
def bbh() -> pl.DataFrame:
    return bbh_items()


@pytest.fixture(scope="module")
def index(bbh):
    return build_benchmark_index(bbh.select("benchmark", "item_id", "text"))


def question_of(bbh: pl.DataFrame, item_id: str) -> str:
    return bbh.filter(pl.col("item_id") == item_id)["question"][0]


def test_a_training_example_copying_a_bbh_question_verbatim_is_contaminated(bbh, index):
    question = question_of(bbh, "web_of_lies:0")
    examples = frame_from_conversations([[("user", question), ("assistant", "Yes.")]])
    found = find_contamination(examples, index)
    hit = found.filter(pl.col("item_id") == "web_of_lies:0")
    assert hit.height == 1
    assert hit["contaminated"][0]
    assert hit["overlap_ngrams"][0] >= 10


def test_case_punctuation_and_spacing_changes_do_not_hide_a_copy(bbh, index):
    question = question_of(bbh, "date_understanding:1")
    mangled = re.sub(r"[.,?()]", " ; ", question.upper()).replace(" ", "   ")
    examples = frame_from_conversations([[("user", "Quiz: " + mangled), ("assistant", "(B)")]])
    found = find_contamination(examples, index)
    assert found.filter(pl.col("item_id") == "date_understanding:1")["contaminated"].to_list() == [
        True
    ]


def test_a_paraphrase_sharing_a_few_words_is_not_contaminated(index):
    paraphrase = (
        "Fidel is honest. Jerry agrees that Fidel is honest, and Vina backs Jerry. Millicent "
        "calls Vina a liar, while Raymond calls Millicent a liar. Is Raymond honest?"
    )
    examples = frame_from_conversations([[("user", paraphrase), ("assistant", "Yes.")]])
    assert find_contamination(examples, index).height == 0


def test_one_shared_13_gram_with_a_long_item_is_reported_but_not_contaminated(bbh, index):
    text = bbh.filter(pl.col("item_id") == "web_of_lies:0")["text"][0]
    words = re.findall(r"\w+", text)
    snippet = " ".join(words[40:53])  # exactly 13 words
    examples = frame_from_conversations(
        [[("user", f"Unrelated start. {snippet}. Unrelated end."), ("assistant", "ok")]]
    )
    found = find_contamination(examples, index).filter(pl.col("item_id") == "web_of_lies:0")
    assert found["overlap_ngrams"].to_list() == [1]
    assert found["contaminated"].to_list() == [False]


def test_short_items_match_as_a_whole_and_tiny_items_never_match():
    bench = pl.DataFrame(
        {
            "benchmark": ["quiz", "quiz"],
            "item_id": ["short", "tiny"],
            "text": ["What is the boiling point of water at sea level?", "Capital of France?"],
        }
    )
    index = build_benchmark_index(bench)
    items = dict(zip(index.items["item_id"], index.items["n_grams"], strict=True))
    assert items == {"short": 1, "tiny": 0}
    examples = frame_from_conversations(
        [
            [
                ("user", "Q: what is the boiling point of water at sea level"),
                ("assistant", "100 C"),
            ],
            [("user", "What is the boiling point of water?"), ("assistant", "100 C")],
            [("user", "Capital of France?"), ("assistant", "Paris")],
        ]
    )
    found = find_contamination(examples, index)
    assert found["contaminated"].to_list() == [True]
    assert found["example_id"][0] == examples["example_id"][0]


def test_only_configured_roles_are_checked(bbh, index):
    question = question_of(bbh, "web_of_lies:1")
    examples = frame_from_conversations(
        [[("system", question), ("user", "Hello"), ("assistant", "Hi")]]
    )
    assert find_contamination(examples, index).height == 0
    with_system = DecontamConfig(roles=("system", "user", "assistant"))
    assert find_contamination(examples, index, with_system)["contaminated"].any()


def test_gram_hash_is_the_documented_polynomial_over_vocabulary_ranks():
    words = [f"w{i:02d}" for i in range(13)]
    index = build_benchmark_index(
        pl.DataFrame({"benchmark": ["b"], "item_id": ["1"], "text": [" ".join(words)]})
    )
    vocab = dict(zip(index.vocab["word"], index.vocab["word_id"], strict=True))
    assert vocab == {w: i + 1 for i, w in enumerate(sorted(words))}
    expected = 0
    for w in words:
        expected = (expected * int(HASH_BASE) + vocab[w]) % 2**64
    assert index.grams["gram_hash"].to_list() == [expected]


def test_anchors_cover_every_13_gram_of_an_item():
    rng = np.random.default_rng(7)
    words = [f"t{x}" for x in rng.integers(0, 50, size=97)]
    index = build_benchmark_index(
        pl.DataFrame({"benchmark": ["b"], "item_id": ["1"], "text": [" ".join(words)]})
    )
    for start in range(len(words) - 13 + 1):
        window = " " + " ".join(words[start : start + 13]) + " "
        assert any(anchor in window for anchor in index.anchors), start


def test_normalisation_lowercases_strips_punctuation_and_collapses_spaces():
    out = pl.select(normalize_text_expr(pl.lit("  Hello,  WORLD!! (it's)\n\tÉté — 2+2 ")))
    assert out.item() == "hello world it s été 2 2"


def test_result_is_sorted_typed_and_independent_of_row_order(bbh, index):
    convs = [[("user", q), ("assistant", "x")] for q in bbh["question"].to_list()]
    convs += [[("user", "Write a poem about the sea."), ("assistant", "Waves.")]] * 5
    examples = frame_from_conversations(convs)
    a = find_contamination(examples, index)
    b = find_contamination(examples.sample(fraction=1.0, shuffle=True, seed=3), index)
    assert a.schema == CONTAMINATION_SCHEMA
    assert a.equals(b)
    assert a.equals(a.sort("source", "example_id", "benchmark", "item_id"))


def test_hit_table_counts_items_and_examples_per_benchmark(bbh, index):
    q1 = question_of(bbh, "web_of_lies:0")
    q2 = question_of(bbh, "date_understanding:1")
    examples = frame_from_conversations(
        [
            [("user", q1), ("assistant", "Yes")],
            [("user", "Please answer: " + q1), ("assistant", "Yes")],
            [("user", q2), ("assistant", "(B)")],
            [("user", "Tell me a joke."), ("assistant", "No.")],
        ]
    )
    table = hit_table(find_contamination(examples, index), index)
    row = table.row(0, named=True)
    assert row["benchmark"] == "bbh"
    assert row["items_total"] == bbh.height
    assert row["items_hit"] == 2
    assert row["examples_hit"] == 3


def test_no_examples_or_no_checkable_items_give_an_empty_typed_frame(index):
    empty = frame_from_conversations([])
    assert find_contamination(empty, index).schema == CONTAMINATION_SCHEMA
    tiny = build_benchmark_index(
        pl.DataFrame({"benchmark": ["b"], "item_id": ["1"], "text": ["too short"]})
    )
    examples = frame_from_conversations([[("user", "too short"), ("assistant", "yes")]])
    assert find_contamination(examples, tiny).height == 0
    with pytest.raises(ValueError):
        find_contamination(examples, tiny, DecontamConfig(n=8))


def test_alpaca_demo_is_not_contaminated_by_bbh(index):
    alpaca = alpaca_conversations(str(REAL / "hiyouga__LLaMA-Factory" / "alpaca_en_demo.json"))
    found = find_contamination(frame_from_conversations(alpaca), index)
    assert not found["contaminated"].any()


def test_truthfulqa_questions_copied_into_alpaca_rows_are_found():
    tqa = pl.read_csv(REAL / "benedictflorance__truthfulqa_experiments" / "TruthfulQA.csv")
    bench = tqa.select(
        benchmark=pl.lit("truthfulqa"),
        item_id=pl.int_range(pl.len()).cast(pl.String),
        text=pl.col("Question") + "\n" + pl.col("Best Answer"),
    )
    index = build_benchmark_index(bench)
    alpaca = alpaca_conversations(str(REAL / "hiyouga__LLaMA-Factory" / "alpaca_en_demo.json"))
    planted = [
        [("user", q), ("assistant", a)]
        for q, a in tqa.select("Question", "Best Answer").head(20).iter_rows()
    ]
    examples = frame_from_conversations(alpaca + planted)
    found = find_contamination(examples, index).filter(pl.col("contaminated"))
    planted_ids = set(examples["example_id"].tail(20))
    assert set(found["example_id"]) == planted_ids
