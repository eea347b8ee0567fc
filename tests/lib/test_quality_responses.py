"""Response signals: empty, truncated, repetitive, templated, leaking, refusing, noisy."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from instruct_assets.lib.quality import responses as R
from instruct_assets.lib.quality.config import QualityThresholds
from instruct_assets.lib.quality.text import with_text_columns
from tests.lib._frames import alpaca_conversations, frame_from_conversations

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"
CFG = QualityThresholds()


def _score_frame(frame: pl.DataFrame) -> pl.DataFrame:
    texts = with_text_columns(frame).with_row_index("_row")
    return R.response_frame(texts, CFG).hstack(texts.select("first_user", "response"))


def _score(pairs: list[tuple[str, str]]) -> pl.DataFrame:
    return _score_frame(
        frame_from_conversations([[("user", p), ("assistant", r)] for p, r in pairs])
    )


def _flag(flag: str, prompt: str, response: str) -> bool:
    return bool(_score([(prompt, response)])[flag].item())


def _real_alpaca(*parts: str) -> pl.DataFrame:
    return frame_from_conversations(alpaca_conversations(str(REAL.joinpath(*parts))))


# --- empty_or_trivial_response -------------------------------------------------------------
@pytest.mark.parametrize(
    ("prompt", "response"),
    [
        ("Write a poem about cats.", ""),
        ("Write a poem about cats.", "   \n "),
        ("Summarize the article.", "N/A"),
        ("Write a poem about cats.", "ok"),
        ("Describe your favourite city.", "Yes."),
        ("Explain gravity.", "..."),
        ("Explain gravity.", "-"),
    ],
)
def test_empty_filler_and_bare_acknowledgements_are_trivial(prompt, response):
    assert _flag("empty_or_trivial_response", prompt, response)


@pytest.mark.parametrize(
    ("prompt", "response"),
    [
        ("What is 2+2?", "4"),
        ("Which option is correct, A or B?", "B"),
        ("Is the sky blue?", "Yes."),
        ("Detect if the two strings are anagrams or not.", "true"),
        ("Reply with OK if you understand.", "OK"),
        ("Which of these values is not a valid JSON data type: 'undefined'?", "undefined"),
        ("Name a primary colour.", "Red"),
    ],
)
def test_short_answers_that_fit_the_question_are_not_trivial(prompt, response):
    assert not _flag("empty_or_trivial_response", prompt, response)


def test_code_alpaca_empty_outputs_are_flagged_as_empty():
    out = _score_frame(_real_alpaca("sahil280114__codealpaca", "code_alpaca_2k.json"))
    empty = out.filter(pl.col("response").str.strip_chars() == "")
    assert empty.height == 2
    assert empty["empty_or_trivial_response"].all()
    assert out["empty_or_trivial_response"].sum() == 2  # and nothing else


# --- truncated_response --------------------------------------------------------------------
LONG = "The committee reviewed every proposal with great care and attention to detail. " * 4


@pytest.mark.parametrize(
    "response",
    [
        "Here is the code:\n```python\ndef f(x):\n    return x",
        '{"name": "Ada", "skills": ["math", "poetry"',
        LONG + "After the meeting, the members decided that the most important of",
        "Here are the ingredients you will need:",
    ],
)
def test_cut_off_responses_are_truncated(response):
    assert _flag("truncated_response", "Write something long.", response)


@pytest.mark.parametrize(
    "response",
    [
        LONG + "That was the end of it.",
        "Here is the code:\n```python\ndef f(x):\n    return x\n```",
        "- Keep a schedule\n- Avoid screens before bed\n- Keep the bedroom dark and quiet",
        LONG + "\n\nSincerely,\nJohn",
        LONG + "\n\nGet yourself a puppy and experience love like no other. #PuppyLove",
        "Paris",
        'def f(x):\n    return {"a": [x]}',
        "Output:\nname,age,city\r\nAda Lovelace,36,London and the surrounding countryside "
        "of England,Countess\r\n",
    ],
)
def test_complete_responses_are_not_truncated(response):
    assert not _flag("truncated_response", "Write something long.", response)


# --- repetition -----------------------------------------------------------------------------
def test_a_looping_response_is_repetitive_and_its_ratios_are_stored():
    loop = "I am here to help you with anything you need today.\n" * 12
    row = _score([("Say hello.", "Hello!\n" + loop)]).row(0, named=True)
    assert row["repetition"]
    assert row["dup_line_frac"] >= CFG.max_dup_line_frac
    assert row["dup_5gram_char_frac"] is not None and row["dup_5gram_char_frac"] > 0.5


def test_a_runaway_line_gets_exact_ngram_ratios():
    runaway = "the cat and the dog and " * 60
    row = _score([("Tell me a story.", runaway)]).row(0, named=True)
    assert row["top_2gram_char_frac"] >= CFG.max_top_2gram_char_frac
    assert row["repetition"]


@pytest.mark.parametrize(
    ("prompt", "response"),
    [
        (
            "Explain photosynthesis.",
            "Photosynthesis converts light into chemical energy. Plants capture sunlight with "
            "chlorophyll, split water, release oxygen and build sugars from carbon dioxide. "
            "The light reactions happen in the thylakoids; the Calvin cycle runs in the stroma. "
            "Without it, most life on Earth would lack both food and oxygen.",
        ),
        ("Write a Java loop.", "for (int i = 0; i < n; i++) {\n  x++;\n}\n}\n}\n}\n}\n}"),
        ("Write a song about rain.", ("Rain, rain, falling down on the town\n" * 6)),
        ("Write a screenplay.", "JENNY\nHi.\nBOB\nHello.\nJENNY\nBye.\nBOB\nBye now."),
    ],
)
def test_prose_code_songs_and_scripts_are_not_repetitive(prompt, response):
    assert not _flag("repetition", prompt, response)


# --- template_placeholder -------------------------------------------------------------------
@pytest.mark.parametrize(
    "response",
    [
        "Hello! I am {{name}}, an AI assistant developed by {{author}}.",
        "Best regards,\n[Your Name]",
        "Dear [Recipient's Name], thank you for your order.",
        "Set the key to <YOUR_API_KEY> in the settings page.",
        "Hello {name}, your order has shipped.",
    ],
)
def test_unrendered_placeholders_are_flagged(response):
    assert _flag("template_placeholder", "Write a short message.", response)


@pytest.mark.parametrize(
    ("prompt", "response"),
    [
        ("Write a Vue template.", "<template>\n  <p>{{ message }}</p>\n</template>"),
        ("Format a string in Python.", "```python\nprint(f'{name}')\n```"),
        ("Index a list.", "value = data[index]\nprint(value)"),
        ("What is x squared over two?", "It is $\\frac{x^{2}}{2}$ in LaTeX."),
        ("Cite a source.", "As shown in [1], the effect is small."),
        ("Write an email template for refunds.", "Dear [Customer Name], your refund..."),
        ("Say hi.", "Hi there! How can I help?"),
    ],
)
def test_braces_in_code_math_citations_and_requested_templates_are_not_placeholders(
    prompt, response
):
    assert not _flag("template_placeholder", prompt, response)


def test_identity_json_name_and_author_placeholders_are_all_flagged():
    path = REAL / "hiyouga__LLaMA-Factory" / "identity.json"
    records = json.loads(path.read_text(encoding="utf-8"))
    out = _score_frame(_real_alpaca("hiyouga__LLaMA-Factory", "identity.json"))
    with_braces = out["response"].str.contains("{{", literal=True)
    assert with_braces.sum() == sum("{{" in r["output"] for r in records) == 85
    assert out.filter(with_braces)["template_placeholder"].all()
    assert out.filter(~with_braces)["template_placeholder"].sum() == 0
    assert set(out.filter(with_braces)["placeholder"]) <= {"{{name}}", "{{author}}"}


def test_alpaca_demo_flags_only_rows_that_really_hold_placeholders():
    out = _score_frame(_real_alpaca("hiyouga__LLaMA-Factory", "alpaca_en_demo.json"))
    flagged = out.filter(pl.col("template_placeholder"))
    assert 1 <= flagged.height <= 10
    for row in flagged.iter_rows(named=True):
        ph = row["placeholder"]
        assert ph in row["response"] and ph.startswith("[") and ph.endswith("]")
    prompts = flagged["first_user"].to_list()
    assert "Generate an appropriate closing to a business email." in prompts
    # asked for a template: placeholders are the point
    assert not any(p.startswith("Generate an appropriate template") for p in prompts)


# --- special_token_leak ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "Sure!<|endoftext|>",
        "Answer.</s>",
        "<s>[INST] hi [/INST]",
        "<|im_start|>assistant\nhello<|im_end|>",
        "Done<|eot_id|>",
        "<|begin_of_text|>Hi",
        "The word is <unk> here.",
        "Text<pad><pad>",
        "Fine.\n### Instruction:\nDo more.",
    ],
)
def test_special_tokens_in_the_response_leak(text):
    row = _score([("Say something.", text)]).row(0, named=True)
    assert row["special_token_leak"]
    assert row["special_token"] in text


def test_special_tokens_in_the_prompt_leak_too():
    assert _flag("special_token_leak", "<|im_start|>user\nhi", "Hello!")


@pytest.mark.parametrize(
    "text",
    ["Use <strong> tags for bold.", "BERT adds a [CLS] token.", "a < b and c > d", "Hi!"],
)
def test_ordinary_markup_is_not_a_special_token(text):
    assert not _flag("special_token_leak", "Explain.", text)


# --- refusal_boilerplate --------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "As an AI language model, I cannot have opinions.",
        "I'm sorry, but I cannot help with that request.",
        "As a large language model, I don't browse the web.",
        "As an AI, I don't have personal experiences.",
        "I’m sorry, but I can’t assist with that.",
        "My knowledge cutoff is 2021.",
    ],
)
def test_ai_disclaimers_and_refusals_are_boilerplate(text):
    assert _flag("refusal_boilerplate", "Tell me.", text)


@pytest.mark.parametrize(
    "text",
    [
        "I can't wait to visit Rome!",
        "The AI model was trained on images.",
        "Sorry for the late reply, here is the answer: 42.",
        "I am an AI assistant developed by ACME. How can I help?",
    ],
)
def test_ordinary_sentences_are_not_refusals(text):
    assert not _flag("refusal_boilerplate", "Tell me.", text)


# --- noise ----------------------------------------------------------------------------------
def test_scraped_markup_is_noisy():
    junk = "<div><span>Price</span>&nbsp;&nbsp;<b>10</b><br/><br/></div>" * 3
    row = _score([("What is the price?", junk)]).row(0, named=True)
    assert row["noise_ratio"] > CFG.max_noise_ratio
    assert row["noisy_response"]


@pytest.mark.parametrize(
    ("prompt", "response"),
    [
        ("Create an HTML page.", "<html><body><p>Hello</p></body></html>" * 3),
        ("Explain.", "**Bold** and *italic* markdown with a [link](http://x.org)."),
        ("Explain.", "Use <br> for a line break in prose about HTML tags and nothing else here."),
        (
            "Create a React component.",
            "function T() {\n  return <table><tr><td>x</td></tr></table>;\n}",
        ),
    ],
)
def test_requested_markup_markdown_and_code_are_not_noise(prompt, response):
    assert not _flag("noisy_response", prompt, response)


# --- real data sanity -----------------------------------------------------------------------
def test_alpaca_demo_response_flag_rates_are_sane():
    out = _score_frame(_real_alpaca("hiyouga__LLaMA-Factory", "alpaca_en_demo.json"))
    assert out["special_token_leak"].sum() == 0
    assert out["empty_or_trivial_response"].sum() == 0
    assert out["noisy_response"].mean() < 0.01
    assert out["repetition"].mean() < 0.01
    assert out["truncated_response"].mean() < 0.02
    # GPT-4 era outputs: a handful of "As an AI, I don't have..." disclaimers
    assert 5 <= out["refusal_boilerplate"].sum() <= 30


def test_big_bench_hard_chain_of_thought_answers_are_clean():
    rows = []
    for name in ("boolean_expressions", "date_understanding", "web_of_lies"):
        text = (REAL / "suzgunmirac__BIG-Bench-Hard" / "cot-prompts" / f"{name}.txt").read_text()
        for block in text.split("-----", 1)[1].split("\n\nQ: ")[1:]:
            question, answer = block.split("\nA: ", 1)
            rows.append([("user", question), ("assistant", answer)])
    out = _score_frame(frame_from_conversations(rows))
    flags = ["empty_or_trivial_response", "truncated_response", "repetition", "noisy_response"]
    assert out.select(pl.sum_horizontal(flags).sum()).item() == 0
