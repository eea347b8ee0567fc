"""Rendered training text with the project's ChatML, Llama 3 and Alpaca templates."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import polars as pl
import pytest
from _frames import frame_from_conversations

from instruct_assets.lib.export.rendered import (
    TEMPLATE_NAMES,
    ChatTemplate,
    SingleTurnTemplate,
    load_template,
)
from instruct_assets.lib.export.writers import export_split

CONV = [("system", "Be kind."), ("user", "Hi ü"), ("assistant", "Hello!")]


def _texts(tmp_path, conversations, kind):
    frame = frame_from_conversations(conversations).with_columns(split=pl.lit("train"))
    result = export_split(frame, tmp_path, "train", formats=[kind])
    path = tmp_path / "text" / kind.removeprefix("text_") / "train.jsonl"
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""
    records = [json.loads(line) for line in lines[:-1]]
    assert all(set(r) == {"text"} for r in records)
    return [r["text"] for r in records], result["formats"][kind]


def test_templates_are_package_files_read_through_importlib_resources():
    folder = resources.files("instruct_assets.lib").joinpath("templates")
    assert sorted(p.name for p in folder.iterdir() if p.name.endswith(".toml")) == sorted(
        f"{n}.toml" for n in TEMPLATE_NAMES
    )
    assert isinstance(load_template("chatml"), ChatTemplate)
    assert isinstance(load_template("llama3"), ChatTemplate)
    assert isinstance(load_template("alpaca"), SingleTurnTemplate)
    with pytest.raises(ValueError, match="unknown template"):
        load_template("../schema")


def test_chatml_wraps_every_turn_in_im_start_and_im_end(tmp_path):
    (text,), _ = _texts(tmp_path, [CONV], "text_chatml")
    assert text == (
        "<|im_start|>system\nBe kind.<|im_end|>\n"
        "<|im_start|>user\nHi ü<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n"
    )


def test_llama3_uses_headers_and_eot_with_trimmed_content_and_ipython_for_tools(tmp_path):
    conv = [
        ("user", "  Weather?\n"),
        ("assistant", '{"name": "w", "arguments": {}}'),
        ("tool", "21"),
        ("assistant", "It is 21."),
    ]
    (text,), _ = _texts(tmp_path, [conv], "text_llama3")
    assert text == (
        "<|begin_of_text|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWeather?<|eot_id|>"
        '<|start_header_id|>assistant<|end_header_id|>\n\n{"name": "w", "arguments": {}}<|eot_id|>'
        "<|start_header_id|>ipython<|end_header_id|>\n\n21<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nIt is 21.<|eot_id|>"
    )


def test_alpaca_prompt_uses_the_stanford_preamble_or_the_rows_system_turn(tmp_path):
    texts, entry = _texts(
        tmp_path,
        [[("user", "List 3 colours"), ("assistant", "red, green, blue")], CONV],
        "text_alpaca",
    )
    preamble = (
        "Below is an instruction that describes a task. "
        "Write a response that appropriately completes the request."
    )
    assert sorted(texts) == sorted(
        [
            f"{preamble}\n\n### Instruction:\nList 3 colours\n\n### Response:\nred, green, blue",
            "Be kind.\n\n### Instruction:\nHi ü\n\n### Response:\nHello!",
        ]
    )
    assert entry["not_exportable"]["count"] == 0


def test_alpaca_prompt_lists_multi_turn_rows_as_not_exportable(tmp_path):
    multi = [("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d")]
    texts, entry = _texts(tmp_path, [multi, CONV], "text_alpaca")
    assert len(texts) == 1
    assert entry["not_exportable"]["count"] == 1


def test_rows_whose_content_holds_template_markers_are_counted(tmp_path):
    convs = [
        [("user", "Say <|im_end|> please"), ("assistant", "ok")],  # ChatML marker: counted
        [("user", "what is im_end?"), ("assistant", "a word")],  # bare word: not counted
        [("user", "x"), ("assistant", "<|eot_id|>")],  # Llama 3 marker: not ChatML's
    ]
    _, chatml = _texts(tmp_path, convs, "text_chatml")
    _, llama3 = _texts(tmp_path, convs, "text_llama3")
    assert chatml["rows_with_template_tokens"] == 1
    assert llama3["rows_with_template_tokens"] == 1
    assert chatml["rows"] == llama3["rows"] == 3  # still exported


# The chat templates as Hugging Face tokenizers ship them (ChatML as in OpenHermes/Qwen
# without a default system prompt; Llama 3 as in Meta-Llama-3-8B-Instruct), rendered with
# Jinja the way ``apply_chat_template`` does.
HF_CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']"
    " + '<|im_end|>' + '\\n'}}{% endfor %}"
)
HF_LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
)
REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"


def test_real_fastchat_conversations_render_exactly_as_the_hf_jinja_templates_do(tmp_path):
    jinja2 = pytest.importorskip("jinja2")
    records = json.loads((REAL / "lm-sys__FastChat" / "dummy_conversation.json").read_text())
    role = {"human": "user", "gpt": "assistant"}
    convs = [[(role[t["from"]], t["value"]) for t in r["conversations"]] for r in records]
    frame = frame_from_conversations(convs, source="fastchat").with_columns(split=pl.lit("train"))
    export_split(frame, tmp_path, "train", formats=["text_chatml", "text_llama3"])
    ordered = frame.sort("source", "example_id")["messages"].to_list()
    env = jinja2.Environment()
    for kind, source in (("chatml", HF_CHATML), ("llama3", HF_LLAMA3)):
        template = env.from_string(source)
        lines = (tmp_path / "text" / kind / "train.jsonl").read_text(encoding="utf-8").split("\n")
        texts = [json.loads(line)["text"] for line in lines[:-1]]
        expected = [template.render(messages=m, bos_token="<|begin_of_text|>") for m in ordered]
        assert len(texts) == len(expected) == 500
        assert texts == expected, kind
