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


# --- the raw-text screen (a superset of the exact anchor rule) -------------------------


def _exact_rows(frame: pl.DataFrame, anchors: list[str], roles=("user", "assistant")) -> list[bool]:
    """The exact rule: the normalised user/assistant text holds an anchor."""
    role, content = pl.element().struct.field("role"), pl.element().struct.field("content")
    text = pl.col("messages").list.eval(content.filter(role.is_in(list(roles)))).list.join(" ")
    norm = pl.lit(" ") + normalize_text_expr(text) + pl.lit(" ")
    return frame.select(norm.str.contains_any(anchors))[:, 0].to_list()


TRICKY_ITEM = "Kristian tells the truth. Is 3 + 40 = 43? Let's think: ÉCOLE ça marche, İstanbul."


@pytest.mark.parametrize(
    "turns",
    [
        [("user", "kristian TELLS the truth. is 3 + 40 = 43? let's think: école ÇA marche")],
        [("user", "KRISTIAN\ttells,,,the---truth!!!\n\nIs 3 (+) 40 == 43?? Let’s think")],
        # the anchor runs across turns, with a system and a tool turn in between
        [("user", "Kristian tells the"), ("system", "x"), ("tool", "y"),
         ("assistant", "truth. Is 3 + 40 = 43? Let's think")],
        # across three turns, one of them a single word
        [("user", "... Kristian tells"), ("assistant", "the"),
         ("user", "truth. Is 3 + 40 = 43?")],
        # non-ASCII words in other cases, and words made of Unicode case oddities
        [("assistant", "think: ÉCOLE ÇA MARCHE İSTANBUL")],
        [("user", "Let's thin\u212a: école ça marche istanbul")],  # Kelvin sign K
        [("user", "kristian_tells_the_truth_is_3_40_43_let_s_think")],  # "_" is not a word char
        [("user", "ＫＲＩＳＴＩＡＮ tells the truth is 3 40 43 let s think")],  # full-width
    ],
)
def test_the_raw_screen_passes_every_row_the_exact_rule_finds(turns):
    from instruct_assets.lib.decontaminate import anchor_screen

    items = pl.DataFrame({"benchmark": ["b"], "item_id": ["1"], "text": [TRICKY_ITEM]})
    index = build_benchmark_index(items, DecontamConfig(n=5, min_item_words=3))
    frame = frame_from_conversations([turns])
    screen = anchor_screen(index.anchors)
    assert screen is not None
    passed = frame.select(screen.row_passes(pl.col("messages")))[:, 0].to_list()
    exact = _exact_rows(frame, index.anchors)
    assert all(p or not e for p, e in zip(passed, exact, strict=True)), (passed, exact)


def test_the_raw_screen_keeps_the_findings_of_the_exact_rule_on_real_copies(bbh):
    """Copies with changed case, punctuation, spacing and turn splits: the screen passes
    every row the exact rule passes, and find_contamination finds them all."""
    from instruct_assets.lib.decontaminate import MAX_SCREEN_ANCHORS, anchor_screen

    index = build_benchmark_index(bbh.head(40).select("benchmark", "item_id", "text"))
    assert len(index.anchors) <= MAX_SCREEN_ANCHORS
    texts = bbh["text"].head(40).to_list()
    convs = []
    for i, t in enumerate(texts):
        words = t.split()
        half = len(words) // 2
        mangled = [w.upper() if j % 3 == 0 else w for j, w in enumerate(words)]
        convs.append([("user", " ".join(mangled[:half]) + " ->"),
                      ("assistant", "...  " + ",\n".join(mangled[half:]))])
        convs.append([("user", "Tell me a joke."), ("assistant", f"No. {i}")])
    frame = frame_from_conversations(convs)
    screen = anchor_screen(index.anchors)
    assert screen is not None
    passed = frame.select(screen.row_passes(pl.col("messages")))[:, 0].to_list()
    exact = _exact_rows(frame, index.anchors)
    assert sum(exact) == len(texts)
    assert all(p or not e for p, e in zip(passed, exact, strict=True))
    found = find_contamination(frame, index)
    assert found.filter("contaminated").select("example_id").n_unique() == len(texts)


def test_case_special_chars_cover_every_code_point_lowercasing_oddly():
    """Every character whose lowercase is not one character, is ASCII while it is not, or
    changes letter-or-digit-ness, is routed around the screen."""
    from instruct_assets.lib.decontaminate import CASE_SPECIAL_CHARS

    chars = pl.Series(
        "c", [chr(i) for i in range(0x110000) if not 0xD800 <= i <= 0xDFFF], pl.String
    )
    word = r"^[\p{L}\p{N}]+$"
    odd = (
        pl.DataFrame({"c": chars})
        .with_columns(low=pl.col("c").str.to_lowercase())
        .filter(
            (pl.col("low").str.len_chars() != 1)
            | ((pl.col("c").str.len_bytes() > 1) & (pl.col("low").str.len_bytes() == 1))
            | (pl.col("c").str.contains(word) != pl.col("low").str.contains(word))
        )["c"]
        .to_list()
    )
    assert set(odd) <= set(CASE_SPECIAL_CHARS), sorted(set(odd) - set(CASE_SPECIAL_CHARS))
