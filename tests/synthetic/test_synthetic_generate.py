"""seed -> generate -> validate -> filter against a real loopback server, and the cache."""

from __future__ import annotations

import json

import polars as pl
import pytest

from instruct_assets.lib.normalize import normalize_source
from instruct_assets.lib.paths import DataPaths
from instruct_assets.lib.sources import SourceSpec
from instruct_assets.lib.synthetic.cache import CompletionCache, cache_key
from instruct_assets.lib.synthetic.client import ChatClient, EndpointConfig
from instruct_assets.lib.synthetic.generate import (
    GenerationConfig,
    generate,
    records_jsonl,
    select_seeds,
)
from instruct_assets.lib.synthetic.validate import parse_variations
from tests.support import make_data_dir, real
from tests.synthetic.chat_server import ChatServer


def seeds_frame(instructions: list[str], source: str = "seeds") -> pl.DataFrame:
    return pl.DataFrame({"source": [source] * len(instructions),
                         "example_id": [f"s{i:02d}" for i in range(len(instructions))],
                         "instruction": instructions,
                         "system": [None] * len(instructions)}, schema={
        "source": pl.String, "example_id": pl.String, "instruction": pl.String,
        "system": pl.String})


def make_client(server: ChatServer, **kw) -> ChatClient:
    settings = {"timeout": 5.0, "max_retries": 2, "backoff": 0.01, **kw}
    return ChatClient(EndpointConfig(base_url=server.base_url, model="m1", **settings))


@pytest.mark.parametrize("content, expected", [
    ('["a", "b", "c"]', ["a", "b"]),
    ('```json\n["a"]\n```', ["a"]),
    ('{"variations": ["x", "y"]}', ["x", "y"]),
])
def test_variations_parse_from_the_shapes_models_return(content, expected):
    assert parse_variations(content, 2) == expected


@pytest.mark.parametrize("content", ["Here you go: a, b", '["a", 3]', '{"x": 1}', ""])
def test_anything_else_is_malformed(content):
    with pytest.raises(ValueError):
        parse_variations(content, 3)


def test_rows_are_validated_and_every_failure_has_a_reason(tmp_path):
    seeds = seeds_frame([
        "Explain photosynthesis.",
        "List three prime numbers [identical]",
        "Name a colour [empty]",
        "Describe rain [dup]",
        "Tell me a secret [refuse]",
        "Say nothing [blank]",
        "Write a haiku [malformed]",
        "Count to ten [500-always]",
        "Define entropy [429-once]",
    ])
    with ChatServer() as server:
        result = generate(seeds, make_client(server), CompletionCache(tmp_path / "cache"),
                          GenerationConfig(variations_per_seed=2, concurrency=3))
    rows, rejects = result.rows, result.rejects
    reasons = dict(rejects.group_by("reason_code").len().iter_rows())
    # [identical]/[empty]/[dup]: one bad variation each; [refuse]/[blank]: both answers bad;
    # [malformed] and [500-always]: the whole seed
    assert reasons == {"identical_to_seed": 1, "empty": 3, "duplicate_variation": 1,
                       "refusal": 2, "malformed_json": 1, "endpoint_error": 1}
    assert rejects.filter(pl.col("reason_code") == "endpoint_error")["detail"].item() \
        .startswith("http_500")
    # accounting: 7 seeds answered the variation request with 2 variations each
    assert rows.height + rejects.filter(pl.col("variation_index").is_not_null()).height == 14
    assert rows.height == 7
    assert set(rows["seed_example_id"]) == {"s00", "s01", "s02", "s03", "s08"}
    # 429s retried once per prompt (3 prompts), the 500 retried max_retries (2) times
    assert result.retries == {"http_429": 3, "http_500": 2}
    assert result.failures == {"http_500": 1}
    photo = rows.filter(pl.col("seed_example_id") == "s00").sort("variation_index")
    assert photo["instruction"].to_list() == ["Variant 1 of: Explain photosynthesis.",
                                              "Variant 2 of: Explain photosynthesis."]
    assert photo["response"][0] == "Answer to: Variant 1 of: Explain photosynthesis."


def test_the_cache_prevents_paying_twice(tmp_path):
    seeds = seeds_frame(["Explain gravity.", "Summarise a book [429-once]"])
    cfg = GenerationConfig(variations_per_seed=3, concurrency=2)
    with ChatServer() as server:
        first = generate(seeds, make_client(server), CompletionCache(tmp_path / "c"), cfg)
        paid = server.calls
        assert first.requests == 2 + 6 and first.cache_hits == 0
        again = generate(seeds, make_client(server), CompletionCache(tmp_path / "c"), cfg)
        assert server.calls == paid  # nothing re-requested
        assert again.requests == 0 and again.cache_hits == 8
        assert again.rows.equals(first.rows) and again.rejects.equals(first.rejects)
        # a new seed pays only for itself; another model is another key
        more = generate(seeds_frame(["Explain gravity.", "Summarise a book [429-once]",
                                     "Name a river."]), make_client(server),
                        CompletionCache(tmp_path / "c"), cfg)
        assert server.calls == paid + 1 + 3 and more.requests == 4
    messages = [{"role": "user", "content": "x"}]
    assert cache_key("s1", messages, "m1") != cache_key("s1", messages, "m2")
    assert cache_key("s1", messages, "m1") != cache_key("s2", messages, "m1")


def test_failures_are_not_cached_so_a_rerun_retries_them(tmp_path):
    seeds = seeds_frame(["Fails [500-always]"])
    cfg = GenerationConfig(variations_per_seed=1)
    with ChatServer() as server:
        generate(seeds, make_client(server, max_retries=0), CompletionCache(tmp_path), cfg)
        generate(seeds, make_client(server, max_retries=0), CompletionCache(tmp_path), cfg)
        assert server.calls == 2
    assert not any(tmp_path.rglob("*.json"))


def test_generated_records_are_openai_messages_with_provenance(tmp_path):
    seeds = seeds_frame(["Explain tides."]).with_columns(system=pl.lit("Be brief."))
    with ChatServer() as server:
        result = generate(seeds, make_client(server), CompletionCache(tmp_path / "c"),
                          GenerationConfig(variations_per_seed=1))
    line = json.loads(records_jsonl(result.rows, "m1"))
    assert line["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Variant 1 of: Explain tides."},
        {"role": "assistant", "content": "Answer to: Variant 1 of: Explain tides."}]
    assert line["origin"] == "synthetic" and line["generated_from"] == "s00"
    assert line["generator_model"] == "m1"


def test_seed_selection_is_by_hash_not_row_order(tmp_path):
    paths: DataPaths = make_data_dir(tmp_path, {
        "alpaca": [real("hiyouga__LLaMA-Factory/alpaca_en_demo.json")]})
    examples = normalize_source(paths, SourceSpec(name="alpaca")).examples
    cfg = GenerationConfig(max_seeds_per_source=7)
    one = select_seeds(examples, cfg)
    two = select_seeds(examples.sample(fraction=1.0, shuffle=True, seed=3), cfg)
    assert one.height == 7 and one.equals(two)
    assert one["instruction"].str.len_chars().min() > 0
    other = select_seeds(examples, GenerationConfig(max_seeds_per_source=7, seed="other"))
    assert set(other["example_id"]) != set(one["example_id"])


def test_seed_selection_in_chunks_equals_one_frame(tmp_path):
    """Seeds chosen chunk by chunk (bounded memory) are the seeds of the whole frame."""
    paths: DataPaths = make_data_dir(tmp_path, {
        "alpaca": [real("hiyouga__LLaMA-Factory/alpaca_en_demo.json")],
        "identity": [real("hiyouga__LLaMA-Factory/identity.json")]})
    examples = pl.concat([normalize_source(paths, SourceSpec(name=s)).examples
                          for s in ("alpaca", "identity")])
    cfg = GenerationConfig(max_seeds_per_source=9)
    whole = select_seeds(examples, cfg)
    chunked = select_seeds(examples.iter_slices(37), cfg)
    assert whole.height == 18 and chunked.equals(whole)
