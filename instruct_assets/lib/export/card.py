"""Dataset card (``README.md``) for an export folder, from a plain dict of figures.

Why a builder of plain text: the card is the one place a user learns where the rows came
from, under which licences, and what was removed; it must be regenerated with every export
and be byte-identical for identical figures (no timestamps, no set iteration). The Hugging
Face front matter lets the Hub (and ``datasets.load_dataset(folder)``) find the splits.

``stats`` keys (all optional except what you want shown; missing sections say so):

- ``name`` (str), ``description`` (str), ``language`` (list of codes)
- ``sources``: list of ``{"name", "license", "url", "origin", "rows", "note"}`` (or a dict
  name -> that dict without ``name``)
- ``splits``: ``{split: rows}``
- ``tiers``: ``{split: {tier: rows}}`` (complexity tiers)
- ``source_counts``: ``{split: {source: rows}}``
- ``quality_removed``: ``{flag: rows removed}``
- ``rejects``: ``{reason_code: rows}`` (rows that never parsed, from ingestion)
- ``dedup``: ``{figure: value}`` (e.g. ``exact_removed``, ``near_removed``, ``threshold``)
- ``exports``: ``{kind: {split: path relative to the card}}``; defaults to the layout of
  ``writers.KIND_PATHS`` for the splits in ``splits``
- ``not_exportable``: ``{kind: {split: count}}``
- ``config``: any JSON-able dict (the pipeline configuration used), shown as YAML
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import yaml

from instruct_assets.lib.export.atomic import atomic_write_text
from instruct_assets.lib.export.writers import KIND_PATHS

_KIND_LABELS: dict[str, str] = {
    "openai": "OpenAI/TRL conversational JSONL (`messages`, `tools`)",
    "openai_parquet": "same rows as Parquet (`messages`, `tools` as JSON)",
    "sharegpt": "ShareGPT JSON for LLaMA-Factory (see `sharegpt/dataset_info.json`)",
    "alpaca": "Alpaca JSON (single-turn rows only)",
    "text_chatml": "rendered ChatML text JSONL (`text`)",
    "text_llama3": "rendered Llama 3 text JSONL (`text`)",
    "text_alpaca": "rendered Alpaca prompt text JSONL (`text`, single-turn rows only)",
}


def _n(value: object) -> str:
    """Integers with thousands separators; anything else as text."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}"
    return _cell(value)


def _cell(value: object) -> str:
    """Text safe inside a Markdown table cell."""
    text = "" if value is None else str(value)
    return re.sub(r"\s+", " ", text).replace("|", "\\|").strip()


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def license_id(license_name: object) -> str:
    """A Hub-style licence id: ``"Apache-2.0"`` -> ``"apache-2.0"``, ``"CC BY-NC 4.0"`` ->
    ``"cc-by-nc-4.0"``, missing -> ``"unknown"``."""
    text = str(license_name or "").strip().lower()
    if not text or text in {"none", "unknown", "none stated", "n/a"}:
        return "unknown"
    return re.sub(r"[\s_]+", "-", text)


def _sources(stats: dict[str, Any]) -> list[dict[str, Any]]:
    raw = stats.get("sources") or []
    if isinstance(raw, dict):
        return [{"name": name, **(info or {})} for name, info in raw.items()]
    return [dict(s) for s in raw]


def _front_matter(stats: dict[str, Any], sources: list[dict[str, Any]]) -> list[str]:
    ids = sorted({license_id(s.get("license")) for s in sources}) or ["unknown"]
    lines = ["---"]
    if stats.get("name"):
        lines.append(f"pretty_name: {json.dumps(str(stats['name']), ensure_ascii=False)}")
    lines.append(f"license: {ids[0] if len(ids) == 1 else 'other'}")
    if len(ids) > 1:
        lines.append(f"license_name: {json.dumps('mixed: ' + ', '.join(ids))}")
    if stats.get("language"):
        lines.append("language:")
        lines += [f"- {json.dumps(str(code))}" for code in stats["language"]]
    lines += ["task_categories:", "- text-generation", "tags:", "- instruction-tuning", "- sft"]
    splits = stats.get("splits") or {}
    total = sum(int(v) for v in splits.values())
    if splits:
        lines += ["size_categories:", f"- {_size_category(total)}"]
        paths = (stats.get("exports") or {}).get("openai") or {
            split: KIND_PATHS["openai"].format(split=split) for split in splits
        }
        lines += ["configs:", "- config_name: default", "  data_files:"]
        for split, path in paths.items():
            lines += [f"  - split: {json.dumps(str(split))}", f"    path: {json.dumps(str(path))}"]
    lines.append("---")
    return lines


def _size_category(total: int) -> str:
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")]
    bounds += [(1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")]
    for bound, label in bounds:
        if total < bound:
            return label
    return "10M<n<100M"


def _split_matrix(per_split: dict[str, dict[str, Any]], label: str) -> list[str]:
    """Rows = keys (first-seen order), columns = splits, plus a total column."""
    splits = list(per_split)
    keys: list[str] = []
    for counts in per_split.values():
        keys += [k for k in counts if k not in keys]
    rows = []
    for key in keys:
        values = [per_split[s].get(key, 0) for s in splits]
        rows.append([_cell(key)] + [_n(v) for v in values] + [_n(sum(values))])
    totals = [sum(per_split[s].values()) for s in splits]
    rows.append(["**total**"] + [_n(v) for v in totals] + [_n(sum(totals))])
    return _table([label, *splits, "all"], rows)


def _plain_config(config: Any) -> Any:
    """JSON round trip: paths and other objects become strings, keys become text."""
    return json.loads(json.dumps(config, default=str, ensure_ascii=False))


def build_card(stats: dict[str, Any]) -> str:
    """The dataset card Markdown (with Hugging Face YAML front matter) for ``stats``."""
    sources = _sources(stats)
    out = _front_matter(stats, sources)
    out += ["", f"# {stats.get('name') or 'Instruction-tuning dataset'}", ""]
    if stats.get("description"):
        out += [str(stats["description"]).strip(), ""]

    out += ["## Sources and licences", ""]
    if sources:
        rows = [
            [
                _cell(s.get("name")),
                _cell(s.get("license") or "none stated"),
                _cell(s.get("origin")),
                _n(s["rows"]) if "rows" in s else "",
                _cell(s.get("url")),
            ]
            for s in sources
        ]
        out += _table(["source", "licence", "origin", "rows", "url"], rows)
        ids = {license_id(s.get("license")) for s in sources}
        notes = []
        if len(ids) > 1:
            notes.append(
                "Licences are mixed: each row keeps the licence of its source, and the most "
                "restrictive terms bind any use of the whole set."
            )
        if any("nc" in i.split("-") for i in ids):
            notes.append("Some sources are non-commercial (NC): no commercial use of those rows.")
        if "unknown" in ids:
            notes.append("Some sources state no licence: check before redistributing them.")
        out += ["", *(f"- {note}" for note in notes)] if notes else []
    else:
        out.append("Not recorded.")
    out.append("")

    out += ["## Splits", ""]
    splits = stats.get("splits") or {}
    if splits:
        rows = [[_cell(s), _n(n)] for s, n in splits.items()]
        rows.append(["**total**", _n(sum(int(v) for v in splits.values()))])
        out += _table(["split", "rows"], rows)
    else:
        out.append("Not recorded.")
    out.append("")

    for key, title, label in (
        ("tiers", "Complexity tiers", "tier"),
        ("source_counts", "Rows per source", "source"),
    ):
        out += [f"## {title}", ""]
        out += _split_matrix(stats[key], label) if stats.get(key) else ["Not recorded."]
        out.append("")

    for key, title, label, value_label in (
        ("quality_removed", "Quality filtering", "flag", "rows removed"),
        ("rejects", "Rejected at ingestion", "reason", "rows"),
        ("dedup", "Deduplication", "figure", "value"),
    ):
        out += [f"## {title}", ""]
        figures = stats.get(key) or {}
        if figures:
            rows = [[_cell(k), _n(v)] for k, v in figures.items()]
            out += _table([label, value_label], rows)
        else:
            out.append("Not recorded.")
        out.append("")

    out += ["## Files", ""]
    exports = stats.get("exports") or {
        kind: {split: path.format(split=split) for split in splits}
        for kind, path in KIND_PATHS.items()
    }
    if exports and splits:
        rows = [
            [f"`{_cell(path)}`", _cell(kind), _cell(split), _cell(_KIND_LABELS.get(kind, ""))]
            for kind, per_split in exports.items()
            for split, path in per_split.items()
        ]
        out += _table(["file", "kind", "split", "format"], rows)
        out += [
            "",
            "Rows are sorted by (source, example_id) in every file. Tool calls are assistant "
            "turns holding the call JSON; tool results are `tool` turns.",
        ]
    else:
        out.append("Not recorded.")
    skipped = stats.get("not_exportable") or {}
    if skipped:
        out += ["", "Rows a format cannot hold (multi-turn rows in Alpaca formats):", ""]
        rows = [
            [_cell(kind), _cell(split), _n(n)]
            for kind, per_split in skipped.items()
            for split, n in per_split.items()
        ]
        out += _table(["kind", "split", "rows not exported"], rows)
    out.append("")

    out += ["## Configuration", ""]
    if stats.get("config"):
        text = yaml.safe_dump(
            _plain_config(stats["config"]),
            sort_keys=True,
            allow_unicode=True,
            default_flow_style=False,
            width=100,
        )
        out += ["```yaml", text.rstrip("\n"), "```"]
    else:
        out.append("Not recorded.")
    return "\n".join(out) + "\n"


def write_card(path: str | os.PathLike[str], stats: dict[str, Any]) -> int:
    """Atomically write :func:`build_card` to ``path``; return its bytes."""
    return atomic_write_text(path, build_card(stats))
