"""Tool exports -> the annotations relation: every shape, every reject with its reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import polars as pl

from instruct_assets.lib.review.annotations import inbox_fingerprint, parse_annotations
from tests.review.tool_exports import (
    Answer,
    argilla_flat,
    argilla_nested,
    argilla_parquet,
    jsonl,
    label_studio_csv,
    label_studio_json,
    label_studio_min,
    prodigy_db_out,
)


def keys(items: list[dict], field: str = "review_key") -> list[str]:
    return [i["data"][field] if "data" in i else i["meta"][field] if "meta" in i
            else i["id"] for i in items]


def test_label_studio_json_min_and_csv_exports(reviewed):
    tasks = reviewed.ls_tasks()
    k = keys(tasks)
    original = tasks[4]["data"]["response"]
    export = label_studio_json(tasks[:5], [
        Answer(k[0], "reject", reason="made-up facts", at="2024-05-02T10:00:00.5Z"),
        Answer(k[1], "edit", edited="A better answer.\r\nSecond line.", user=2),
        Answer(k[2], "accept"),
        Answer(k[2], None, user=3, cancelled=True),
        Answer(k[4], "edit", edited=original),  # pre-filled text left as it was
    ])
    reviewed.drop("ls/project-3-at-2024-05-02.json", json.dumps(export, indent=2))
    parsed = parse_annotations(reviewed.paths, reviewed.examples)
    rows = parsed.annotations
    assert rows.height == 4
    by_key = {f"{r['source']}:{r['example_id']}": r for r in rows.iter_rows(named=True)}
    assert by_key[k[0]]["verdict"] == "reject" and by_key[k[0]]["reason"] == "made-up facts"
    assert by_key[k[0]]["annotated_at"] == datetime(2024, 5, 2, 10, 0, 0, 500000, tzinfo=UTC)
    assert by_key[k[1]]["edited_content"] == "A better answer.\nSecond line."
    assert by_key[k[1]]["annotator"] == "2"
    assert by_key[k[4]]["verdict"] == "accept" and parsed.edits_unchanged == 1
    assert set(rows["tool"]) == {"label_studio"}
    assert parsed.rejects_by_reason() == {"no_verdict": 1, "skipped": 1}
    assert parsed.files == {"annotations/ls/project-3-at-2024-05-02.json":
                            {"records": 5, "annotations": 4, "rejects": 2}}

    # the same annotations exported again as JSON-MIN and CSV: recognised as repeats
    reviewed.drop("ls/min.json", json.dumps(label_studio_min(export)))
    reviewed.drop("ls/export.csv", label_studio_csv(export))
    again = parse_annotations(reviewed.paths, reviewed.examples)
    content = ["source", "example_id", "verdict", "edited_content", "reason", "annotator",
               "annotated_at", "tool", "annotation_ref"]
    assert again.annotations.select(content).equals(rows.select(content))
    assert again.rejects_by_reason() == {"duplicate_annotation": 8, "no_verdict": 1,
                                         "skipped": 1}
    # the first file by path keeps each annotation; the other two exports repeat all 4
    repeats = again.rejects.filter(pl.col("reason_code") == "duplicate_annotation")
    assert sorted(repeats.group_by("file").len()["len"].to_list()) == [4, 4]
    assert set(again.annotations["file"]) == {"annotations/ls/export.csv"}


def test_csv_and_min_exports_parse_on_their_own(reviewed):
    tasks = reviewed.ls_tasks()
    k = keys(tasks)
    export = label_studio_json(tasks[5:8], [
        Answer(k[5], "reject", reason="off topic"),
        Answer(k[6], "edit", edited="Shorter, correct answer.", user=4),
        Answer(k[7], "accept", user=4)])
    reviewed.drop("a.tsv", label_studio_csv(export, sep="\t"))
    parsed = parse_annotations(reviewed.paths, reviewed.examples)
    got = {f"{r['source']}:{r['example_id']}": (r["verdict"], r["edited_content"],
                                                 r["annotator"], r["tool_format"])
           for r in parsed.annotations.iter_rows(named=True)}
    assert got == {k[5]: ("reject", None, "1", "label_studio_csv"),
                   k[6]: ("edit", "Shorter, correct answer.", "4", "label_studio_csv"),
                   k[7]: ("accept", None, "4", "label_studio_csv")}
    assert parsed.rejects.height == 0


def test_argilla_nested_and_flat_exports(reviewed):
    records = reviewed.argilla_records()
    k = keys(records)
    nested = argilla_nested(records[:4], [
        Answer(k[0], "accept", user=1), Answer(k[0], "reject", reason="unsafe", user=2),
        Answer(k[1], "edit", edited="Fixed answer.", user=1),
        Answer(k[2], "accept", user=1, cancelled=True)], with_status=True)
    reviewed.drop("argilla/records.json", json.dumps(nested))
    flat = argilla_flat(argilla_nested(records[4:6], [
        Answer(k[4], "reject", user=3), Answer(k[5], "edit", edited="Better.", user=3)]))
    reviewed.drop("argilla/flat.jsonl", jsonl(flat))
    parsed = parse_annotations(reviewed.paths, reviewed.examples)
    rows = parsed.annotations
    got = sorted((f"{r['source']}:{r['example_id']}", r["verdict"], r["tool_format"])
                 for r in rows.iter_rows(named=True))
    assert got == sorted([(k[0], "accept", "argilla_nested"), (k[0], "reject", "argilla_nested"),
                          (k[1], "edit", "argilla_nested"), (k[4], "reject", "argilla_flat"),
                          (k[5], "edit", "argilla_flat")])
    assert rows["annotated_at"].null_count() == rows.height  # Argilla exports carry no time
    assert rows.filter(pl.col("reason") == "unsafe")["annotator"].item().endswith("000002")
    # record 2: discarded; record 3: nobody answered
    assert parsed.rejects_by_reason() == {"no_verdict": 1, "skipped": 1}


def test_argilla_parquet_exports(reviewed):
    """``to_datasets().to_parquet`` and a Hub export (``data/train-*.parquet``) parse like
    the flat JSON, rejects counted the same way."""
    records = reviewed.argilla_records()
    k = keys(records)
    flat = argilla_flat(argilla_nested(records[:5], [
        Answer(k[0], "accept", user=1), Answer(k[0], "reject", reason="unsafe", user=2),
        Answer(k[1], "edit", edited="Fixed answer.", reason="typo", user=1),
        Answer(k[2], "accept", user=1, cancelled=True),
        Answer(k[4], "reject", user=3)], with_status=True))
    # a draft: Argilla keeps the unsubmitted answer with status "draft"
    flat[4]["verdict.responses.status"] = ["draft"]
    assert flat[3]["verdict.responses"] is None  # record 3: nobody answered (null column)
    target = reviewed.layout.inbox / "argilla" / "export.parquet"
    argilla_parquet(flat, target)
    # the Hub's layout, another batch of records
    hub = argilla_flat(argilla_nested(records[5:7], [
        Answer(k[5], "reject", user=4), Answer(k[6], "edit", edited="Better.", user=4)]))
    argilla_parquet(hub, reviewed.layout.inbox / "hub" / "data" / "train-00000-of-00001.parquet")
    parsed = parse_annotations(reviewed.paths, reviewed.examples)
    rows = parsed.annotations
    got = sorted((f"{r['source']}:{r['example_id']}", r["verdict"], r["edited_content"],
                  r["reason"], r["tool"], r["tool_format"]) for r in rows.iter_rows(named=True))
    assert got == sorted([
        (k[0], "accept", None, None, "argilla", "argilla_parquet"),
        (k[0], "reject", None, "unsafe", "argilla", "argilla_parquet"),
        (k[1], "edit", "Fixed answer.", "typo", "argilla", "argilla_parquet"),
        (k[5], "reject", None, None, "argilla", "argilla_parquet"),
        (k[6], "edit", "Better.", None, "argilla", "argilla_parquet")])
    assert rows.filter(pl.col("reason") == "unsafe")["annotator"].item().endswith("000002")
    assert rows["annotation_ref"].str.starts_with(rows["source"] + ":").all()
    assert parsed.rejects_by_reason() == {"no_verdict": 1, "not_submitted": 1, "skipped": 1}
    assert parsed.files["annotations/argilla/export.parquet"] == {
        "records": 5, "annotations": 3, "rejects": 3}
    # the same records as flat JSON Lines give the same rows
    target.unlink()
    reviewed.drop("argilla/export.jsonl", jsonl(flat))
    again = parse_annotations(reviewed.paths, reviewed.examples).annotations
    cols = ["source", "example_id", "verdict", "edited_content", "reason", "annotator"]
    assert again.select(cols).sort(cols, nulls_last=True).equals(
        rows.select(cols).sort(cols, nulls_last=True))


def test_broken_and_empty_parquet_files_are_rejected(reviewed):
    records = reviewed.argilla_records()
    flat = argilla_flat(argilla_nested(records[:1], [Answer(records[0]["id"], "accept")]))
    empty = argilla_parquet(flat, reviewed.layout.inbox / "empty.parquet")
    pl.read_parquet(empty).clear().write_parquet(empty)
    reviewed.drop("broken.parquet", "PAR1 this is not parquet")
    (reviewed.layout.inbox / "other.parquet").unlink(missing_ok=True)
    pl.DataFrame({"a": [1, 2]}).write_parquet(reviewed.layout.inbox / "other.parquet")
    parsed = parse_annotations(reviewed.paths, reviewed.examples)
    assert parsed.annotations.height == 0
    got = sorted((r["file"], r["record"], r["reason_code"])
                 for r in parsed.rejects.iter_rows(named=True))
    assert got == [("annotations/broken.parquet", 0, "unreadable_file"),
                   ("annotations/empty.parquet", 0, "empty_file"),
                   ("annotations/other.parquet", 0, "unknown_format"),
                   ("annotations/other.parquet", 1, "unknown_format")]


def test_prodigy_db_out(reviewed):
    tasks = reviewed.prodigy_tasks()
    k = keys(tasks)
    out = prodigy_db_out(tasks[:4], [
        Answer(k[0], "accept"),
        Answer(k[1], "accept", edited="Rewritten answer."),
        Answer(k[2], "reject", reason="wrong"),
        Answer(k[3], "ignore")])
    reviewed.drop("prodigy.jsonl", jsonl(out))
    parsed = parse_annotations(reviewed.paths, reviewed.examples)
    got = {f"{r['source']}:{r['example_id']}": (r["verdict"], r["edited_content"],
                                                 r["annotator"])
           for r in parsed.annotations.iter_rows(named=True)}
    assert got == {k[0]: ("accept", None, "review-user1"),
                   k[1]: ("edit", "Rewritten answer.", "review-user1"),
                   k[2]: ("reject", None, "review-user1")}
    times = parsed.annotations["annotated_at"].to_list()
    assert all(t.year == 2024 for t in times)
    assert parsed.rejects_by_reason() == {"skipped": 1}


def test_malformed_files_and_records_are_rejected_with_reasons(reviewed):
    tasks = reviewed.prodigy_tasks()
    good = prodigy_db_out(tasks[:1], [Answer(tasks[0]["meta"]["review_key"], "accept")])[0]
    lines = [
        json.dumps(good),
        "{'answer': 'accept'}",  # Python dict syntax
        json.dumps({"hello": "world"}),
        json.dumps({**good, "answer": "maybe", "_task_hash": 1}),
        json.dumps({**good, "meta": {}, "_task_hash": 2}),
        json.dumps({**good, "meta": {"source": "alpaca", "example_id": "nope"},
                    "_task_hash": 3}),
        "",
        json.dumps({**good, "answer": "accept", "accept": ["edit"],
                    "options": [{"id": "edit"}], "edited_response": " ", "_task_hash": 4}),
    ]
    reviewed.drop("mixed.jsonl", "\n".join(lines) + "\n")
    reviewed.drop("truncated.json", '[{"id": 1, "annotations": [')
    reviewed.drop("empty.jsonl", "\n\n")
    reviewed.drop("notes.txt", "verdicts are in the other files")
    (reviewed.layout.inbox / "blob.json").write_bytes(b"\xff\xfe\x00\x01garbage")
    reviewed.drop(".hidden.jsonl", "not read")
    parsed = parse_annotations(reviewed.paths, reviewed.examples)
    assert parsed.annotations.height == 1
    assert parsed.rejects_by_reason() == {
        "bad_verdict": 1, "empty_edit": 1, "empty_file": 1, "invalid_json": 2,
        "missing_key": 1, "unknown_example": 1, "unknown_format": 1, "unreadable_file": 2}
    mixed = parsed.files["annotations/mixed.jsonl"]
    assert mixed == {"records": 6, "annotations": 2, "rejects": 5}  # 1 more after validation
    bad = parsed.rejects.filter(pl.col("file") == "annotations/mixed.jsonl")
    assert sorted(bad["record"].to_list()) == [1, 2, 3, 4, 5, 7]
    assert "annotations/.hidden.jsonl" not in parsed.files


def test_inbox_fingerprint_follows_content(reviewed):
    paths = reviewed.paths
    empty = inbox_fingerprint(paths)
    reviewed.drop("a.jsonl", "{}\n")
    cache: dict = {}
    one = inbox_fingerprint(paths, cache)
    assert one != empty and one == inbox_fingerprint(paths, cache)
    assert list(cache) == ["annotations/a.jsonl"]
    reviewed.drop("a.jsonl", "{} \n")
    two = inbox_fingerprint(paths, cache)
    assert two != one
    (reviewed.layout.inbox / "a.jsonl").unlink()
    assert inbox_fingerprint(paths, cache) == empty
