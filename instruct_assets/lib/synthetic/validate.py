"""Validation of generated text: what a model returned is not trusted until it passes.

Reason codes (the ``reason_code`` of a synthetic reject):

* ``malformed_json``: the variations answer is not a JSON array of strings.
* ``empty``: an empty (or whitespace-only) instruction or response.
* ``identical_to_seed``: the variation is the seed instruction again (case, spacing and
  final punctuation ignored).
* ``duplicate_variation``: the same variation twice for one seed (same normalisation).
* ``refusal``: the response refuses or hides behind AI boilerplate (the quality stage's
  ``REFUSAL_RE``, so both stages agree on what a refusal is).
* ``endpoint_error``: the endpoint failed after every retry (detail: the failure kind).
"""

from __future__ import annotations

import json
import re

import polars as pl

from instruct_assets.lib.quality.responses import REFUSAL_RE

REASONS: tuple[str, ...] = ("endpoint_error", "malformed_json", "empty", "identical_to_seed",
                            "duplicate_variation", "refusal")

_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n(.*?)\n\s*```\s*$", re.DOTALL)


def parse_variations(content: str, n: int) -> list[str]:
    """The first ``n`` variations of a JSON-array answer (a ```json fence is tolerated).

    Raises ``ValueError`` when the answer is not a JSON array of strings (or an object
    whose ``variations`` is one).
    """
    text = content.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at char {exc.pos})") from exc
    if isinstance(doc, dict) and isinstance(doc.get("variations"), list):
        doc = doc["variations"]
    if not isinstance(doc, list) or not all(isinstance(v, str) for v in doc):
        raise ValueError("not a JSON array of strings")
    return [v.replace("\r\n", "\n") for v in doc[:n]]


def normalized(expr: pl.Expr) -> pl.Expr:
    """Lower case, collapsed whitespace, no final punctuation: what "the same" means."""
    return (expr.str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()
            .str.replace(r"[.!?…]+$", ""))


def instruction_reason() -> pl.Expr:
    """Reject reason of a generated instruction (null = valid), over ``instruction``,
    ``seed_instruction``, ``seed_source`` and ``seed_example_id`` (rows in variation
    order)."""
    norm = normalized(pl.col("instruction"))
    repeat = pl.int_range(pl.len()).over("seed_source", "seed_example_id", norm) > 0
    return (pl.when(pl.col("instruction").str.strip_chars() == "").then(pl.lit("empty"))
            .when(norm == normalized(pl.col("seed_instruction")))
            .then(pl.lit("identical_to_seed"))
            .when(repeat).then(pl.lit("duplicate_variation")))


def response_reason() -> pl.Expr:
    """Reject reason of a generated response (null = valid), over ``response``."""
    text = pl.col("response")
    return (pl.when(text.is_null() | (text.str.strip_chars() == "")).then(pl.lit("empty"))
            .when(text.str.contains(REFUSAL_RE)).then(pl.lit("refusal")))
