"""The dataset card: sources, licences, counts, removals, config; deterministic."""

from __future__ import annotations

from pathlib import Path

import yaml

from instruct_assets.lib.export.card import build_card, license_id, write_card

STATS = {
    "name": "Demo SFT mix",
    "description": "Instruction data cleaned by instruct_assets.",
    "language": ["en", "zh"],
    "sources": [
        {
            "name": "alpaca_demo",
            "license": "Apache-2.0",
            "url": "https://github.com/hiyouga/LLaMA-Factory",
            "origin": "synthetic",
            "rows": 999,
        },
        {"name": "code_alpaca", "license": "CC BY-NC 4.0", "origin": "synthetic", "rows": 2000},
    ],
    "splits": {"train": 2700, "eval": 299},
    "tiers": {"train": {"easy": 1500, "hard": 1200}, "eval": {"easy": 199, "hard": 100}},
    "source_counts": {
        "train": {"alpaca_demo": 900, "code_alpaca": 1800},
        "eval": {"alpaca_demo": 99, "code_alpaca": 200},
    },
    "quality_removed": {"template_placeholder": 12, "empty_output": 2},
    "rejects": {"invalid_json": 3},
    "dedup": {"exact_removed": 14, "near_removed": 5, "near_threshold": 0.85},
    "not_exportable": {"alpaca": {"train": 0, "eval": 0}},
    "config": {"seed": 7, "sources": {"alpaca_demo": {"path": Path("raw/alpaca.json")}}},
}


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_the_card_tells_sources_licences_counts_tiers_removals_dedup_and_config():
    card = build_card(STATS)
    for expected in (
        "# Demo SFT mix",
        "| alpaca_demo | Apache-2.0 | synthetic | 999 | https://github.com/hiyouga/LLaMA-Factory |",
        "| code_alpaca | CC BY-NC 4.0 | synthetic | 2,000 |  |",
        "| train | 2,700 |",
        "| **total** | 2,999 |",
        "| easy | 1,500 | 199 | 1,699 |",
        "| code_alpaca | 1,800 | 200 | 2,000 |",
        "| template_placeholder | 12 |",
        "| invalid_json | 3 |",
        "| exact_removed | 14 |",
        "| near_threshold | 0.85 |",
        "| `openai/train.jsonl` | openai | train |",
        "| `sharegpt/eval.json` | sharegpt | eval |",
        "non-commercial (NC)",
        "```yaml\nseed: 7\nsources:\n  alpaca_demo:\n    path: raw/alpaca.json\n```",
    ):
        assert expected in card, expected


def test_the_front_matter_is_hub_yaml_with_the_splits_as_data_files():
    meta = _front_matter(build_card(STATS))
    assert meta["pretty_name"] == "Demo SFT mix"
    assert meta["license"] == "other"  # mixed licences
    assert meta["license_name"] == "mixed: apache-2.0, cc-by-nc-4.0"
    assert meta["language"] == ["en", "zh"]
    assert meta["size_categories"] == ["1K<n<10K"]
    assert meta["configs"] == [
        {
            "config_name": "default",
            "data_files": [
                {"split": "train", "path": "openai/train.jsonl"},
                {"split": "eval", "path": "openai/eval.jsonl"},
            ],
        }
    ]


def test_a_single_licence_is_named_and_no_mixed_licence_warning_is_given():
    stats = {**STATS, "sources": [STATS["sources"][0]]}
    card = build_card(stats)
    assert _front_matter(card)["license"] == "apache-2.0"
    assert "Licences are mixed" not in card
    assert "non-commercial" not in card


def test_a_source_without_a_licence_is_called_out():
    card = build_card({"sources": {"movies": {"rows": 5}}, "splits": {"train": 5}})
    assert _front_matter(card)["license"] == "unknown"
    assert "| movies | none stated |  | 5 |  |" in card
    assert "state no licence" in card


def test_licence_names_become_hub_ids():
    assert license_id("Apache-2.0") == "apache-2.0"
    assert license_id("CC BY-NC 4.0") == "cc-by-nc-4.0"
    assert license_id(None) == license_id("") == license_id("none stated") == "unknown"


def test_pipes_and_newlines_in_names_cannot_break_a_table():
    card = build_card({"quality_removed": {"a|b\nc": 1}})
    assert "| a\\|b c | 1 |" in card


def test_missing_sections_say_not_recorded_and_the_card_still_parses():
    card = build_card({})
    assert card.count("Not recorded.") == 9
    assert _front_matter(card)["license"] == "unknown"
    assert card.endswith("\n")


def test_the_same_figures_give_the_same_bytes(tmp_path):
    write_card(tmp_path / "a" / "README.md", STATS)
    write_card(tmp_path / "b" / "README.md", dict(STATS))
    assert (tmp_path / "a" / "README.md").read_bytes() == (
        tmp_path / "b" / "README.md"
    ).read_bytes()
    assert (tmp_path / "a" / "README.md").read_text(encoding="utf-8") == build_card(STATS)
