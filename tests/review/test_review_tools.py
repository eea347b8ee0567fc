"""The import files each tool loads: shapes, contents, the labelling config, determinism."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import polars as pl

from instruct_assets.lib.review.tools import write_tool_files


def test_label_studio_tasks_hold_the_conversation_and_a_suggestion(reviewed):
    tasks = reviewed.ls_tasks()
    assert len(tasks) == reviewed.frame.height > 0
    examples = {(r["source"], r["example_id"]): r["messages"]
                for r in reviewed.examples.iter_rows(named=True)}
    for task in tasks:
        data = task["data"]
        assert set(task) == {"data", "predictions"}
        assert data["review_key"] == f"{data['source']}:{data['example_id']}"
        assert data["messages"] == examples[(data["source"], data["example_id"])]
        assert data["response"] == data["messages"][-1]["content"]
        [pred] = task["predictions"]
        [result] = pred["result"]
        assert result["from_name"] == "verdict" and result["type"] == "choices"
        assert result["value"]["choices"] == [data["suggested_verdict"]]
        assert 0.0 <= pred["score"] <= 1.0
    # rows below the threshold or with an excluding flag are suggested for rejection
    frame = reviewed.frame
    low = frame.filter((pl.col("quality_score") < 0.5)
                       | pl.col("quality_flags").list.contains("template_placeholder"))
    assert low.height > 0 and (low["suggested_verdict"] == "reject").all()


def test_the_labeling_config_binds_every_control_to_task_data(reviewed):
    root = ET.fromstring(reviewed.layout.label_studio_config.read_text())
    objects = {e.get("name"): e.get("value") for e in root.iter()
               if e.tag in ("Text", "Paragraphs")}
    controls = {e.get("name"): e for e in root.iter() if e.get("toName")}
    assert set(controls) == {"verdict", "edited_response", "reason"}
    assert all(c.get("toName") in objects for c in controls.values())
    assert [c.get("value") for c in controls["verdict"]] == ["accept", "reject", "edit"]
    data_keys = set(reviewed.ls_tasks()[0]["data"])
    variables = {v.lstrip("$") for v in objects.values()} | {
        controls["edited_response"].get("value").lstrip("$")}
    assert variables <= data_keys
    dialogue = next(e for e in root.iter("Paragraphs"))
    assert (dialogue.get("nameKey"), dialogue.get("textKey")) == ("role", "content")


def test_argilla_records_are_flat_fields_suggestions_and_metadata(reviewed):
    records = reviewed.argilla_records()
    assert len(records) == reviewed.frame.height
    for rec in records:
        assert rec["id"] == f"{rec['source']}:{rec['example_id']}"
        assert rec["conversation"][-1]["role"] == "user"  # the response is its own field
        assert rec["verdict.suggestion"] in ("accept", "reject")
        assert rec["verdict.suggestion.agent"] == "instruct_assets-quality"
        assert rec["edited_response.suggestion"] == rec["response"]
        assert isinstance(rec["quality_flags"], list)


def test_prodigy_tasks_render_text_and_carry_meta(reviewed):
    tasks = reviewed.prodigy_tasks()
    assert len(tasks) == reviewed.frame.height
    for task in tasks:
        assert task["text"].startswith(("USER:\n", "SYSTEM:\n"))
        assert task["text"].endswith(task["response"])
        assert "answer" not in task
        assert task["edited_response"] == task["response"]
        assert task["meta"]["review_key"] == f"{task['meta']['source']}:" \
                                              f"{task['meta']['example_id']}"


def test_the_same_queue_gives_the_same_bytes(reviewed, tmp_path):
    before = {k: p.read_bytes() for k, p in reviewed.files.items()}
    shuffled = reviewed.frame.sample(fraction=1.0, shuffle=True, seed=5).sort("queue_position")
    again = write_tool_files(reviewed.layout, shuffled)
    assert {k: p.read_bytes() for k, p in again.items()} == before
    leftovers = [p for p in reviewed.layout.review.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
