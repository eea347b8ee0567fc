"""ExportSettings (which kinds the stage writes) and the round trip's line sampling."""

from __future__ import annotations

import random

import dagster as dg
import pytest

from instruct_assets.defs.settings import ExportSettings
from instruct_assets.lib import export_stats
from instruct_assets.lib.export.writers import KINDS


def test_the_default_exports_are_every_format_and_chatml_text():
    assert ExportSettings().kinds() == [
        "openai", "openai_parquet", "sharegpt", "alpaca", "text_chatml"]


def test_all_three_templates_can_be_asked_for():
    settings = ExportSettings(templates=["chatml", "llama3", "alpaca"])
    assert settings.kinds() == list(KINDS)


def test_unknown_formats_and_templates_are_refused_by_name():
    with pytest.raises(dg.Failure, match=r"unknown export format\(s\) \['csv'\]"):
        ExportSettings(formats=["openai", "csv"]).kinds()
    with pytest.raises(dg.Failure, match=r"unknown template\(s\) \['vicuna'\]"):
        ExportSettings(templates=["vicuna"]).kinds()


def _reference_sample(data: bytes, step: int, count: int) -> bytes:
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return b"".join(line + b"\n" for line in lines[::step][:count])


@pytest.mark.parametrize("block", [1, 3, 7, 1 << 20])
def test_sampled_lines_are_every_kth_line_whatever_the_read_block(tmp_path, monkeypatch, block):
    monkeypatch.setattr(export_stats, "BLOCK_BYTES", block)
    rng = random.Random(block)
    path = tmp_path / "lines.jsonl"
    for _ in range(200):
        lines = [bytes(rng.choice(b"ab{}") for _ in range(rng.randint(0, 12)))
                 for _ in range(rng.randint(0, 30))]
        data = b"\n".join(lines) + (b"\n" if lines and rng.random() < 0.8 else b"")
        path.write_bytes(data)
        step, count = rng.randint(1, 4), rng.randint(0, 20)
        assert export_stats.sample_lines(path, step, count) == _reference_sample(
            data, step, count)
