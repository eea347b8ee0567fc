"""Text extraction from canonical messages, and the shared code detector."""

from __future__ import annotations

import polars as pl
import pytest

from instruct_assets.lib.quality import text as T
from tests.lib._frames import frame_from_conversations


def _texts(conversations):
    return T.with_text_columns(frame_from_conversations(conversations))


def test_single_turn_prompt_and_response_are_the_two_turns():
    row = _texts([[("user", "What is 2+2?"), ("assistant", "4")]]).row(0, named=True)
    assert row["system_prompt"] is None
    assert row["first_user"] == row["last_user"] == row["user_text"] == "What is 2+2?"
    assert row["response"] == row["assistant_text"] == "4"
    assert (row["n_messages"], row["n_turns"]) == (2, 1)


def test_a_chat_keeps_first_and_last_user_turns_apart_and_joins_the_rest():
    conv = [
        ("system", "Be brief."),
        ("user", "Hi"),
        ("assistant", "Hello!"),
        ("user", "Tell me a joke"),
        ("assistant", "No."),
    ]
    row = _texts([conv]).row(0, named=True)
    assert row["system_prompt"] == "Be brief."
    assert row["first_user"] == "Hi"
    assert row["last_user"] == "Tell me a joke"
    assert row["user_text"] == "Hi\n\nTell me a joke"
    assert row["assistant_text"] == "Hello!\n\nNo."
    assert row["response"] == "No."
    assert row["n_turns"] == 2


def test_a_conversation_without_assistant_turn_has_a_null_response():
    row = _texts([[("user", "Hello?")]]).row(0, named=True)
    assert row["response"] is None
    assert row["assistant_text"] == ""


def test_role_counts_and_characters_are_per_role():
    frame = frame_from_conversations(
        [[("system", "abc"), ("user", "hello"), ("assistant", "  "), ("tool", "{}")]]
    )
    out = frame.select(
        T.role_chars("user").alias("u"),
        T.role_chars("system").alias("s"),
        T.n_role("assistant").alias("na"),
        T.has_nonempty_role("assistant").alias("trainable"),
    ).row(0, named=True)
    assert out == {"u": 5, "s": 3, "na": 1, "trainable": False}


@pytest.mark.parametrize(
    "text",
    [
        "def f(x):\n    return x",
        "```python\nprint(1)\n```",
        "for (int i = 0; i < n; i++) {\n  sum += i;\n}",
        "SELECT name\nFROM users",
        "my_list.remove(3)",
        "<a href='x'>link</a>",
        "#!/bin/bash\nmkdir test",
        "Module Module1\n Sub Main()\n End Sub\nEnd Module",
    ],
)
def test_code_is_recognised_in_many_languages(text):
    assert pl.DataFrame({"t": [text]}).select(T.has_code("t")).item()


@pytest.mark.parametrize(
    "text",
    [
        "The cat sat on the mat.",
        "Return the book to the library by Friday.",
        "Select the option from the menu.",
        "Speed = distance / time",
        "Photosynthesis (in plants) turns light into sugar.",
        "1. Apples\n2. Pears",
    ],
)
def test_prose_and_formulas_are_not_code(text):
    assert not pl.DataFrame({"t": [text]}).select(T.has_code("t")).item()


def test_fenced_code_and_inline_code_are_removed_from_prose():
    text = "Use `x = 1` then:\n```python\nprint({name})\n```\nDone."
    out = pl.DataFrame({"t": [text]}).select(T.without_fenced_code("t")).item()
    assert "{name}" not in out and "x = 1" not in out and "Done." in out


def test_code_line_stages_cap_the_code_line_count_at_two():
    texts = [
        None,
        "",
        "Plain prose.",
        "return x;",
        "def f():\n    return 1\n",
        "x = 1\ny = 2\nprint(x)",
        "for i in range(3):\n  pass",
        "[1, 2] do |x| y end",
        "Call me;\nok",
    ]
    frame = pl.DataFrame({"t": texts}, schema={"t": pl.String})
    for stage in T.code_line_stages("t", "capped"):
        frame = frame.with_columns(stage)
    expected = frame.select(T.code_line_count("t").clip(upper_bound=2))
    assert frame["capped"].to_list() == expected.to_series().to_list()
    assert frame["capped"].dtype == pl.Int32
