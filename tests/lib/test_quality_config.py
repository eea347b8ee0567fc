"""QualityThresholds: defaults, overrides and the flag vocabulary."""

from __future__ import annotations

import dataclasses

import pytest

from instruct_assets.lib.quality.config import DUPLICATE_FLAGS, FLAG_ORDER, QualityThresholds


def test_defaults_follow_the_documented_sources():
    cfg = QualityThresholds()
    assert cfg.context_window_tokens == 4096
    assert cfg.chars_per_token == 4.0
    # Gopher (Rae et al. 2021) repetition limits
    assert cfg.max_dup_line_frac == 0.30
    assert cfg.max_top_2gram_char_frac == 0.20
    assert cfg.max_dup_5gram_char_frac == 0.15


def test_every_flag_has_a_weight_and_severe_flags_are_known_flags():
    cfg = QualityThresholds()
    for flag in (*FLAG_ORDER, *DUPLICATE_FLAGS):
        assert 0.0 < cfg.weight(flag) <= 1.0, flag
    assert set(cfg.severe_flags) <= set(FLAG_ORDER)
    assert cfg.weight("no_such_flag") == 0.0


def test_thresholds_are_frozen():
    cfg = QualityThresholds()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.context_window_tokens = 1  # type: ignore[misc]


def test_a_yaml_mapping_overrides_one_weight_and_keeps_the_others():
    cfg = QualityThresholds.from_mapping(
        {"context_window_tokens": 8192, "weights": {"vague_instruction": 0.5}}
    )
    assert cfg.context_window_tokens == 8192
    assert cfg.weight("vague_instruction") == 0.5
    assert cfg.weight("repetition") == QualityThresholds().weight("repetition")


def test_a_typo_in_the_config_is_an_error_not_a_silent_default():
    with pytest.raises(ValueError, match="context_window"):
        QualityThresholds.from_mapping({"context_windw_tokens": 8192})


def test_to_dict_is_plain_data_for_asset_metadata():
    d = QualityThresholds().to_dict()
    assert d["context_window_tokens"] == 4096
    assert isinstance(d["severe_flags"], list)
