"""Complexity tiers: written cases for each feature (hits and misses) and real-data ordering."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest

from instruct_assets.lib.complexity import (
    FEATURE_COLUMNS,
    TIERS,
    ComplexityConfig,
    score_complexity,
)
from tests.lib._frames import alpaca_conversations, frame_from_conversations

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"
BBH_DIR = REAL / "suzgunmirac__BIG-Bench-Hard" / "cot-prompts"


def bbh_blocks() -> list[tuple[str, str, str]]:
    """(task, question, answer) for every Q:/A: block of the BBH CoT prompt files."""
    out = []
    for path in sorted(BBH_DIR.glob("*.txt")):
        body = path.read_text(encoding="utf-8").split("-----", 1)[1]  # canary + header
        for block in re.split(r"\n\s*\n(?=Q: )", body.strip()):
            if not block.startswith("Q: "):
                continue  # the task description line
            question, answer = block[3:].split("\nA: ", 1)
            out.append((path.stem, question.strip(), answer.strip()))
    return out


def one(user: str, assistant: str = "OK.") -> dict:
    """Score a single-turn example and return its row as a dict."""
    frame = frame_from_conversations([[("user", user), ("assistant", assistant)]])
    return score_complexity(frame).row(0, named=True)


def conversation(turns: list[tuple[str, str]], tools: str | None = None) -> dict:
    frame = frame_from_conversations([turns], tools=[tools] if tools else None)
    return score_complexity(frame).row(0, named=True)


# --- the three anchor examples ------------------------------------------------------------


def test_translating_one_sentence_is_simple():
    row = one("Translate this sentence to Spanish: Hello world", "Hola mundo")
    assert row["complexity_tier"] == "simple"
    assert row["n_directives"] == 1
    assert row["reasoning_demands"] == 0
    assert row["n_constraints"] == 0


def test_translate_then_summarize_in_one_sentence_is_medium():
    row = one(
        "Translate the paragraph to Spanish, then summarize it in one sentence",
        "Traducción: El equipo terminó el proyecto a tiempo a pesar de varios retrasos, y el "
        "cliente quedó muy satisfecho con el resultado final.\n\nResumen: El equipo entregó "
        "el proyecto a tiempo y el cliente quedó satisfecho.",
    )
    assert row["complexity_tier"] == "medium"
    assert row["n_directives"] == 2  # translate, then summarize
    assert row["n_constraints"] == 1  # in one sentence


def test_finding_explaining_and_fixing_bugs_is_complex():
    row = one(
        "Given this code snippet, identify bugs, explain why they're bugs, and provide "
        "corrected code with comments",
        "There are two bugs:\n\n1. The loop uses `<=`, so it reads past the end of the list.\n"
        "2. `total` is never initialised.\n\n```python\ndef total(xs):\n    total = 0  # start "
        "from zero\n    for i in range(len(xs)):  # stop before len(xs)\n        total += xs[i]"
        "\n    return total\n```",
    )
    assert row["complexity_tier"] == "complex"
    assert row["n_directives"] == 3  # identify, explain, provide
    assert row["reasoning_demands"] == 2  # identify, explain why
    assert row["response_structure"] == 3  # two list items and a code block


def test_the_three_examples_are_ordered_by_score():
    rows = score_complexity(
        frame_from_conversations(
            [
                [
                    ("user", "Translate this sentence to Spanish: Hello world"),
                    ("assistant", "Hola"),
                ],
                [
                    (
                        "user",
                        "Translate the paragraph to Spanish, then summarize it in one sentence",
                    ),
                    ("assistant", "Traducción: ... Resumen: ..."),
                ],
                [
                    (
                        "user",
                        "Given this code snippet, identify bugs, explain why they're bugs, and "
                        "provide corrected code with comments",
                    ),
                    ("assistant", "```python\nx = 1\n```"),
                ],
            ]
        )
    )
    scores = rows["complexity_score"].to_list()
    assert scores == sorted(scores)
    assert rows["complexity_tier"].cast(pl.String).to_list() == list(TIERS)


# --- features: what counts and what does not --------------------------------------------


def test_sequencing_words_and_imperative_clauses_count_as_directives():
    assert (
        one("Write a poem about rain. Then explain its meter, and finally give it a title.")[
            "n_directives"
        ]
        == 3
    )
    assert one("First list three fruits. Second, sort them by price.")["n_directives"] == 2
    assert one("1. Read the text\n2. Extract the names\n3. Sort them")["n_directives"] == 3


def test_a_plain_question_or_an_if_then_clause_is_one_directive():
    assert one("What is the capital of France?")["n_directives"] == 1
    assert one("If x is 3 then what is 2x?")["n_directives"] == 1
    # labels such as "Output:" and code lines such as "return" are not directives
    assert one("Fix this.\nOutput: 6\nreturn a + b;")["n_directives"] == 1


def test_reasoning_demands_are_counted_once_per_phrase():
    row = one("Explain why the sky is blue and compare it with a sunset, step by step.")
    assert row["reasoning_demands"] == 3  # explain why / compare / step by step
    assert one("Compare and contrast cats and dogs.")["reasoning_demands"] == 1
    assert one("Tell me a joke about cats.")["reasoning_demands"] == 0
    assert one("Write a haiku about the sea.")["reasoning_demands"] == 0


@pytest.mark.parametrize(
    "prompt",
    [
        "Describe Paris in JSON.",
        "Summarize the article in 50 words.",
        "Explain gravity for a 5-year-old.",
        "List the planets as bullet points.",
        "Answer in one sentence.",
        "Write an email in a formal tone.",
        "Describe a cat without using the letter e.",
        "Keep it short: what is DNA?",
    ],
)
def test_each_format_length_audience_or_tone_constraint_is_found(prompt):
    assert one(prompt)["n_constraints"] >= 1


@pytest.mark.parametrize(
    "prompt",
    [
        "Parse this JSON string and tell me the keys.",
        "Write a story about a one-eyed cat.",
        "Who wrote the Odyssey?",
        "Name the largest planet.",
    ],
)
def test_mentions_that_are_not_constraints_are_not_counted(prompt):
    assert one(prompt)["n_constraints"] == 0


def test_multiple_choice_options_are_one_constraint():
    prompt = "Which is a mammal?\nOptions:\n(A) shark\n(B) whale\n(C) trout"
    assert one(prompt)["n_constraints"] == 1
    assert one("Which is a mammal: a shark or a whale?")["n_constraints"] == 0


def test_code_in_the_prompt_is_detected_but_talk_about_functions_is_not():
    assert one("What does this do?\ndef f(x):\n    return x * 2")["has_code_in_prompt"]
    assert one("Fix the query: SELECT name FROM users WHERE id = 3")["has_code_in_prompt"]
    assert one("Explain this:\n```js\nconsole.log(1)\n```")["has_code_in_prompt"]
    assert not one("Describe the function of the heart.")["has_code_in_prompt"]
    assert not one("Select the best option from the list below.")["has_code_in_prompt"]


def test_math_in_the_prompt_is_detected_but_dates_and_counts_are_not():
    assert one("What is 12 * 7?")["has_math_in_prompt"]
    assert one("Solve for x: 2x + 3 = 11")["has_math_in_prompt"]
    assert one("((-5 + 9 * -4 - 0) * (4 + -7)) =")["has_math_in_prompt"]
    assert not one("Today is 12/14/1937. What day of the week is it?")["has_math_in_prompt"]
    assert not one("Name 3 rivers in Europe.")["has_math_in_prompt"]


def test_response_structure_counts_lists_headers_and_code_blocks():
    structured = "## Steps\n- mix\n- bake\n1. cool\n\n```\nprint(1)\n```"
    assert one("How?", structured)["response_structure"] == 5  # header, 3 items, 1 block
    assert (
        one("How?", "Mix the flour, then bake it - about 2-3 minutes.")["response_structure"] == 0
    )


def test_response_chars_and_reasoning_steps():
    row = one("Why?", "Let's think step by step.\nSo the answer is 4.\nThe sky is blue.")
    assert row["response_steps"] == 2
    assert row["response_chars"] == len(
        "Let's think step by step.\nSo the answer is 4.\nThe sky is blue."
    )


# --- multi-turn patterns -------------------------------------------------------------------


def test_single_turn_example_is_single_turn():
    assert one("Hi")["multi_turn_pattern"] == "single_turn"
    assert one("Hi")["n_turns"] == 1


def test_unrelated_questions_in_one_chat_are_independent_turns():
    row = conversation(
        [
            ("user", "What is the capital of France?"),
            ("assistant", "Paris."),
            ("user", "How many legs does a spider have?"),
            ("assistant", "Eight."),
        ]
    )
    assert row["multi_turn_pattern"] == "independent_turns"
    assert row["n_turns"] == 2


def test_a_turn_that_refers_back_is_a_follow_up():
    row = conversation(
        [
            ("user", "Write a haiku about autumn."),
            (
                "assistant",
                "Red leaves drift and fall\nA cold wind hums through bare trees\nThe year exhales",
            ),
            ("user", "Now make it about winter."),
            ("assistant", "White hush on the hills\n..."),
        ]
    )
    assert row["multi_turn_pattern"] == "follow_up"


def test_an_answered_question_from_the_assistant_is_a_clarification():
    row = conversation(
        [
            ("user", "Book me a flight to Rome."),
            ("assistant", "Sure - which city are you flying from?"),
            ("user", "From Boston, next Friday."),
            ("assistant", "Done: BOS to FCO on Friday."),
        ]
    )
    assert row["multi_turn_pattern"] == "clarification"


def test_a_greeting_offer_is_not_a_clarification():
    row = conversation(
        [
            ("user", "Hi"),
            ("assistant", "Hello! How can I help you today?"),
            ("user", "Tell me the capital of Peru"),
            ("assistant", "Lima."),
        ]
    )
    assert row["multi_turn_pattern"] == "independent_turns"


def test_tool_turns_make_tool_use_and_raise_the_score():
    tools = json.dumps([{"name": "get_weather", "parameters": {"city": "string"}}])
    turns = [
        ("user", "What's the weather in Oslo?"),
        ("assistant", json.dumps({"name": "get_weather", "arguments": {"city": "Oslo"}})),
        ("tool", json.dumps({"temp_c": -3})),
        ("assistant", "It is -3°C in Oslo."),
    ]
    row = conversation(turns, tools)
    assert row["multi_turn_pattern"] == "tool_use"
    plain = one("What's the weather in Oslo?", "It is -3°C in Oslo.")
    assert row["complexity_score"] > plain["complexity_score"]


# --- contract -----------------------------------------------------------------------------


def test_output_has_one_row_per_example_in_input_order_and_is_deterministic():
    convs = [[("user", f"Question {i}? Explain why."), ("assistant", "x" * i)] for i in range(50)]
    frame = frame_from_conversations(convs)
    a = score_complexity(frame)
    b = score_complexity(frame)
    assert a.equals(b)
    assert a["example_id"].to_list() == frame["example_id"].to_list()
    assert a.columns == [
        "source",
        "example_id",
        *FEATURE_COLUMNS,
        "complexity_score",
        "complexity_tier",
    ]
    assert a.schema["complexity_tier"] == pl.Enum(list(TIERS))


def test_thresholds_and_weights_come_from_the_config():
    frame = frame_from_conversations([[("user", "Translate: hi"), ("assistant", "hola")]])
    assert score_complexity(frame)["complexity_tier"][0] == "simple"
    eager = ComplexityConfig(medium_threshold=0.001, complex_threshold=0.002)
    assert score_complexity(frame, eager)["complexity_tier"][0] == "complex"
    with pytest.raises(ValueError):
        ComplexityConfig(medium_threshold=5.0, complex_threshold=2.0)


# --- real data ----------------------------------------------------------------------------


def test_bbh_multi_step_prompts_rank_above_single_line_translation_and_classification():
    blocks = bbh_blocks()
    assert len(blocks) >= 12
    bbh = score_complexity(
        frame_from_conversations([[("user", q), ("assistant", a)] for _, q, a in blocks])
    )
    alpaca = alpaca_conversations(str(REAL / "hiyouga__LLaMA-Factory" / "alpaca_en_demo.json"))
    easy = [
        conv
        for conv in alpaca
        if re.match(r"(Translate|Classify)\b", conv[0][1])
        and "\n" not in conv[0][1].split("\n\n")[0]
    ]
    assert len(easy) >= 5
    simple = score_complexity(frame_from_conversations(easy))
    assert bbh["complexity_score"].mean() > simple["complexity_score"].mean() + 1.0
    at_least_medium = bbh.filter(pl.col("complexity_tier") != "simple").height
    assert at_least_medium / bbh.height >= 2 / 3


def test_alpaca_demo_spreads_over_all_three_tiers_with_simple_the_largest():
    alpaca = alpaca_conversations(str(REAL / "hiyouga__LLaMA-Factory" / "alpaca_en_demo.json"))
    tiers = score_complexity(frame_from_conversations(alpaca))["complexity_tier"].value_counts()
    counts = dict(zip(tiers["complexity_tier"].cast(pl.String), tiers["count"], strict=True))
    assert set(counts) == set(TIERS)
    assert counts["simple"] > counts["medium"] > counts["complex"] > 0


def _sharegpt(path: Path) -> list[list[tuple[str, str]]]:
    roles = {"human": "user", "gpt": "assistant", "function_call": "assistant"}
    roles |= {"observation": "tool", "system": "system"}
    return [
        [(roles[t["from"]], t["value"]) for t in rec["conversations"]]
        for rec in json.loads(path.read_text(encoding="utf-8"))
    ]


def test_fastchat_identity_chats_have_no_follow_ups_or_clarifications():
    convs = _sharegpt(REAL / "lm-sys__FastChat" / "dummy_conversation.json")
    patterns = set(score_complexity(frame_from_conversations(convs))["multi_turn_pattern"])
    assert patterns == {"single_turn", "independent_turns"}


def test_glaive_conversations_with_observations_are_tool_use():
    convs = _sharegpt(REAL / "hiyouga__LLaMA-Factory" / "glaive_toolcall_en_demo.json")
    scored = score_complexity(frame_from_conversations(convs))
    has_tool = pl.Series([any(r == "tool" for r, _ in c) for c in convs])
    assert (scored["multi_turn_pattern"] == "tool_use").to_list() == has_tool.to_list()
    assert has_tool.sum() > 50


def _reference_texts(frame: pl.DataFrame) -> pl.DataFrame:
    """The documented prompt/response texts, built the plain way for every row."""
    role, content = pl.element().struct.field("role"), pl.element().struct.field("content")

    def joined(r: str) -> pl.Expr:
        return pl.col("messages").list.eval(content.filter(role == r)).list.join("\n")

    return frame.select(prompt_raw=joined("user"), response=joined("assistant"))


def test_turn_texts_take_every_turn_of_the_role_in_any_layout():
    from instruct_assets.lib.complexity import _texts

    convs = [
        [("user", "Hi"), ("assistant", "Hello")],
        [("system", "Be brief."), ("user", "One"), ("assistant", "A"), ("user", "Two"),
         ("assistant", "B")],
        [("assistant", "Only me")],
        [("user", "Only me")],
        [("user", "Q"), ("assistant", "call"), ("tool", "{}"), ("assistant", "done")],
        [("assistant", "first"), ("user", "late question")],
        [],
    ]
    frame = frame_from_conversations(convs).with_row_index("_row")
    got = _texts(frame.select("_row", "messages"))
    assert got.select("prompt_raw", "response").equals(_reference_texts(frame))
    assert got["n_turns"].to_list() == [1, 2, 0, 1, 1, 1, 0]
    assert got["_has_tool"].to_list() == [False, False, False, False, True, False, False]


def test_scores_do_not_depend_on_slicing_into_threads(monkeypatch):
    from instruct_assets.lib import parallel

    convs = [
        [("user", f"Explain why step {i} matters, then list 3 tips in JSON."),
         ("assistant", f"1. First\n2. So we know {i}\n```py\nx = {i}\n```")]
        for i in range(50)
    ] + [[("user", "Write a poem."), ("assistant", "Roses."), ("user", "Make it shorter."),
          ("assistant", "Ok?")]] * 3
    frame = frame_from_conversations(convs)
    whole = score_complexity(frame)
    monkeypatch.setattr(parallel, "MIN_SLICE_ROWS", 7)
    monkeypatch.setattr(pl, "thread_pool_size", lambda: 4)
    assert len(parallel.slices(frame)) == 4
    assert score_complexity(frame).equals(whole)
