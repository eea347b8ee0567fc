"""Synthetic stage: variations of seed instructions, written back as a raw source.

Thin wiring around ``lib.synthetic``. Sources marked ``role: seed`` in ``sources.yaml`` are
the seeds; each becomes ``raw/synthetic_<seed source>/generated.jsonl``, which the source
sensor then ingests like any other folder. Without a configured endpoint the asset skips.
"""

import dagster as dg
import polars as pl

from instruct_assets.defs.ingest.assets import NORMALIZED
from instruct_assets.defs.metadata import counts_markdown, markdown_table
from instruct_assets.defs.quality.assets import registered_sources
from instruct_assets.defs.resources import DataDir, MemorySettings
from instruct_assets.defs.synthetic.resources import SyntheticEndpoint
from instruct_assets.lib.chunks import iter_parquet_chunks
from instruct_assets.lib.sources import discover_sources
from instruct_assets.lib.stage_io import live_sources
from instruct_assets.lib.synthetic.cache import CompletionCache
from instruct_assets.lib.synthetic.generate import (
    GenerationConfig,
    generate,
    select_seeds,
    write_outputs,
)
from instruct_assets.lib.synthetic.layout import SyntheticPaths

SYNTHETIC = dg.AssetKey("synthetic_variations")


class SyntheticConfig(dg.Config):
    """How much to generate per run (see ``lib.synthetic.generate.GenerationConfig``)."""

    variations_per_seed: int = 3
    max_seeds_per_source: int = 50
    seed: str = "instruct-assets-synthetic-v1"


@dg.asset(
    key=SYNTHETIC, deps=[NORMALIZED], group_name="synthetic", kinds={"python", "json"},
    code_version="synthetic-1",
    description=(
        "For each source marked role: seed in sources.yaml, asks the configured "
        "OpenAI-compatible endpoint for N variations of each seed instruction and a response "
        "to each, validates them (empty, identical to the seed, malformed JSON, refusals "
        "are rejected with a reason) and writes the rest to "
        "raw/synthetic_<seed source>/generated.jsonl (OpenAI messages, origin synthetic, "
        "generated_from = seed example_id). Completions are cached under synthetic_cache/: "
        "a re-run pays only for what it lacks. Skips when no endpoint is configured."),
)
def synthetic_variations(context: dg.AssetExecutionContext, config: SyntheticConfig,
                         data_dir: DataDir, synthetic_endpoint: SyntheticEndpoint,
                         memory_settings: MemorySettings
                         ) -> dg.MaterializeResult:
    if not synthetic_endpoint.configured:
        context.log.info("synthetic_variations skipped: no endpoint configured "
                         "(SyntheticEndpoint.base_url is empty)")
        return dg.MaterializeResult(metadata={"skipped": True})
    paths = data_dir.paths
    layout = SyntheticPaths(paths)
    specs = discover_sources(paths)
    seed_sources = sorted(name for name, spec in specs.items() if spec.role == "seed")
    live = live_sources(paths, registered_sources(context))
    unpublished = [s for s in seed_sources if s not in live]
    if unpublished:
        context.log.warning(f"seed source(s) not published yet, left out: {unpublished}")
    seed_sources = [s for s in seed_sources if s in live]
    cfg = GenerationConfig(variations_per_seed=config.variations_per_seed,
                           max_seeds_per_source=config.max_seeds_per_source,
                           concurrency=synthetic_endpoint.concurrency, seed=config.seed)
    files = [f for s in seed_sources if (f := paths.normalized_file(s)).exists()]
    seeds = select_seeds(iter_parquet_chunks(
        files, ["source", "example_id", "messages"], memory_settings.chunk_rows), cfg)
    client = synthetic_endpoint.client()
    cache = CompletionCache(layout.cache)
    result = generate(seeds, client, cache, cfg, log=context.log.info)

    per_source = []
    files: dict[str, str] = {}
    for source in seed_sources:
        rows = result.rows.filter(pl.col("seed_source") == source)
        rejects = result.rejects.filter(pl.col("seed_source") == source)
        by_reason = dict(rejects.group_by("reason_code").len().sort("reason_code").iter_rows())
        report = {"seed_source": source, "synthetic_source": layout.source_name(source),
                  "model": client.cfg.model,
                  "seeds": seeds.filter(pl.col("source") == source).height,
                  "variations_per_seed": cfg.variations_per_seed, "rows": rows.height,
                  "rejects": rejects.height, "rejects_by_reason": by_reason}
        written = write_outputs(layout, source, result.rows, result.rejects,
                                client.cfg.model, report)
        files.update({f"{source}_{k}": str(v) for k, v in written.items()})
        per_source.append({k: v for k, v in report.items() if k != "rejects_by_reason"})
    by_reason = dict(result.rejects.group_by("reason_code").len().sort("reason_code")
                     .iter_rows())
    context.log.info(f"{result.rows.height} rows, {result.rejects.height} rejects, "
                     f"{result.requests} paid requests, {result.cache_hits} cache hits")
    return dg.MaterializeResult(metadata={
        "skipped": False,
        "seed_sources": seed_sources,
        "seeds": seeds.height,
        "rows": result.rows.height,
        "rejects": result.rejects.height,
        "requests": result.requests,
        "cache_hits": result.cache_hits,
        "retries": result.retries,
        "endpoint_failures": result.failures,
        "model": client.cfg.model,
        "rejects_by_reason": dg.MetadataValue.md(counts_markdown(by_reason, "reason_code")),
        "by_source": dg.MetadataValue.md(markdown_table(pl.DataFrame(per_source), limit=50)),
        **{k: dg.MetadataValue.path(v) for k, v in files.items()},
    })
