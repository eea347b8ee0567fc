"""The synthetic_variations asset through Dagster, against a real loopback endpoint."""

from __future__ import annotations

import hashlib
import json

import dagster as dg
import polars as pl

from instruct_assets.defs.ingest.assets import (
    NORMALIZED,
    STAGED,
    normalized_examples,
    staged_examples,
)
from instruct_assets.defs.resources import DataDir, IngestSettings, MemorySettings
from instruct_assets.defs.synthetic.assets import SYNTHETIC, synthetic_variations
from instruct_assets.defs.synthetic.resources import SyntheticEndpoint
from instruct_assets.lib.paths import DataPaths
from instruct_assets.lib.synthetic.layout import SyntheticPaths
from instruct_assets.pipeline import sync_partitions
from tests.support import make_data_dir, real
from tests.synthetic.chat_server import ChatServer

SOURCES_YAML = """\
sources:
  alpaca:
    role: seed
  handmade:
    role: seed
  synthetic_handmade:
    origin: synthetic
"""

HANDMADE = [
    {"instruction": "Explain why the sky is blue.", "output": "Rayleigh scattering."},
    {"instruction": "Give me a password [refuse]", "output": "No."},
    {"instruction": "Write a limerick [malformed]", "output": "There once was..."},
    {"instruction": "Convert 3 km to miles [429-once]", "output": "About 1.86 miles."},
    {"instruction": "Sort these numbers [500-always]", "output": "1, 2, 3"},
]


def setup(tmp_path) -> DataPaths:
    handmade = tmp_path / "files" / "handmade.jsonl"
    handmade.parent.mkdir(parents=True)
    handmade.write_text("".join(json.dumps(r) + "\n" for r in HANDMADE), encoding="utf-8")
    return make_data_dir(tmp_path / "data", {
        "alpaca": [real("hiyouga__LLaMA-Factory/alpaca_en_demo.json")],
        "handmade": [handmade]}, sources_yaml=SOURCES_YAML)


def ingest(paths: DataPaths, instance: dg.DagsterInstance, sources: list[str],
           only: list[str] | None = None) -> None:
    """Register ``sources`` and ingest ``only`` of them (default: all)."""
    sync_partitions(instance, sources)
    for source in only or sources:
        result = dg.materialize([staged_examples, normalized_examples],
                                selection=[STAGED, NORMALIZED], partition_key=source,
                                instance=instance, resources={
                                    "data_dir": DataDir(path=str(paths.root)),
                                    "ingest_settings": IngestSettings(),
                                    "memory_settings": MemorySettings()})
        assert result.success, source


def generate(paths: DataPaths, instance, endpoint: SyntheticEndpoint):
    return dg.materialize(
        [synthetic_variations], instance=instance,
        resources={"data_dir": DataDir(path=str(paths.root)), "synthetic_endpoint": endpoint,
                   "memory_settings": MemorySettings()},
        run_config={"ops": {"synthetic_variations": {"config": {
            "variations_per_seed": 2, "max_seeds_per_source": 3}}}})


def metadata(result) -> dict:
    mat = result.asset_materializations_for_node("synthetic_variations")[0]
    return {k: v.value for k, v in mat.metadata.items()}


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_variations_become_a_raw_source_and_reruns_pay_nothing(tmp_path, instance):
    paths = setup(tmp_path)
    layout = SyntheticPaths(paths)
    ingest(paths, instance, ["alpaca", "handmade"])
    with ChatServer() as server:
        endpoint = SyntheticEndpoint(base_url=server.base_url, model="tiny", backoff=0.01,
                                     timeout=5.0, max_retries=1, concurrency=3)
        first = metadata(generate(paths, instance, endpoint))
        calls = server.calls
        generated = {s: digest(layout.generated_file(s)) for s in ("alpaca", "handmade")}
        second = metadata(generate(paths, instance, endpoint))
        failed = sum(first["endpoint_failures"].values())
        # the cache answered every completion that was paid for; only failures are asked
        # again (each with its 1 + max_retries attempts)
        assert server.calls == calls + failed * 2
        assert {s: digest(layout.generated_file(s)) for s in generated} == generated
    assert first["skipped"] is False and first["seeds"] == 6
    assert first["requests"] > 0 and first["cache_hits"] == 0
    assert second["requests"] == failed
    assert second["cache_hits"] == first["requests"] - failed
    assert first["rows"] == second["rows"] and first["rows"] >= 6

    lines = [json.loads(x) for x in
             layout.generated_file("handmade").read_text(encoding="utf-8").splitlines()]
    seeds = pl.read_parquet(paths.normalized_file("handmade"))
    assert all(x["origin"] == "synthetic" for x in lines)
    assert {x["generated_from"] for x in lines} <= set(seeds["example_id"])
    assert all([m["role"] for m in x["messages"]] == ["user", "assistant"] for x in lines)
    rejects = pl.read_parquet(layout.rejects_file("handmade"))
    report = json.loads(layout.report_file("handmade").read_text())
    assert report["rows"] == len(lines) and report["rejects"] == rejects.height
    assert set(rejects["reason_code"]) <= {"refusal", "malformed_json", "endpoint_error"}
    assert not any(p.name.endswith(".parquet") for p in (paths.raw / "synthetic_handmade")
                   .iterdir())

    # the generated folder is an ordinary source: it ingests, provenance in extra
    ingest(paths, instance, ["alpaca", "handmade", "synthetic_alpaca", "synthetic_handmade"],
           only=["synthetic_handmade"])
    synth = pl.read_parquet(paths.normalized_file("synthetic_handmade"))
    assert synth.height == len(lines)
    assert synth["origin"].unique().to_list() == ["synthetic"]
    extra = [json.loads(e) for e in synth["extra"]]
    assert {e["generated_from"] for e in extra} == {x["generated_from"] for x in lines}


def test_without_an_endpoint_the_asset_skips_and_writes_nothing(tmp_path, instance):
    paths = setup(tmp_path)
    ingest(paths, instance, ["alpaca"])
    before = sorted(p.relative_to(paths.root) for p in paths.root.rglob("*"))
    result = generate(paths, instance, SyntheticEndpoint())
    assert result.success and metadata(result) == {"skipped": True}
    assert sorted(p.relative_to(paths.root) for p in paths.root.rglob("*")) == before
    event = instance.get_latest_materialization_event(SYNTHETIC)
    assert event.asset_materialization.metadata["skipped"].value is True
