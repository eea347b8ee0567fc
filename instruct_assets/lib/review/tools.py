"""The review queue as import files for Label Studio, Argilla and Prodigy.

One record per queued example in each tool, all carrying ``source`` and ``example_id`` (and
``review_key`` = ``<source>:<example_id>``, unambiguous because source names hold no
``:``) so exports come back to the right example. Every tool gets the whole conversation,
the response under review on its own, and a suggested verdict from our automatic judgment
(``reject`` when curation would exclude the row for its score or an excluding flag, else
``accept``), which the annotator confirms or overrides.

Label Studio: ``tasks.json`` (a JSON array of ``{"data": ..., "predictions": [...]}``, the
suggestion as a pre-annotation) plus ``labeling_config.xml``: a ``verdict`` choice
(accept / reject / edit), an ``edited_response`` text area pre-filled with the response,
and a free-text ``reason``. Argilla: ``records.jsonl``, flat dicts as ``Dataset.records.log``
takes them (fields ``conversation`` (chat) and ``response``, the suggestion as
``verdict.suggestion``, the response pre-filled as ``edited_response.suggestion``, the rest
as metadata); ``README.md`` beside it creates the matching dataset settings. Prodigy:
``tasks.jsonl`` with ``text`` (the rendered conversation) and ``meta``, plus
``edited_response`` for a ``text_input`` block; ``answer`` is filled in on return.

The JSON is built column-wise (``struct.json_encode``) and written atomically; the same
queue gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from instruct_assets.lib.keys import KEY
from instruct_assets.lib.parquet_io import atomic_path
from instruct_assets.lib.review.layout import ReviewPaths

#: The agent name our suggestions carry (Argilla ``agent``, Label Studio ``model_version``).
SUGGESTION_AGENT = "instruct_assets-quality"

#: Verdicts an annotator can give, as every tool spells them.
VERDICTS: tuple[str, ...] = ("accept", "reject", "edit")

LABEL_STUDIO_CONFIG = """\
<View>
  <!-- instruct_assets review: pick a verdict; "edit" uses the edited response below. -->
  <Text name="review_note" value="$review_note"/>
  <Paragraphs name="dialogue" value="$messages" layout="dialogue" nameKey="role" \
textKey="content"/>
  <Header value="Response under review"/>
  <Text name="response" value="$response"/>
  <Choices name="verdict" toName="response" choice="single-radio" required="true" \
showInline="true">
    <Choice value="accept"/>
    <Choice value="reject"/>
    <Choice value="edit"/>
  </Choices>
  <Header value="Edited response (read only when the verdict is edit)"/>
  <TextArea name="edited_response" toName="response" value="$response" rows="8" \
editable="true" maxSubmissions="1"/>
  <Header value="Reason"/>
  <TextArea name="reason" toName="response" rows="2" editable="true" maxSubmissions="1"/>
</View>
"""

ARGILLA_README = """\
# Argilla import

`records.jsonl` holds one flat record per queued example, as `Dataset.records.log` takes
them. Create the dataset with these settings, then log the records:

```python
import json
import argilla as rg

settings = rg.Settings(
    fields=[rg.ChatField(name="conversation"), rg.TextField(name="response")],
    questions=[
        rg.LabelQuestion(name="verdict", labels=["accept", "reject", "edit"]),
        rg.TextQuestion(name="edited_response", required=False),
        rg.TextQuestion(name="reason", required=False),
    ],
    metadata=[
        rg.TermsMetadataProperty(name="source"),
        rg.TermsMetadataProperty(name="example_id"),
        rg.TermsMetadataProperty(name="queue_reason"),
        rg.TermsMetadataProperty(name="quality_flags"),
        rg.TermsMetadataProperty(name="complexity_tier"),
        rg.FloatMetadataProperty(name="quality_score"),
    ],
)
dataset = rg.Dataset(name="instruct-review", settings=settings)
dataset.create()
with open("records.jsonl", encoding="utf-8") as fh:
    dataset.records.log([json.loads(line) for line in fh])
```

Export with `dataset.records.to_json(path)` (or `to_list(flatten=True)` written as JSON
Lines, `to_datasets().to_json(path)` or `to_datasets().to_parquet(path)`, or the
`data/*.parquet` files of a `dataset.to_hub(...)` repo) and drop the file into
`<data dir>/annotations/`.
A `verdict` of `edit` uses the `edited_response` answer.
"""

PRODIGY_README = """\
# Prodigy import

`tasks.jsonl` holds one task per queued example: `text` (the rendered conversation),
`meta` (source, example_id, why it was queued, our suggestion) and `edited_response`
(the response, pre-filled for a `text_input` block). Serve it with a custom recipe whose
config is

```python
{"blocks": [{"view_id": "text"},
            {"view_id": "text_input", "field_id": "edited_response",
             "field_label": "Response (change it to edit)", "field_rows": 8},
            {"view_id": "text_input", "field_id": "reason", "field_label": "Reason",
             "field_rows": 2}]}
```

Accept keeps the example (an `edited_response` that differs from the original makes it an
edit), reject removes it, ignore gives no verdict. Export with `prodigy db-out <dataset>`
and drop the JSONL into `<data dir>/annotations/`.
"""


def review_frame(queue: pl.DataFrame, examples: pl.DataFrame, threshold: float,
                 exclude_flags: tuple[str, ...] = ()) -> pl.DataFrame:
    """The queue joined to its conversations, with ``response``, ``prompt_messages``,
    ``suggested_verdict`` and ``suggestion_score``; rows whose example is gone are dropped
    (the caller counts them)."""
    convo = examples.select(*KEY, "messages")
    frame = queue.join(convo, on=KEY, how="inner").sort("queue_position")
    excluding = pl.lit(False)
    for flag in exclude_flags:
        excluding = excluding | pl.col("quality_flags").list.contains(flag)
    score = pl.col("quality_score").fill_nan(None)
    below = score.fill_null(float("-inf")) < threshold
    reject = below | excluding
    confidence = pl.when(reject).then(1.0 - score).otherwise(score).fill_null(0.5).clip(0, 1)
    flags = pl.col("quality_flags").list.join(", ").fill_null("")
    return frame.with_columns(
        review_key=pl.format("{}:{}", "source", "example_id"),
        response=pl.col("messages").list.last().struct.field("content"),
        prompt_messages=pl.col("messages").list.slice(0, pl.col("messages").list.len() - 1),
        suggested_verdict=pl.when(reject).then(pl.lit("reject")).otherwise(pl.lit("accept")),
        suggestion_score=confidence.round(4),
        quality_score=score.round(4),
        flags_text=pl.when(flags == "").then(pl.lit("none")).otherwise(flags),
    ).with_columns(
        review_note=pl.format("{} / {} · queued: {} · score {} · flags: {} · suggested: {}",
                              "source", "example_id", "queue_reason",
                              pl.col("quality_score").cast(pl.String).fill_null("n/a"),
                              "flags_text", "suggested_verdict"),
    )


def _label_studio_lines(frame: pl.DataFrame) -> pl.Series:
    data = pl.struct(
        "review_key", "source", "example_id", "messages", "response", "review_note",
        "queue_reason", "quality_score", pl.col("flags_text").alias("quality_flags"),
        "complexity_tier", "suggested_verdict",
    ).alias("data")
    result = pl.concat_list(pl.struct(
        pl.lit("verdict").alias("from_name"), pl.lit("response").alias("to_name"),
        pl.lit("choices").alias("type"),
        pl.struct(pl.concat_list(pl.col("suggested_verdict")).alias("choices")).alias("value"),
    ))
    prediction = pl.concat_list(pl.struct(
        pl.lit(SUGGESTION_AGENT).alias("model_version"),
        pl.col("suggestion_score").alias("score"), result.alias("result"),
    )).alias("predictions")
    return frame.select(pl.struct(data, prediction).struct.json_encode())[:, 0]


def _argilla_lines(frame: pl.DataFrame) -> pl.Series:
    return frame.select(pl.struct(
        pl.col("review_key").alias("id"),
        pl.col("prompt_messages").alias("conversation"),
        "response",
        pl.col("suggested_verdict").alias("verdict.suggestion"),
        pl.col("suggestion_score").alias("verdict.suggestion.score"),
        pl.lit(SUGGESTION_AGENT).alias("verdict.suggestion.agent"),
        pl.col("response").alias("edited_response.suggestion"),
        "source", "example_id", "queue_reason", "quality_score", "quality_flags",
        "complexity_tier",
    ).struct.json_encode())[:, 0]


def render_conversation() -> pl.Expr:
    """``ROLE:\\ncontent`` per turn, blank-line separated (Prodigy's plain ``text``)."""
    turn = (pl.element().struct.field("role").str.to_uppercase() + pl.lit(":\n")
            + pl.element().struct.field("content"))
    return pl.col("messages").list.eval(turn).list.join("\n\n")


def _prodigy_lines(frame: pl.DataFrame) -> pl.Series:
    meta = pl.struct(
        "review_key", "source", "example_id", "queue_reason", "quality_score",
        pl.col("flags_text").alias("quality_flags"), "complexity_tier",
        pl.col("suggested_verdict").alias("suggested"),
    ).alias("meta")
    return frame.select(pl.struct(
        render_conversation().alias("text"), meta, "response",
        pl.col("response").alias("edited_response"),
    ).struct.json_encode())[:, 0]


def _write_text(target: Path, text: str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(text.encode("utf-8"))
    return target


def write_tool_files(layout: ReviewPaths, frame: pl.DataFrame) -> dict[str, Path]:
    """Write every tool's import file for ``frame`` (from :func:`review_frame`)."""
    ls_lines = _label_studio_lines(frame).to_list()
    ls_json = "[\n" + ",\n".join(ls_lines) + "\n]\n" if ls_lines else "[]\n"

    def jsonl(lines: pl.Series) -> str:
        return "".join(f"{line}\n" for line in lines.to_list())

    out = {
        "label_studio_tasks": _write_text(layout.label_studio_tasks, ls_json),
        "label_studio_config": _write_text(layout.label_studio_config, LABEL_STUDIO_CONFIG),
        "argilla_records": _write_text(layout.argilla_records, jsonl(_argilla_lines(frame))),
        "argilla_readme": _write_text(layout.argilla_records.parent / "README.md",
                                      ARGILLA_README),
        "prodigy_tasks": _write_text(layout.prodigy_tasks, jsonl(_prodigy_lines(frame))),
        "prodigy_readme": _write_text(layout.prodigy_tasks.parent / "README.md",
                                      PRODIGY_README),
    }
    return out
