"""Atomic writes: a crash midway never leaves a torn or missing export."""

from __future__ import annotations

import os
import stat

import polars as pl
import pytest

from instruct_assets.lib.export.atomic import atomic_write_bytes, atomic_write_text, atomic_writer
from instruct_assets.lib.export.common import write_lines


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_write_that_raises_midway_leaves_the_previous_file_untouched(tmp_path):
    target = tmp_path / "train.jsonl"
    atomic_write_text(target, '{"text":"old"}\n')

    def chunks():
        yield b'{"text":"new"}\n'
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write_bytes(target, chunks())
    assert target.read_bytes() == b'{"text":"old"}\n'
    assert _leftovers(tmp_path) == []


def test_a_failed_first_write_leaves_no_file_and_no_temp_file(tmp_path):
    target = tmp_path / "sub" / "train.json"
    with pytest.raises(ValueError), atomic_writer(target) as handle:
        handle.write(b"[\n")
        raise ValueError("boom")
    assert not target.exists()
    assert _leftovers(target.parent) == []


def test_a_successful_write_replaces_the_file_and_cleans_up(tmp_path):
    target = tmp_path / "a" / "b" / "out.txt"
    assert atomic_write_bytes(target, [b"one ", b"two"]) == 7
    assert atomic_write_text(target, "é\n") == 3
    assert target.read_bytes() == "é\n".encode()
    assert _leftovers(target.parent) == []


def test_written_files_get_ordinary_permissions_not_the_temp_files_0600(tmp_path):
    umask = os.umask(0o022)
    try:
        target = tmp_path / "x.txt"
        atomic_write_text(target, "x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_a_line_holding_a_raw_newline_is_refused_and_the_old_file_kept(tmp_path):
    target = tmp_path / "lines.jsonl"
    write_lines(target, pl.Series(["{}", "{}"]))
    before = target.read_bytes()
    with pytest.raises(ValueError, match="raw newline"):
        write_lines(target, pl.Series(['{"a":1}', "{\n}"]))
    with pytest.raises(ValueError, match="null"):
        write_lines(target, pl.Series(['{"a":1}', None]))
    assert target.read_bytes() == before == b"{}\n{}\n"


def test_json_arrays_put_one_element_per_line_with_commas_between(tmp_path):
    target = tmp_path / "a.json"
    write_lines(target, pl.Series(['{"a":1}', '{"b":2}', '{"c":3}']), json_array=True)
    assert target.read_bytes() == b'[\n{"a":1},\n{"b":2},\n{"c":3}\n]\n'
    write_lines(target, pl.Series(['{"a":1}']), json_array=True)
    assert target.read_bytes() == b'[\n{"a":1}\n]\n'
    write_lines(target, pl.Series([], dtype=pl.String), json_array=True)
    assert target.read_bytes() == b"[]\n"


def test_long_writes_start_the_writeback_early_and_keep_every_byte(tmp_path, monkeypatch):
    from instruct_assets.lib.export import atomic, common

    calls = []
    monkeypatch.setattr(common, "WRITEBACK_BYTES", 10)
    monkeypatch.setattr(common, "start_writeback",
                        lambda handle: calls.append(atomic.start_writeback(handle)))
    target = tmp_path / "a.json"
    lines = [pl.Series([f'{{"n":{i}}}'] * 3) for i in range(4)]
    write_lines(target, iter(lines), json_array=True)
    body = ",\n".join(f'{{"n":{i}}}' for i in range(4) for _ in range(3))
    assert target.read_bytes() == ("[\n" + body + "\n]\n").encode()
    assert len(calls) == 4  # every chunk of 3 lines (21 bytes) passes the 10-byte mark
