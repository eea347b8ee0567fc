"""Annotation exports built as Label Studio, Argilla and Prodigy write them.

Each function takes the tasks/records *we* wrote for the tool (so the data fields are
exactly what the tool held) and the answers a reviewer gave, and returns the export in the
tool's documented shape:

* Label Studio JSON: the task format of labelstud.io/guide/task_format (``annotations``
  with ``result`` items ``{value, id, from_name, to_name, type, origin}``, ``completed_by``,
  ``was_cancelled``, ``created_at``/``updated_at``, ``lead_time``, ...).
* Label Studio JSON-MIN and CSV: what ``label_studio_converter.Converter`` makes of that
  export (task data + ``id`` + each control's prettified value + ``annotator``,
  ``annotation_id``, ``created_at``, ``updated_at``, ``lead_time``; cancelled annotations
  left out; CSV via pandas-style ``str()`` of non-text data).
* Argilla 2.x: ``Record.to_dict`` (nested, what ``records.to_json`` dumps) and
  ``GenericIO._record_to_dict(flatten=True)`` (``<question>.responses`` / ``.users`` /
  ``.status``, ``<question>.suggestion`` / ``.score`` / ``.agent``).
* Argilla 2.x Parquet: ``records.to_datasets()`` (``datasets.Dataset.from_dict`` of the
  flat records, column-wise) written by ``Dataset.to_parquet`` or pushed to the Hub by
  ``dataset.to_hub`` (``data/train-00000-of-00001.parquet``): the same columns as the flat
  dicts, Arrow-typed, with the ``huggingface`` features in the schema metadata.
* Prodigy ``db-out``: the task plus ``_input_hash``, ``_task_hash``, ``_view_id``,
  ``answer``, ``_timestamp``, ``_annotator_id``, ``_session_id`` and the ``text_input``
  fields.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


@dataclass
class Answer:
    """One reviewer's answer to one task (by review_key)."""

    key: str
    verdict: str | None
    edited: str | None = None
    reason: str | None = None
    user: int = 1
    at: str = "2024-05-02T10:00:00.000000Z"
    cancelled: bool = False


def _result_id(n: int) -> str:
    return f"r{n:09d}"


def label_studio_json(tasks: list[dict], answers: list[Answer]) -> list[dict]:
    out = []
    by_key: dict[str, list[Answer]] = {}
    for a in answers:
        by_key.setdefault(a.key, []).append(a)
    ann_id = 100
    for i, task in enumerate(tasks, 1):
        anns = []
        for a in by_key.get(task["data"]["review_key"], []):
            ann_id += 1
            result = []
            if a.verdict is not None:
                result.append({"value": {"choices": [a.verdict]}, "id": _result_id(ann_id),
                               "from_name": "verdict", "to_name": "response",
                               "type": "choices", "origin": "manual"})
            if a.edited is not None:
                result.append({"value": {"text": [a.edited]}, "id": _result_id(ann_id + 1000),
                               "from_name": "edited_response", "to_name": "response",
                               "type": "textarea", "origin": "manual"})
            if a.reason is not None:
                result.append({"value": {"text": [a.reason]}, "id": _result_id(ann_id + 2000),
                               "from_name": "reason", "to_name": "response",
                               "type": "textarea", "origin": "manual"})
            anns.append({
                "id": ann_id, "completed_by": a.user, "result": [] if a.cancelled else result,
                "was_cancelled": a.cancelled, "ground_truth": False, "created_at": a.at,
                "updated_at": a.at, "draft_created_at": None, "lead_time": 12.5,
                "prediction": {}, "result_count": 0, "unique_id": f"u-{ann_id}",
                "import_id": None, "last_action": None, "task": i, "project": 3,
                "updated_by": a.user, "parent_prediction": None, "parent_annotation": None,
                "last_created_by": None})
        out.append({
            "id": i, "annotations": anns, "file_upload": "d1e2f3-tasks.json", "drafts": [],
            "predictions": [i], "data": task["data"], "meta": {},
            "created_at": "2024-05-01T09:00:00.000000Z",
            "updated_at": "2024-05-02T10:00:00.000000Z", "inner_id": i,
            "total_annotations": len([a for a in anns if not a["was_cancelled"]]),
            "cancelled_annotations": len([a for a in anns if a["was_cancelled"]]),
            "total_predictions": 1, "comment_count": 0, "unresolved_comment_count": 0,
            "last_comment_updated_at": None, "project": 3, "updated_by": 1,
            "comment_authors": []})
    return out


def _prettify(values: list[dict], tag_type: str):
    out = []
    for v in values:
        if tag_type == "Choices" and len(v["choices"]) == 1:
            out.append(v["choices"][0])
        elif tag_type == "TextArea" and len(v["text"]) == 1:
            out.append(v["text"][0])
        else:
            out.append(v)
    return out[0] if len(out) == 1 else out


def label_studio_min(export: list[dict]) -> list[dict]:
    """The converter's JSON-MIN (newest annotation first, cancelled ones left out)."""
    types = {"verdict": "Choices", "edited_response": "TextArea", "reason": "TextArea"}
    records = []
    for task in export:
        anns = [a for a in task["annotations"] if not a.get("was_cancelled")]
        for ann in sorted(anns, key=lambda a: a.get("created_at", 0), reverse=True):
            record = dict(task["data"])
            record["id"] = task["id"]
            outputs: dict[str, list] = {}
            for r in ann["result"]:
                outputs.setdefault(r["from_name"], []).append(r["value"])
            for name, values in outputs.items():
                record[name] = _prettify(values, types[name])
            record["annotator"] = ann["completed_by"]
            record["annotation_id"] = ann["id"]
            record["created_at"] = ann["created_at"]
            record["updated_at"] = ann["updated_at"]
            record["lead_time"] = ann["lead_time"]
            records.append(record)
    return records


def label_studio_csv(export: list[dict], sep: str = ",") -> str:
    rows = label_studio_min(export)
    columns: list[str] = []
    for r in rows:
        columns += [c for c in r if c not in columns]
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=sep, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow(["" if r.get(c) is None else r[c] if isinstance(r.get(c), str)
                         else str(r[c]) for c in columns])
    return buf.getvalue()


def _argilla_user(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def argilla_nested(records: list[dict], answers: list[Answer],
                   with_status: bool = False) -> list[dict]:
    """``Record.to_dict()`` per record (what ``records.to_json`` dumps)."""
    by_key: dict[str, list[Answer]] = {}
    for a in answers:
        by_key.setdefault(a.key, []).append(a)
    out = []
    for i, rec in enumerate(records):
        responses: dict[str, list] = {}
        for a in by_key.get(rec["id"], []):
            status = {"status": "discarded" if a.cancelled else "submitted"} \
                if with_status else {}
            for question, value in (("verdict", a.verdict), ("edited_response", a.edited),
                                    ("reason", a.reason)):
                if value is not None:
                    responses.setdefault(question, []).append(
                        {"value": value, "user_id": _argilla_user(a.user), **status})
        out.append({
            "id": rec["id"],
            "fields": {"conversation": rec["conversation"], "response": rec["response"]},
            "metadata": {k: rec[k] for k in ("source", "example_id", "queue_reason",
                                             "quality_score", "quality_flags",
                                             "complexity_tier")},
            "suggestions": {"verdict": {"value": rec["verdict.suggestion"],
                                        "score": rec["verdict.suggestion.score"],
                                        "agent": rec["verdict.suggestion.agent"]},
                            "edited_response": {"value": rec["edited_response.suggestion"],
                                                "score": None, "agent": None}},
            "responses": responses, "vectors": {},
            "_server_id": f"10000000-0000-4000-8000-{i:012d}"})
    return out


def argilla_flat(nested: list[dict]) -> list[dict]:
    """``to_list(flatten=True)``: fields/metadata inlined, dotted response/suggestion keys,
    every record padded with the keys any record has."""
    rows = []
    for rec in nested:
        row = {"id": rec["id"], "_server_id": rec["_server_id"], **rec["fields"],
               **rec["metadata"], **rec["vectors"]}
        for question, answers in rec["responses"].items():
            row[f"{question}.responses"] = [a["value"] for a in answers]
            row[f"{question}.responses.users"] = [a["user_id"] for a in answers]
            row[f"{question}.responses.status"] = [a.get("status") for a in answers]
        for question, s in rec["suggestions"].items():
            row[f"{question}.suggestion"] = s["value"]
            row[f"{question}.suggestion.score"] = s["score"]
            row[f"{question}.suggestion.agent"] = s["agent"]
        rows.append(row)
    keys = {k for r in rows for k in r}
    for r in rows:
        r.update({k: None for k in keys if k not in r})
    return rows


def _hf_feature(dtype: pa.DataType) -> dict:
    """The ``datasets`` feature JSON of an Arrow type (as ``Features.to_dict`` writes it)."""
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        return {"feature": _hf_feature(dtype.value_type), "_type": "List"}
    if pa.types.is_struct(dtype):
        return {f.name: _hf_feature(f.type) for f in dtype}
    name = {"string": "string", "large_string": "string", "double": "float64",
            "int64": "int64", "bool": "bool", "null": "null"}.get(str(dtype), str(dtype))
    return {"dtype": name, "_type": "Value"}


def argilla_parquet(flat: list[dict], path: Path) -> Path:
    """``records.to_datasets().to_parquet(path)``: ``GenericIO.to_dict(flatten=True)``
    (column -> values, keys in first-seen order) as an Arrow table, the ``huggingface``
    features in the schema metadata."""
    columns: dict[str, list] = {}
    for rec in flat:
        for key in rec:
            columns.setdefault(key, [])
    for rec in flat:
        for key, values in columns.items():
            values.append(rec.get(key))
    table = pa.Table.from_pydict(columns)
    features = {f.name: _hf_feature(f.type) for f in table.schema}
    table = table.replace_schema_metadata(
        {"huggingface": json.dumps({"info": {"features": features}})})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def prodigy_db_out(tasks: list[dict], answers: list[Answer]) -> list[dict]:
    by_key = {a.key: a for a in answers}
    out = []
    for i, task in enumerate(tasks):
        a = by_key.get(task["meta"]["review_key"])
        if a is None:
            continue
        rec = dict(task)
        if a.edited is not None:
            rec["edited_response"] = a.edited
        if a.reason is not None:
            rec["reason"] = a.reason
        rec.update({"_input_hash": -1200000 - i, "_task_hash": 340000 + i,
                    "_view_id": "blocks", "answer": a.verdict,
                    "_timestamp": 1714644000 + i, "_annotator_id": f"review-user{a.user}",
                    "_session_id": f"review-user{a.user}"})
        out.append(rec)
    return out


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
