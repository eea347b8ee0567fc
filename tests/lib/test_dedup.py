"""Exact and near-duplicate detection: written cases, real files, determinism."""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path

import polars as pl
import pytest

from instruct_assets.lib.quality.dedup import (
    DEDUP_SCHEMA,
    DedupConfig,
    find_duplicates,
    pick_representatives,
)
from tests.lib._frames import alpaca_conversations, frame_from_conversations

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"
ALPACA = REAL / "hiyouga__LLaMA-Factory" / "alpaca_en_demo.json"
GLAIVE = REAL / "hiyouga__LLaMA-Factory" / "glaive_toolcall_en_demo.json"
SHAREGPT_ROLES = {
    "human": "user",
    "gpt": "assistant",
    "function_call": "assistant",
    "observation": "tool",
    "system": "system",
}

_PROSE = (
    "the old lighthouse keeper climbed the spiral stairs every evening to light the lamp"
    " that guided fishing boats past the rocks of the northern cape while the wind"
    " howled through broken shutters and gulls circled above the foaming water below"
    " his daughter kept a journal of every ship that passed recording names flags and"
    " the weather in careful handwriting that filled dozens of leather notebooks stacked"
    " in the cellar beside barrels of oil and coils of tarred rope which smelled of salt"
    " in winter the ice made the path treacherous so he tied a line from the cottage"
    " door to the tower and walked bent double against storms that lasted for days"
    " when the supply boat was late they ate dried fish and potatoes and told stories"
    " about sailors who had vanished in fog and about lights seen far out on the sea"
    " that no chart explained years later the tower was automated and the family moved"
    " to a town inland where the daughter became a teacher and read the journals aloud"
)
_WORDS = _PROSE.split() * 2
# ~340 words; every third carries its index, so no 5-word shingle repeats.
PARAGRAPH = " ".join(f"{w}{i}" if i % 3 == 0 else w for i, w in enumerate(_WORDS))


def _run(convs: list[list[tuple[str, str]]], **cfg: object) -> pl.DataFrame:
    return find_duplicates(frame_from_conversations(convs), DedupConfig(**cfg))


def _qa(question: str, answer: str) -> list[tuple[str, str]]:
    return [("user", question), ("assistant", answer)]


def _edit(text: str, positions: list[int], tag: str) -> str:
    words = text.split()
    for p in positions:
        words[p] = f"{tag}{p}"
    return " ".join(words)


# --- exact duplicates -------------------------------------------------------------------


def test_case_whitespace_and_punctuation_variants_are_exact_duplicates_in_one_cluster() -> None:
    d = _run(
        [
            _qa("What is the capital of France?", "Paris is the capital."),
            _qa("  what IS the capital   of france", "paris, is the capital!!"),
            _qa("What is the capital of France?\n", "Paris... is the capital"),
        ]
    )
    assert d["exact_key"].n_unique() == 1
    assert d["is_exact_duplicate"].all()
    assert d["dup_cluster_size"].to_list() == [3, 3, 3]
    assert d["near_dup_jaccard"].to_list() == [1.0, 1.0, 1.0]
    assert not d["is_near_duplicate"].any(), "exact copies alone are not near duplicates"


def test_unicode_case_and_typographic_punctuation_do_not_matter() -> None:
    d = _run(
        [
            _qa("Where is the CAFÉ “Zoë”?", "Über die Straße — links…"),
            _qa("where is the café zoë", "über die straße links"),
        ]
    )
    assert d["exact_key"].n_unique() == 1


def test_different_words_roles_or_turn_split_give_different_exact_keys() -> None:
    base = _qa("Name a primary colour.", "Red is a primary colour.")
    d = _run(
        [
            base,
            _qa("Name a primary colour.", "Blue is a primary colour."),  # one word differs
            [("assistant", base[0][1]), ("user", base[1][1])],  # roles swapped
            [("system", "Be brief."), *base],  # extra system turn
            _qa("Name a primary", "colour. Red is a primary colour."),  # same words, other split
        ]
    )
    assert d["exact_key"].n_unique() == 5
    assert not d["is_exact_duplicate"].any()


def test_tokens_never_run_across_a_turn_boundary() -> None:
    # Without the split at the boundary "abc" + "def" would hash as the one word "abcdef".
    d = _run([_qa("abc", "def"), _qa("abc ", " def"), _qa("abcdef", "x")])
    keys = d["exact_key"].to_list()
    assert keys[0] == keys[1] != keys[2]


def test_long_tokens_hash_every_byte() -> None:
    blob = "".join(chr(97 + (i * 7919) % 26) for i in range(200_000))  # one 200 kB "word"
    d = _run(
        [
            _qa("file?", blob),
            _qa("FILE", blob.upper()),
            _qa("file?", blob[:-1] + "0"),  # last byte differs
            _qa("file?", blob[:-8]),  # one 8-byte word shorter
            _qa("file?", blob[:9]),
            _qa("file?", blob[:8]),
        ]
    )
    keys = d["exact_key"].to_list()
    assert keys[0] == keys[1]
    assert len(set(keys[1:])) == 5


def test_exact_keys_are_pinned() -> None:
    # exact_key values are published and compared across runs: any change to the
    # normalisation, tokenisation or hashing must show up here, not silently in the data.
    convs = [
        _qa("What is the capital of France?", "Paris."),
        [("system", "Be brief."), ("user", "İstanbul’s ΣΟΦΙΑ — “café” naïve"),
         ("assistant", "日本語のテキスト 😀 ok_1")],
        [("user", "abc"), ("assistant", "def"), ("user", ""), ("tool", '{"x": 12345678901234567}')],
        [("user", "supercalifragilisticexpialidocious antidisestablishmentarianism 123456789")],
        [],
        [("assistant", "!!! ... ---")],
    ]
    tools = [None, '[{"name": "get_weather", "parameters": {}}]', "", "[]", None, '[{"name": "f"}]']
    d = find_duplicates(frame_from_conversations(convs, tools=tools))
    assert d["exact_key"].to_list() == [
        "899dba37a0749878002836fbb46a64cb",
        "9f935ad9630cfaaf67ea1ee83bc0cbf7",
        "089b2e14ac10c94f20fb65c40e2afa66",
        "dbc7425e1fb1de8cc7f7a8e6ec8568f8",
        "61269d3cd0c9f56a9a80874fbafa4d3b",
        "d54a8a7f1a8c11ea50ef85c61ac79bf1",
    ]


def test_exact_duplicates_are_found_across_sources() -> None:
    conv = [_qa("Translate 'cat' to French.", "Chat.")]
    frame = pl.concat(
        [
            frame_from_conversations(conv, source="alpaca"),
            frame_from_conversations(conv, source="dolly"),
            frame_from_conversations([_qa("Translate 'dog' to French.", "Chien.")], source="x"),
        ]
    )
    d = find_duplicates(frame)
    assert d["is_exact_duplicate"].to_list() == [True, True, False]
    assert d["dup_cluster_id"][0] == d["dup_cluster_id"][1] != d["dup_cluster_id"][2]


def test_tools_schema_counts_in_the_exact_key_only_when_configured() -> None:
    conv = _qa("Book a table for two.", "Booked for 7pm.")
    frame = frame_from_conversations(
        [conv, conv, conv, conv],
        tools=['[{"name": "book"}]', '[{"name": "reserve"}]', None, "[]"],
    )
    with_tools = find_duplicates(frame, DedupConfig(key_includes_tools=True))
    keys = with_tools["exact_key"].to_list()
    assert len({keys[0], keys[1], keys[2]}) == 3
    assert keys[2] == keys[3], "a null and an empty tool list are the same"
    # Same dialogue under other tools: a near duplicate (same MinHash text), one cluster.
    assert with_tools["is_near_duplicate"].to_list() == [True, True, True, True]
    assert with_tools["dup_cluster_size"].to_list() == [4, 4, 4, 4]
    without = find_duplicates(frame, DedupConfig(key_includes_tools=False))
    assert without["exact_key"].n_unique() == 1
    assert not without["is_near_duplicate"].any()


# --- near duplicates --------------------------------------------------------------------


def test_a_one_word_edit_of_a_long_paragraph_is_a_near_duplicate() -> None:
    edited = _edit(PARAGRAPH, [100], "changed")
    d = _run([_qa("Tell me a story.", PARAGRAPH), _qa("Tell me a story.", edited)])
    assert not d["is_exact_duplicate"].any()
    assert d["is_near_duplicate"].all()
    assert d["dup_cluster_id"].n_unique() == 1
    assert all(j >= 0.8 for j in d["near_dup_jaccard"].to_list())


def test_two_different_texts_on_the_same_topic_are_not_near_duplicates() -> None:
    d = _run(
        [
            _qa(
                "Tell me about dogs.",
                "Dogs are loyal animals that have lived alongside humans for thousands of"
                " years. They come in hundreds of breeds, from tiny chihuahuas to great"
                " danes, and are kept as pets, working animals and companions.",
            ),
            _qa(
                "Tell me about dogs.",
                "Domestic dogs descend from wolves and were the first animals people tamed."
                " Today they herd sheep, guide blind people, detect drugs and explosives,"
                " and mostly live in homes as much-loved family pets.",
            ),
        ]
    )
    assert not d["is_near_duplicate"].any()
    assert not d["is_exact_duplicate"].any()
    assert d["dup_cluster_size"].to_list() == [1, 1]
    assert d["near_dup_jaccard"].to_list() == [None, None]
    assert d["dup_cluster_id"].to_list() == d["exact_key"].to_list(), "a singleton's own key"


def test_system_prompts_and_tool_results_stay_out_of_the_minhash_text() -> None:
    d = _run(
        [
            [("system", "You are a pirate."), *_qa("Say hi.", "Hello there friend.")],
            [("system", "You are a lawyer."), *_qa("Say hi.", "Hello there friend.")],
        ]
    )
    assert not d["is_exact_duplicate"].any()
    assert d["is_near_duplicate"].all()
    assert d["near_dup_jaccard"].to_list() == [1.0, 1.0]


def test_near_duplicate_chains_cluster_transitively() -> None:
    # A -> B -> C -> D -> E, each step changing 6 far-apart words of a ~340-word text:
    # neighbours have Jaccard ~0.84, the two ends ~0.47 (checked below with plain Python).
    steps = [PARAGRAPH]
    for s in range(4):
        steps.append(_edit(steps[-1], [10 + 55 * k + 11 * s for k in range(6)], f"s{s}x"))
    cfg = {"jaccard_threshold": 0.7}
    assert _true_jaccard(steps[0], steps[1]) > 0.8
    assert _true_jaccard(steps[0], steps[4]) < 0.6
    chain = _run([_qa("Story?", t) for t in steps], **cfg)
    assert chain["dup_cluster_id"].n_unique() == 1
    assert chain["dup_cluster_size"].to_list() == [5] * 5
    ends = _run([_qa("Story?", steps[0]), _qa("Story?", steps[4])], **cfg)
    assert ends["dup_cluster_id"].n_unique() == 2, "the ends alone are not similar enough"


def test_exact_and_near_links_join_one_cluster() -> None:
    near = _edit(PARAGRAPH, [50], "other")
    d = _run(
        [
            _qa("Story?", PARAGRAPH),
            _qa("STORY", PARAGRAPH.upper()),  # exact copy of row 0
            _qa("Story?", near),  # near copy of row 0
            _qa("story!", near + " "),  # exact copy of row 2
            _qa("Unrelated?", "Completely different words here, nothing shared at all."),
        ]
    )
    assert d["dup_cluster_size"].to_list() == [4, 4, 4, 4, 1]
    assert d["is_exact_duplicate"].to_list() == [True, True, True, True, False]
    assert d["is_near_duplicate"].to_list() == [True, True, True, True, False]
    cluster = d["dup_cluster_id"][0]
    assert cluster == min(d["exact_key"].to_list()[:4]), "cluster id is the smallest member key"


def test_texts_without_words_only_match_exactly() -> None:
    d = _run([_qa("???", "!!!"), _qa("...", "!"), _qa("?", "ok")])
    # Punctuation-only turns normalise to nothing, so the first two are the same conversation.
    assert d["is_exact_duplicate"].to_list() == [True, True, False]
    assert not d["is_near_duplicate"].any()


# --- representatives --------------------------------------------------------------------


def test_representative_is_best_scored_then_smallest_key() -> None:
    convs = [_qa("Q one?", "Same answer.")] * 3 + [_qa("Other question?", "Other answer.")]
    frame = frame_from_conversations(convs)
    dups = find_duplicates(frame)
    ids = frame["example_id"].to_list()

    plain = pick_representatives(dups)
    assert plain.columns == [*DEDUP_SCHEMA.names(), "is_dup_representative"]
    assert plain["example_id"].to_list() == ids, "rows keep their order"
    smallest = min(ids[:3])
    assert plain.filter("is_dup_representative")["example_id"].sort().to_list() == sorted(
        [smallest, ids[3]]
    )

    scores = pl.DataFrame(
        {"source": ["test"] * 4, "example_id": ids, "quality_score": [0.2, 0.9, None, 0.1]}
    )
    scored = pick_representatives(dups, scores)
    assert scored["is_dup_representative"].to_list() == [False, True, False, True]

    tied = scores.with_columns(quality_score=pl.lit(0.5))
    by_key = pick_representatives(dups, tied).filter("is_dup_representative")
    assert sorted(by_key["example_id"].to_list()) == sorted([smallest, ids[3]])

    nan_first = scores.with_columns(quality_score=pl.Series([float("nan"), 0.1, 0.3, 0.0]))
    rep = pick_representatives(dups, nan_first).filter("is_dup_representative")
    assert ids[2] in rep["example_id"].to_list(), "NaN scores rank last, not first"


def test_exactly_one_representative_per_cluster_on_real_data() -> None:
    dups = find_duplicates(
        frame_from_conversations(alpaca_conversations(str(ALPACA)), source="alpaca")
    )
    reps = pick_representatives(dups)
    per_cluster = reps.group_by("dup_cluster_id").agg(pl.col("is_dup_representative").sum())
    assert per_cluster["is_dup_representative"].to_list() == [1] * per_cluster.height


def test_scores_with_repeated_keys_are_rejected() -> None:
    frame = frame_from_conversations([_qa("a b c", "d e f")])
    dups = find_duplicates(frame)
    scores = pl.DataFrame(
        {
            "source": ["test", "test"],
            "example_id": [frame["example_id"][0]] * 2,
            "quality_score": [1.0, 2.0],
        }
    )
    with pytest.raises(pl.exceptions.ComputeError):
        pick_representatives(dups, scores)


# --- real files ---------------------------------------------------------------------------


def test_alpaca_demo_has_14_exact_duplicate_copies() -> None:
    records = json.loads(ALPACA.read_text(encoding="utf-8"))
    counts = collections.Counter((r["instruction"], r["input"], r["output"]) for r in records)
    members = sum(c for c in counts.values() if c > 1)
    copies = sum(c - 1 for c in counts.values() if c > 1)
    assert (members, copies) == (27, 14)

    d = find_duplicates(
        frame_from_conversations(alpaca_conversations(str(ALPACA)), source="alpaca")
    )
    exact = d.filter("is_exact_duplicate")
    assert exact.height == members
    # copies = duplicate members minus one representative per exact key
    assert exact.height - exact["exact_key"].n_unique() == copies
    assert d.height - d["dup_cluster_id"].n_unique() == copies, "no near duplicates beyond"


def _glaive() -> tuple[list[dict], pl.DataFrame]:
    records = json.loads(GLAIVE.read_text(encoding="utf-8"))
    convs = [[(SHAREGPT_ROLES[t["from"]], t["value"]) for t in r["conversations"]] for r in records]
    frame = frame_from_conversations(
        convs, source="glaive", source_format="sharegpt", tools=[r.get("tools") for r in records]
    )
    return records, frame


def test_glaive_toolcall_demo_has_35_exact_duplicate_copies_counting_tools() -> None:
    records, frame = _glaive()
    whole = collections.Counter(json.dumps(r, sort_keys=True) for r in records)
    assert sum(c - 1 for c in whole.values()) == 35
    talk = collections.Counter(json.dumps(r["conversations"]) for r in records)
    assert sum(c - 1 for c in talk.values()) == 38  # 3 more copies differ only in `tools`

    d = find_duplicates(frame, DedupConfig(key_includes_tools=True))
    exact = d.filter("is_exact_duplicate")
    assert exact.height - exact["exact_key"].n_unique() == 35
    d = find_duplicates(frame, DedupConfig(key_includes_tools=False))
    exact = d.filter("is_exact_duplicate")
    assert exact.height - exact["exact_key"].n_unique() == 38


def test_glaive_copies_that_differ_only_in_tools_are_near_duplicates() -> None:
    records, frame = _glaive()
    by_talk: dict[str, list[int]] = collections.defaultdict(list)
    for i, r in enumerate(records):
        by_talk[json.dumps(r["conversations"])].append(i)
    tool_variants = [
        rows for rows in by_talk.values() if len({records[i]["tools"] for i in rows}) > 1
    ]
    assert len(tool_variants) == 3
    d = find_duplicates(frame).with_row_index("row")
    for rows in tool_variants:
        group = d.filter(pl.col("row").is_in(rows))
        assert group["is_near_duplicate"].all()
        assert group["near_dup_jaccard"].to_list() == [1.0] * len(rows)
        assert group["dup_cluster_id"].n_unique() == 1


# --- determinism and shape ----------------------------------------------------------------


def test_shuffled_input_gives_identical_output_after_sorting() -> None:
    convs = alpaca_conversations(str(ALPACA))[:300]
    convs += [
        _qa("Story?", PARAGRAPH),
        _qa("story", PARAGRAPH),
        _qa("S?", _edit(PARAGRAPH, [7], "z")),
    ]
    convs += convs[:20]  # more exact copies
    frame = pl.concat(
        [
            frame_from_conversations(convs[: len(convs) // 2], source="a"),
            frame_from_conversations(convs[len(convs) // 2 :], source="b"),
        ]
    )
    key = ["source", "example_id"]
    first = find_duplicates(frame).sort(key)
    shuffled = find_duplicates(frame.sample(fraction=1.0, shuffle=True, seed=7)).sort(key)
    assert first.equals(shuffled)
    tiny_chunks = find_duplicates(frame, DedupConfig(chunk_bytes=1024, workers=1)).sort(key)
    assert first.equals(tiny_chunks), "batching and threads never change results"
    reps = pick_representatives(first).sort(key)
    assert reps.equals(pick_representatives(shuffled.reverse()).sort(key))


def test_output_has_one_row_per_input_in_order_with_the_schema() -> None:
    frame = frame_from_conversations([_qa("a", "b"), _qa("c", "d")])
    d = find_duplicates(frame)
    assert d.schema == DEDUP_SCHEMA
    assert d["example_id"].to_list() == frame["example_id"].to_list()
    empty = find_duplicates(frame.head(0))
    assert empty.schema == DEDUP_SCHEMA and empty.height == 0


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        DedupConfig(jaccard_threshold=0)
    with pytest.raises(ValueError):
        DedupConfig(text_roles=("narrator",))
    assert DedupConfig().num_hashes == 112


def _true_jaccard(a: str, b: str, n: int = 5) -> float:
    def shingles(text: str) -> set[tuple[str, ...]]:
        words = re.findall(r"\w+", text.lower())
        return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}

    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)
