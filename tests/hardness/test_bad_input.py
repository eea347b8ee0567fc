"""Bad input never stops the pipeline and is never lost: each case is its own source beside
good ones, one real run of the whole graph, then per case: the good sources are published,
every bad record is a reject with a precise reason and a detail naming the field, turn or
position, and records read = rows + rejects (counted here from the bytes we wrote).

The corpus is written to a temp dir by code (nothing large is committed); the two bad
real files come from ``../shared/data/real``. ``docs/bad-input.md`` is the table of it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from instruct_assets.lib.paths import DataPaths
from instruct_assets.pipeline import PipelineOutcome
from tests.support import make_data_dir, real, run_all

BIG_FIELD_CHARS = 50 * 1024 * 1024
DEPTH = 100_000


def alpaca(i: int, tag: str) -> dict:
    return {"instruction": f"{tag}: what is {i} plus {i}?", "input": "",
            "output": f"{2 * i}, because {i} + {i} = {2 * i} ({tag})."}


def openai(i: int, tag: str) -> dict:
    return {"messages": [{"role": "user", "content": f"{tag}: name a colour, take {i}."},
                         {"role": "assistant", "content": f"Blue, take {i} ({tag})."}]}


def sharegpt(i: int, tag: str) -> dict:
    return {"conversations": [{"from": "human", "value": f"{tag}: count to {i}."},
                              {"from": "gpt", "value": f"1 ... {i} ({tag})."}]}


def jsonl(records: list) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


def texts_of(records: list[dict]) -> set[str]:
    """Every text a good record holds: the only texts its examples may contain."""
    out: set[str] = set()
    for r in records:
        out.update(v for v in r.values() if isinstance(v, str) and v)
        for turns in (r.get("messages"), r.get("conversations")):
            out.update(t.get("content") or t.get("value") for t in turns or [])
    return out


@dataclass
class Case:
    """One bad-input source: its files, the units each holds and the rejects expected.

    ``rejects`` rows are ``(file, source_row, reason_code, detail regex)``; every other unit
    (``source_row`` 0..n-1 of a file with ``units`` n, or the rows listed) is an example.
    """

    source: str
    files: dict[str, bytes | Path]
    units: dict[str, int | list[int]]
    rejects: list[tuple[str, int, str, str]]
    held_back: bool
    texts: set[str] = field(default_factory=set)


def build_cases() -> list[Case]:
    cases: list[Case] = []
    add = cases.append

    # -- truncated containers -------------------------------------------------------------
    good = [alpaca(i, "trunc-array") for i in range(10)]
    text = json.dumps(good, indent=1)
    cut = text.index(json.dumps(good[7]["instruction"])) + 10  # inside item 7
    add(Case("truncated_json_array", {"part.json": text[:cut].encode()}, {"part.json": 8},
             [("part.json", 7, "invalid_json",
               r"array damaged after 7 records \(line \d+\): Unterminated string starting at "
               r"line \d+ column \d+; \d+ characters not parsed")],
             held_back=False, texts=texts_of(good[:7])))

    good = [alpaca(i, "trunc-lines") for i in range(10)]
    data = jsonl(good)
    add(Case("truncated_jsonl_last_line", {"part.jsonl": data[:-25]}, {"part.jsonl": 10},
             [("part.jsonl", 9, "invalid_json", r"Unterminated string starting at.* \d+")],
             held_back=False, texts=texts_of(good[:9])))

    # -- encoding ---------------------------------------------------------------------------
    good = [alpaca(i, "utf8") for i in range(8)]
    latin1 = b'{"instruction": "caf\xe9 au lait?", "output": "yes"}'
    lines = jsonl(good[:3]) + latin1 + b"\n" + jsonl(good[3:])
    array = (json.dumps(good[:2]).encode()[:-1]
             + b', {"instruction": "na\xefve?", "output": "x"}, '
             + json.dumps(good[2:]).encode()[1:])
    table = (b"instruction,input,output\n" + b"".join(
        f'"{r["instruction"]}",,"{r["output"]}"\n'.encode() for r in good[:1])
        + b"bad row,\xe9t\xe9,x\n"
        + b"".join(f'"{r["instruction"]}",,"{r["output"]}"\n'.encode() for r in good[1:]))
    add(Case("invalid_utf8", {"lines.jsonl": lines, "array.json": array, "table.csv": table},
             {"lines.jsonl": 9, "array.json": 9, "table.csv": 9},
             [("lines.jsonl", 3, "invalid_encoding",
               rf"invalid UTF-8 at byte {latin1.index(0xE9)} of the line: invalid continuation "
               r"byte"),
              ("array.json", 2, "invalid_encoding",
               r"field 'instruction': invalid UTF-8 byte 0xef at character 2"),
              ("table.csv", 1, "invalid_encoding",
               r"line 3: column 'input': invalid UTF-8 byte 0xe9 at character 0")],
             held_back=False, texts=texts_of(good)))

    blocks = b"Q: one?\nA: 1\n\nQ: tw\xe9lve?\nA: 12\n\nQ: three?\nA: 3\n"
    add(Case("invalid_utf8_text", {"blocks.txt": blocks}, {"blocks.txt": [0, 3, 6]},
             [("blocks.txt", 3, "invalid_encoding",
               r"block at line 4: invalid UTF-8 byte 0xe9 at character 5")],
             held_back=False, texts={"one?", "1", "three?", "3"}))

    good = [openai(i, "nul") for i in range(6)]
    # an escaped NUL is valid JSON: that text is kept as written
    good.append({"messages": [{"role": "user", "content": "a\u0000b"},
                              {"role": "assistant", "content": "escaped NUL kept"}]})
    nul_line = b'{"messages": [{"role": "user", "content": "a\x00b"}]}'
    add(Case("nul_byte", {
        "lines.jsonl": jsonl(good[:4]) + nul_line + b"\n" + jsonl(good[4:]),
        "array.json": b"[" + json.dumps(good[0]).encode() + b", " + nul_line + b", "
        + json.dumps(good[1]).encode() + b"]"},
        {"lines.jsonl": 8, "array.json": 3},
        [("lines.jsonl", 4, "invalid_json", rf"NUL byte at character {nul_line.index(0)}"),
         ("array.json", 1, "invalid_json",
          r"array item 1 \(line 1\): Invalid control character \(a NUL byte\) at line 1 "
          r"column \d+")],
        held_back=False, texts=texts_of(good)))

    good = [alpaca(i, "damaged") for i in range(6)]
    pydict = b"{'instruction': 'brackets ]} inside quotes', 'output': 'x'}"
    add(Case("damaged_array_item", {"items.json": json.dumps(good[:2]).encode()[:-1] + b", "
                                    + pydict + b", " + json.dumps(good[2:]).encode()[1:]},
             {"items.json": 7},
             [("items.json", 2, "invalid_json",
               r"array item 2 \(line 1\): Expecting property name enclosed in double quotes "
               r"at line 1 column \d+")],
             held_back=False, texts=texts_of(good)))

    # -- size and depth -------------------------------------------------------------------
    good = [alpaca(i, "big") for i in range(6)]
    huge = json.dumps({"instruction": "Repeat the letter x.", "output": "x" * BIG_FIELD_CHARS})
    add(Case("fifty_megabyte_field",
             {"big.jsonl": jsonl(good[:2]) + huge.encode() + b"\n" + jsonl(good[2:])},
             {"big.jsonl": 7},
             [("big.jsonl", 2, "too_large",
               rf"record is {len(huge):,} bytes, over the 33,554,432-byte ceiling; largest "
               rf"field 'output' \({BIG_FIELD_CHARS:,} characters\)")],
             held_back=False, texts=texts_of(good)))

    add(Case("deep_json_document", {"deep.json": b"[" * DEPTH + b"]" * DEPTH}, {"deep.json": 1},
             [("deep.json", 0, "invalid_json",
               rf"array item 0 \(line 1\): nested {DEPTH - 1:,} levels deep, beyond what the "
               r"JSON parser accepts \(about [\d,]+\)")],
             held_back=True))

    good = [alpaca(i, "deep") for i in range(6)]
    deep_field = b'{"instruction": ' + b"[" * DEPTH + b"]" * DEPTH + b', "output": "x"}'
    add(Case("deep_json_records", {
        "items.json": b"[" + b", ".join([json.dumps(good[0]).encode(), deep_field,
                                         json.dumps(good[1]).encode()]) + b"]",
        "lines.jsonl": jsonl(good[2:4]) + deep_field + b"\n" + jsonl(good[4:])},
        {"items.json": 3, "lines.jsonl": 5},
        [("items.json", 1, "invalid_json",
          rf"array item 1 \(line 1\): nested {DEPTH + 1:,} levels deep, .*"),
         ("lines.jsonl", 2, "wrong_type", r"field 'instruction' is array, expected text")],
        held_back=False, texts=texts_of(good)))

    # -- wrong types, roles, empty conversations --------------------------------------------
    good = [alpaca(i, "types") for i in range(10)]
    bad = [{"instruction": 5, "output": "x"},
           {"instruction": None, "output": "x"},
           {"instruction": ["a", "b"], "output": "x"},
           {"instruction": {"text": "a"}, "output": "x"},
           {"instruction": "ok", "input": 3, "output": "x"},
           {"instruction": "ok", "output": 4.5},
           {"instruction": "ok", "output": True},
           {"instruction": "ok", "output": "x", "history": [["earlier", 7]]},
           {"instruction": "ok", "output": "x", "history": [["a", "b", "c"]]}]
    expected = [
        (0, "wrong_type", r"field 'instruction' is ubigint, expected text"),
        (1, "missing_field", r"field 'instruction' is missing or null"),
        (2, "wrong_type", r"field 'instruction' is array, expected text"),
        (3, "wrong_type", r"field 'instruction' is object, expected text"),
        (4, "wrong_type", r"field 'input' is ubigint, expected text"),
        (5, "wrong_type", r"field 'output' is double, expected text"),
        (6, "wrong_type", r"field 'output' is boolean, expected text"),
        (7, "wrong_type",
         r"field 'history' item 0 is \[\"earlier\",7\], expected a \[user, assistant\] pair "
         r"of text"),
        (8, "wrong_type", r"field 'history' item 0 is \[\"a\",\"b\",\"c\"\], expected .*"),
    ]
    add(Case("wrong_types_alpaca",
             {"rows.jsonl": jsonl([*good, *bad]), "rows.json": json.dumps([*good, *bad]).encode()},
             {"rows.jsonl": 19, "rows.json": 19},
             [(f, 10 + i, code, detail) for f in ("rows.json", "rows.jsonl")
              for i, code, detail in expected],
             held_back=False, texts=texts_of(good)))

    good = [openai(i, "oai-types") for i in range(12)]
    u = {"role": "user", "content": "hi"}
    bad = [{"messages": "hello"},
           {"messages": None},
           {"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "x"}]},
           {"messages": [{"role": "user", "content": None},
                         {"role": "assistant", "content": "x"}]},
           {"messages": [u, {"role": "assistant", "content": {"text": "x"}}]},
           {"messages": [{"role": 7, "content": "a"}, {"role": "assistant", "content": "x"}]},
           {"messages": [{"content": "a"}, {"role": "assistant", "content": "x"}]},
           {"messages": ["hi", "there"]},
           {"messages": [u, {"role": "assistant", "content": [1, 2]}]},
           {"messages": [u, {"role": "assistant", "content": [{"type": "text", "text": 5}]}]},
           {"messages": [u, {"role": "assistant", "content": "x"}], "tools": 42}]
    expected = [
        (0, "wrong_type", r"field 'messages' is varchar, expected a list of turn objects"),
        (1, "missing_field", r"field 'messages' is missing or null"),
        (2, "wrong_type", r"turn 0 \(user\) content is ubigint, expected text"),
        (3, "missing_field", r"turn 0 \(user\) has no content \(missing or null\)"),
        (4, "wrong_type", r"turn 1 \(assistant\) content is object, expected text"),
        (5, "wrong_type", r"turn 0 speaker/role is ubigint, expected text"),
        (6, "missing_field", r"turn 0 has no speaker/role \(missing or null\)"),
        (7, "wrong_type", r"turn 0 is varchar, expected a turn object"),
        (8, "wrong_type",
         r"turn 1 \(assistant\) content is a list whose item 0 is ubigint, expected text or "
         r"typed parts"),
        (9, "wrong_type",
         r"turn 1 \(assistant\) content is a list whose item 0 text is ubigint, expected .*"),
        (10, "wrong_type", r"field 'tools' is ubigint, expected tool definitions .*"),
    ]
    add(Case("wrong_types_openai", {"chats.jsonl": jsonl([*good, *bad])}, {"chats.jsonl": 23},
             [("chats.jsonl", 12 + i, code, detail) for i, code, detail in expected],
             held_back=False, texts=texts_of(good)))

    good = [sharegpt(i, "sg-types") for i in range(10)]
    h = {"from": "human", "value": "a"}
    bad = [{"conversations": [{"from": "human", "value": 12}, {"from": "gpt", "value": "x"}]},
           {"conversations": [{"from": "human", "value": ["a"]}, {"from": "gpt", "value": "x"}]},
           {"conversations": [h, {"from": "gpt", "value": None}]},
           {"conversations": [h, {"from": "gpt"}]},
           {"conversations": [{"from": ["human"], "value": "a"}, {"from": "gpt", "value": "x"}]},
           {"conversations": {"from": "human", "value": "a"}},
           {"conversations": [h, {"from": "gpt", "value": "x"}], "system": 5},
           {"conversations": [{"from": "system", "value": 5}, h,
                              {"from": "gpt", "value": "x"}]}]
    expected = [
        (0, "wrong_type", r"turn 0 \(human\) content is ubigint, expected text"),
        (1, "wrong_type",
         r"turn 0 \(human\) content is a list whose item 0 is varchar, expected .*"),
        (2, "missing_field", r"turn 1 \(gpt\) has no content \(missing or null\)"),
        (3, "missing_field", r"turn 1 \(gpt\) has no content \(missing or null\)"),
        (4, "wrong_type", r"turn 0 speaker/role is array, expected text"),
        (5, "wrong_type", r"field 'conversations' is object, expected a list of turn objects"),
        (6, "wrong_type", r"system prompt is ubigint, expected text"),
        (7, "wrong_type", r"turn 0 \(system\) content is ubigint, expected text"),
    ]
    add(Case("wrong_types_sharegpt", {"chats.json": json.dumps([*good, *bad]).encode()},
             {"chats.json": 18},
             [("chats.json", 10 + i, code, detail) for i, code, detail in expected],
             held_back=False, texts=texts_of(good)))

    good = [sharegpt(i, "roles") for i in range(4)]
    bad = [{"conversations": [h, {"from": "alien", "value": "x"}]},
           # an unknown speaker with an empty turn used to be dropped without a trace
           {"conversations": [h, {"from": "narrator", "value": ""},
                              {"from": "gpt", "value": "x"}]}]
    add(Case("unknown_roles", {"chats.json": json.dumps([*good, *bad]).encode()},
        {"chats.json": 6},
        [("chats.json", 4, "bad_role", r"turn 1: speaker 'alien' is not a known role \(map it "
                                       r"under roles: in sources.yaml\)"),
         ("chats.json", 5, "bad_role", r"turn 1: speaker 'narrator' is not a known role .*")],
        held_back=False, texts=texts_of(good)))

    good = [openai(i, "roles") for i in range(3)]
    bad = [{"messages": [u, {"role": "wizard", "content": "x"}]}]
    add(Case("unknown_roles_openai", {"chats.jsonl": jsonl([*good, *bad])},
             {"chats.jsonl": 4},
             [("chats.jsonl", 3, "bad_role", r"turn 1: speaker 'wizard' is not a known role .*")],
             held_back=False, texts=texts_of(good)))

    good = [sharegpt(i, "empty") for i in range(4)]
    bad = [{"conversations": []},
           {"conversations": [{"from": "system", "value": "Be brief."}]},
           {"conversations": [{"from": "human", "value": " "}, {"from": "gpt", "value": "x"}]}]
    add(Case("empty_conversations", {"chats.json": json.dumps([*good, *bad]).encode()},
             {"chats.json": 7},
        [("chats.json", 4, "empty_content", r"the conversation has no turns"),
         ("chats.json", 5, "bad_turn_order",
          r"conversation ends with turn 0 \(system\); the last turn must be the assistant's"),
         ("chats.json", 6, "empty_content", r"turn 0 \(human\) is empty")],
        held_back=False, texts=texts_of(good)))

    good = [openai(i, "empty") for i in range(3)]
    add(Case("empty_conversations_openai", {"chats.jsonl": jsonl([*good, {"messages": []}])},
             {"chats.jsonl": 4},
             [("chats.jsonl", 3, "empty_content", r"the conversation has no turns")],
             held_back=False, texts=texts_of(good)))

    # -- CSV, files that are not what their name says -------------------------------------
    good = [alpaca(i, "csv") for i in range(6)]
    rows = [f'"{r["instruction"]}",,"{r["output"]}"' for r in good]
    table = "\n".join(["instruction,input,output", *rows[:2], "only,two", *rows[2:4],
                       "one,two,three,four", *rows[4:]]) + "\n"
    add(Case("ragged_csv", {"table.csv": table.encode()}, {"table.csv": 8},
             [("table.csv", 2, "invalid_csv", r"line 4: 2 fields where the header has 3"),
              ("table.csv", 5, "invalid_csv", r"line 7: 4 fields where the header has 3")],
             held_back=False, texts=texts_of(good)))

    add(Case("zero_byte_file", {"empty.jsonl": b""}, {"empty.jsonl": 1},
             [("empty.jsonl", 0, "empty_file", r"the file is empty")], held_back=True))

    add(Case("binary_named_jsonl", {"blob.jsonl": bytes(range(256)) * 64}, {"blob.jsonl": 1},
             [("blob.jsonl", 0, "invalid_encoding",
               r"binary content: \d+ control bytes in the first 8192 bytes")], held_back=True))

    add(Case("json_gz_not_gzip", {
        "plain.json.gz": json.dumps([alpaca(0, "gz")]).encode(),
        "broken.json.gz": b"\x1f\x8b" + b"not a deflate stream" * 4},
        {"plain.json.gz": 1, "broken.json.gz": 1},
        [("plain.json.gz", 0, "unreadable_file",
          r"named \.gz but not gzip: starts with bytes 5b 7b, not 1f 8b"),
         ("broken.json.gz", 0, "unreadable_file", r"corrupt gzip stream: .+")],
        held_back=True))

    parquet = real("KentaNishi__2025_llm_comp_main/"
                   "structured_data_with_cot_dataset_512_v2__train-00000-of-00001.parquet")
    whole = parquet.read_bytes()
    add(Case("corrupt_parquet", {"cut.parquet": whole[: len(whole) // 2],
                                 "noise.parquet": b"PAR1" + bytes(200) + b"PAR1"},
             {"cut.parquet": 1, "noise.parquet": 1},
             [("cut.parquet", 0, "unreadable_file", r"not a readable Parquet file: .+"),
              ("noise.parquet", 0, "unreadable_file", r"not a readable Parquet file: .+")],
             held_back=True))

    add(Case("top_level_string", {"string.json": b'"just a string"\n'}, {"string.json": 1},
             [("string.json", 0, "not_a_record",
               r"the top-level JSON value is a string, expected an object or an array of "
               r"objects")], held_back=True))

    # -- the bad real files ------------------------------------------------------------------
    pydict = real("narendrasinghdangi__movie-recommandation/toy_chat_fine_tuning.jsonl")
    lines_text = pydict.read_text(encoding="utf-8").splitlines()
    add(Case("real_python_dict_jsonl", {pydict.name: pydict}, {pydict.name: len(lines_text)},
             [(pydict.name, i, "invalid_json",
               r"Python dict syntax \(single-quoted strings\), not JSON"
               if line.startswith("{'") else r"a bare text line, not a JSON record")
              for i, line in enumerate(lines_text)], held_back=True))

    missing = real("axolotl-ai-cloud__axolotl/conversation.missingturns.json")
    add(Case("real_missing_turns", {missing.name: missing}, {missing.name: 1},
             [(missing.name, 0, "empty_content", r"turn 1 \(gpt\) is empty")], held_back=True))
    return cases


GOOD = {
    "good_alpaca": real("hiyouga__LLaMA-Factory/identity.json"),
    "good_sharegpt": real("lm-sys__FastChat/dummy_conversation.json"),
}
#: The case sources, listed so collection does not build the corpus (a 50 MB record).
CASE_SOURCES = [
    "truncated_json_array", "truncated_jsonl_last_line", "invalid_utf8", "invalid_utf8_text",
    "nul_byte", "damaged_array_item",
    "fifty_megabyte_field", "deep_json_document", "deep_json_records", "wrong_types_alpaca",
    "wrong_types_openai", "wrong_types_sharegpt", "unknown_roles", "unknown_roles_openai",
    "empty_conversations", "empty_conversations_openai", "ragged_csv", "zero_byte_file",
    "binary_named_jsonl", "json_gz_not_gzip", "corrupt_parquet", "top_level_string",
    "real_python_dict_jsonl", "real_missing_turns",
]


@dataclass
class CorpusRun:
    paths: DataPaths
    outcome: PipelineOutcome
    cases: dict[str, Case]


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorpusRun]:
    """Every case as its own source beside two good real sources; one real run."""
    root = tmp_path_factory.mktemp("bad_input")
    cases = build_cases()
    assert [c.source for c in cases] == CASE_SOURCES
    paths = make_data_dir(root / "data", {name: [f] for name, f in GOOD.items()})
    for case in cases:
        folder = paths.raw / case.source
        folder.mkdir(parents=True)
        for name, content in case.files.items():
            if isinstance(content, Path):
                (folder / name).symlink_to(content)
            else:
                (folder / name).write_bytes(content)
    with dg.instance_for_test() as instance:
        outcome = run_all(paths, instance)
    yield CorpusRun(paths, outcome, {c.source: c for c in cases})


def test_good_sources_and_downstream_stages_carry_on(corpus_run: CorpusRun):
    got = {o.source: o for o in corpus_run.outcome.sources}
    assert set(got) == set(GOOD) | set(corpus_run.cases)
    for name, file in GOOD.items():
        assert got[name].published, (name, got[name].failed_checks, got[name].error)
        examples = pl.read_parquet(corpus_run.paths.normalized_file(name))
        assert examples.height == len(json.loads(file.read_text(encoding="utf-8")))
    for name, case in corpus_run.cases.items():
        assert got[name].error is None, (name, got[name].error)  # held back by a check only
        assert got[name].published == (not case.held_back), (name, got[name].failed_checks)
        if case.held_back:
            assert got[name].failed_checks == ["reject_rate_below_ceiling"], name
    # the later stages ran over every published source; a check may object to the content
    # of these small synthetic sources, but no stage may crash on what ingestion let through
    published = {n for n, o in got.items() if o.published}
    quality = pl.read_parquet(corpus_run.paths.quality / "quality.parquet")
    assert set(quality["source"].unique()) == published
    crashes = [f for f in corpus_run.outcome.downstream_failures
               if not re.fullmatch(r"\w+:\w+", f) and "AssetCheckFailedError" not in f]
    assert crashes == []


def _outputs(paths: DataPaths, source: str, held_back: bool
             ) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """(examples, rejects, report) of ``source``: staging when held back, else published."""
    if held_back:
        folder = paths.partition_dir(paths.staging, source)
        examples_file, rejects_file = folder / "examples.parquet", folder / "rejects.parquet"
    else:
        folder = paths.partition_dir(paths.normalized, source)
        examples_file, rejects_file = paths.normalized_file(source), paths.rejects_file(source)
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    return pl.read_parquet(examples_file), pl.read_parquet(rejects_file), report


@pytest.mark.parametrize("source", CASE_SOURCES)
def test_bad_records_are_rejects_with_precise_reasons(corpus_run: CorpusRun, source: str):
    case = corpus_run.cases[source]
    examples, rejects, report = _outputs(corpus_run.paths, source, case.held_back)
    prefix = f"raw/{source}/"
    got = {(r["source_file"].removeprefix(prefix), r["source_row"]): r
           for r in rejects.iter_rows(named=True)}
    want = {(f, row): (code, detail) for f, row, code, detail in case.rejects}
    assert sorted(got) == sorted(want)
    for key, (code, detail) in want.items():
        assert got[key]["reason_code"] == code, (key, got[key]["detail"])
        assert re.fullmatch(detail, got[key]["detail"]), (key, got[key]["detail"])
        assert got[key]["source"] == source
        assert got[key]["raw"] is None or len(got[key]["raw"]) <= 2000
    # every unit is exactly one example or one reject, and the counts add up
    units = {(f, row) for f, n in case.units.items()
             for row in (n if isinstance(n, list) else range(n))}
    rows = {(f.removeprefix(prefix), r) for f, r in examples.select("source_file", "source_row")
            .iter_rows()}
    assert rows | set(got) == units and not rows & set(got)
    read = len(units)
    assert (report["records_read"], report["rows"], report["rejects"]) == (
        read, examples.height, rejects.height)
    assert read == examples.height + rejects.height
    # the examples hold only texts of the good records: nothing stringified or invented
    contents = set(examples.select(pl.col("messages").list.eval(
        pl.element().struct.field("content"))).explode("messages").to_series().to_list())
    assert contents <= case.texts, sorted(contents - case.texts)[:5]
