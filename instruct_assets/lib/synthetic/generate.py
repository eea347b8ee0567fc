"""seed -> generate -> validate -> filter, and the raw source it produces.

Seeds are the published examples of sources marked ``role: seed`` in ``sources.yaml``; at
most ``max_seeds_per_source`` per source, picked by a seeded md5 of their id (the same
seeds on every run, whatever the row order). Each seed's instruction is its first user
turn; its system prompt, if any, is reused for the responses.

The endpoint is asked once per seed for ``variations_per_seed`` variations, then once per
valid variation for its response. Requests run ``concurrency`` at a time; each is looked up
in the cache first, so a re-run pays only for what it does not have. Rows and rejects come
back as frames sorted by (seed, variation), so the written files are byte-identical for
the same cache.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from instruct_assets.lib.parquet_io import atomic_path, write_parquet
from instruct_assets.lib.synthetic.cache import CompletionCache, cache_key
from instruct_assets.lib.synthetic.client import ChatClient, ChatResult, Messages
from instruct_assets.lib.synthetic.layout import SyntheticPaths
from instruct_assets.lib.synthetic.prompts import response_messages, variation_messages
from instruct_assets.lib.synthetic.validate import (
    instruction_reason,
    parse_variations,
    response_reason,
)

SEED_COLUMNS = ["source", "example_id", "instruction", "system"]

REJECTS_SCHEMA = pl.Schema({
    "seed_source": pl.String,
    "seed_example_id": pl.String,
    "variation_index": pl.Int64,
    "stage": pl.String,
    "reason_code": pl.String,
    "detail": pl.String,
    "instruction": pl.String,
    "response": pl.String,
})

ROWS_SCHEMA = pl.Schema({
    "seed_source": pl.String,
    "seed_example_id": pl.String,
    "variation_index": pl.Int64,
    "system": pl.String,
    "instruction": pl.String,
    "response": pl.String,
})


@dataclass(frozen=True)
class GenerationConfig:
    """How much to generate."""

    #: Variations asked for per seed instruction.
    variations_per_seed: int = 3
    #: Seeds per seed source (a seeded hash sample when the source has more).
    max_seeds_per_source: int = 50
    #: Requests in flight at once.
    concurrency: int = 4
    #: Part of the hashed text that picks the seeds.
    seed: str = "instruct-assets-synthetic-v1"


@dataclass
class GenerationResult:
    rows: pl.DataFrame
    rejects: pl.DataFrame
    requests: int = 0
    cache_hits: int = 0
    retries: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)


def select_seeds(examples: pl.DataFrame | Iterable[pl.DataFrame], cfg: GenerationConfig
                 ) -> pl.DataFrame:
    """(source, example_id, instruction, system) of the chosen seeds, sorted.

    ``examples``: one frame, or chunks of it (``lib.chunks``); only each source's best
    ``max_seeds_per_source`` candidates are kept across chunks, so the choice is the same
    and memory holds one chunk.
    """
    chunks = [examples] if isinstance(examples, pl.DataFrame) else examples
    kept = pl.DataFrame(schema={**dict.fromkeys(SEED_COLUMNS, pl.String), "_r": pl.String})
    for chunk in chunks:
        kept = _best_per_source(pl.concat([kept, _candidates(chunk, cfg)]), cfg)
    return kept.drop("_r").sort("source", "example_id")


def _candidates(examples: pl.DataFrame, cfg: GenerationConfig) -> pl.DataFrame:
    """Every example with a non-empty instruction, with its seeded rank ``_r``."""
    schema = {**dict.fromkeys(SEED_COLUMNS, pl.String), "_r": pl.String}
    if examples.height == 0:
        return pl.DataFrame(schema=schema)
    role = pl.element().struct.field("role")
    content = pl.element().struct.field("content")
    frame = examples.select(
        "source", "example_id",
        pl.col("messages").list.eval(content.filter(role == "user")).list.first()
        .alias("instruction"),
        pl.col("messages").list.eval(content.filter(role == "system")).list.first()
        .alias("system"),
    ).filter(pl.col("instruction").str.strip_chars() != "")
    keys = frame.select("source", "example_id")  # noqa: F841 - read by DuckDB by name
    con = duckdb.connect()
    try:
        ranks = con.sql("SELECT md5($seed || chr(31) || source || chr(31) || example_id) AS r "
                        "FROM keys", params={"seed": cfg.seed}).pl()["r"]
    finally:
        con.close()
    return frame.with_columns(_r=ranks).select(*schema)


def _best_per_source(frame: pl.DataFrame, cfg: GenerationConfig) -> pl.DataFrame:
    return (frame.sort("_r", "example_id")
            .filter(pl.int_range(pl.len()).over("source") < cfg.max_seeds_per_source))


class _Caller:
    """Cache lookup, then the endpoint; records what was paid for and what failed."""

    def __init__(self, client: ChatClient, cache: CompletionCache, model: str):
        self.client, self.cache, self.model = client, cache, model
        self.requests = 0
        self.retries: dict[str, int] = {}
        self.failures: dict[str, int] = {}
        self._lock = threading.Lock()  # counters are updated from the worker threads

    def __call__(self, seed_id: str, messages: Messages) -> ChatResult:
        key = cache_key(seed_id, messages, self.model)
        cached = self.cache.get(key)
        if cached is not None:
            return ChatResult(cached, attempts=0)
        result = self.client.complete(messages)
        if result.ok:
            self.cache.put(key, seed_id, messages, self.model, result.content or "")
        with self._lock:
            self.requests += 1  # one logical request (its retries are counted apart)
            for kind in result.retried:
                self.retries[kind] = self.retries.get(kind, 0) + 1
            if not result.ok:
                kind = result.error or "unknown"
                self.failures[kind] = self.failures.get(kind, 0) + 1
        return result


def _run(calls: list[tuple[str, Messages]], caller: _Caller, concurrency: int
         ) -> list[ChatResult]:
    """Every call, ``concurrency`` at a time; results in call order."""
    if not calls:
        return []
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return list(pool.map(lambda c: caller(*c), calls))


def _reject(seed: dict, index: int | None, stage: str, code: str, detail: str | None,
            instruction: str | None = None, response: str | None = None) -> dict:
    return {"seed_source": seed["source"], "seed_example_id": seed["example_id"],
            "variation_index": index, "stage": stage, "reason_code": code, "detail": detail,
            "instruction": instruction, "response": None if response is None
            else response[:2000]}


def generate(seeds: pl.DataFrame, client: ChatClient, cache: CompletionCache,
             cfg: GenerationConfig, log: Callable[[str], None] = lambda _m: None
             ) -> GenerationResult:
    """Variations and responses for ``seeds`` (from :func:`select_seeds`), validated."""
    caller = _Caller(client, cache, client.cfg.model)
    n = cfg.variations_per_seed
    seed_rows = seeds.to_dicts()
    rejects: list[dict] = []

    asked = _run([(s["example_id"], variation_messages(s["instruction"], n))
                  for s in seed_rows], caller, cfg.concurrency)
    candidates: list[dict] = []
    for seed, result in zip(seed_rows, asked, strict=True):
        if not result.ok:
            rejects.append(_reject(seed, None, "variations", "endpoint_error",
                                   f"{result.error}: {result.detail}"))
            continue
        try:
            variations = parse_variations(result.content or "", n)
        except ValueError as exc:
            rejects.append(_reject(seed, None, "variations", "malformed_json", str(exc),
                                   response=result.content))
            continue
        candidates += [{"seed_source": seed["source"], "seed_example_id": seed["example_id"],
                        "variation_index": i, "system": seed["system"], "instruction": v,
                        "seed_instruction": seed["instruction"]}
                       for i, v in enumerate(variations)]
    log(f"{len(seed_rows)} seeds -> {len(candidates)} candidate instructions")

    frame = pl.DataFrame(candidates, schema={**ROWS_SCHEMA, "seed_instruction": pl.String}
                         ).drop("response")
    frame = frame.sort("seed_source", "seed_example_id", "variation_index").with_columns(
        _reason=instruction_reason())
    bad = frame.filter(pl.col("_reason").is_not_null())
    rejects += [{"seed_source": r["seed_source"], "seed_example_id": r["seed_example_id"],
                 "variation_index": r["variation_index"], "stage": "variations",
                 "reason_code": r["_reason"], "detail": None, "instruction": r["instruction"],
                 "response": None} for r in bad.iter_rows(named=True)]
    good = frame.filter(pl.col("_reason").is_null()).drop("_reason")

    answers = _run([(r["seed_example_id"], response_messages(r["instruction"], r["system"]))
                    for r in good.iter_rows(named=True)], caller, cfg.concurrency)
    failed = [not a.ok for a in answers]
    for row, answer in zip(good.iter_rows(named=True), answers, strict=True):
        if not answer.ok:
            rejects.append({**_reject({"source": row["seed_source"],
                                       "example_id": row["seed_example_id"]},
                                      row["variation_index"], "response", "endpoint_error",
                                      f"{answer.error}: {answer.detail}",
                                      instruction=row["instruction"])})
    answered = good.with_columns(
        response=pl.Series([a.content for a in answers], dtype=pl.String),
        _failed=pl.Series(failed, dtype=pl.Boolean),
    ).filter(~pl.col("_failed")).with_columns(_reason=response_reason())
    bad = answered.filter(pl.col("_reason").is_not_null())
    rejects += [{"seed_source": r["seed_source"], "seed_example_id": r["seed_example_id"],
                 "variation_index": r["variation_index"], "stage": "response",
                 "reason_code": r["_reason"], "detail": None, "instruction": r["instruction"],
                 "response": (r["response"] or "")[:2000]}
                for r in bad.iter_rows(named=True)]
    rows = (answered.filter(pl.col("_reason").is_null())
            .select(ROWS_SCHEMA.names()).sort("seed_source", "seed_example_id",
                                              "variation_index"))
    rejected = pl.DataFrame(rejects, schema=REJECTS_SCHEMA).sort(
        "seed_source", "seed_example_id", "variation_index", "stage", nulls_last=False)
    return GenerationResult(rows, rejected, caller.requests, cache.hits,
                            dict(sorted(caller.retries.items())),
                            dict(sorted(caller.failures.items())))


def records_jsonl(rows: pl.DataFrame, model: str) -> str:
    """Generated rows as OpenAI-messages JSONL with their provenance.

    ``origin: synthetic`` and ``generated_from`` (the seed's example_id) are kept in the
    record, so ingestion puts them in ``extra``.
    """
    system = pl.struct(pl.lit("system").alias("role"), pl.col("system").alias("content"))
    user = pl.struct(pl.lit("user").alias("role"), pl.col("instruction").alias("content"))
    assistant = pl.struct(pl.lit("assistant").alias("role"),
                          pl.col("response").alias("content"))
    messages = (pl.when(pl.col("system").is_not_null() & (pl.col("system") != ""))
                .then(pl.concat_list(system, user, assistant))
                .otherwise(pl.concat_list(user, assistant)))
    lines = rows.select(pl.struct(
        messages.alias("messages"), pl.lit("synthetic").alias("origin"),
        pl.col("seed_example_id").alias("generated_from"),
        pl.col("seed_source").alias("seed_source"),
        pl.col("variation_index"), pl.lit(model).alias("generator_model"),
    ).struct.json_encode())[:, 0]
    return "".join(f"{line}\n" for line in lines.to_list())


def write_outputs(layout: SyntheticPaths, seed_source: str, rows: pl.DataFrame,
                  rejects: pl.DataFrame, model: str, report: dict) -> dict[str, Path]:
    """Write one seed source's raw file (when it has rows), rejects and report."""
    out: dict[str, Path] = {}
    mine = rows.filter(pl.col("seed_source") == seed_source)
    if mine.height:
        target = layout.generated_file(seed_source)
        with atomic_path(target) as tmp:
            tmp.write_bytes(records_jsonl(mine, model).encode("utf-8"))
        out["generated"] = target
    out["rejects"] = write_parquet(rejects.filter(pl.col("seed_source") == seed_source),
                                   layout.rejects_file(seed_source), REJECTS_SCHEMA)
    with atomic_path(layout.report_file(seed_source)) as tmp:
        tmp.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    out["report"] = layout.report_file(seed_source)
    return out
