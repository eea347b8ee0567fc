"""Pipeline settings as Dagster resources: every threshold in one place, editable in the UI.

Each resource wraps a frozen dataclass of ``lib`` (where each default is documented with its
reason); ``overrides`` set any numeric field of that dataclass by name, so no threshold needs
a code change.
"""

import dataclasses
from typing import Any

import dagster as dg
from pydantic import Field

from instruct_assets.lib.complexity import ComplexityConfig
from instruct_assets.lib.curation import CurationConfig
from instruct_assets.lib.decontaminate import DecontamConfig
from instruct_assets.lib.quality.config import QualityThresholds
from instruct_assets.lib.quality.dedup import DedupConfig
from instruct_assets.lib.splits import SplitConfig


def _apply(base: Any, overrides: dict[str, float]) -> Any:
    names = {f.name: f for f in dataclasses.fields(base)}
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise dg.Failure(f"unknown setting(s) {unknown} for {type(base).__name__}; "
                         f"known: {sorted(names)}")
    cast = {k: type(getattr(base, k))(v) for k, v in overrides.items()}
    return dataclasses.replace(base, **cast)


class QualitySettings(dg.ConfigurableResource):
    """Quality signal thresholds, dedup parameters and the flagged-share WARN ceiling.

    ``max_flagged_share``: a source with more flagged rows than this share raises a WARN
    (0.5: when most rows of a source are flagged, the source, not the rows, needs a look).
    """

    max_flagged_share: float = 0.5
    thresholds: dict[str, float] = Field(default_factory=dict)
    dedup: dict[str, float] = Field(default_factory=dict)

    def quality_config(self) -> QualityThresholds:
        return _apply(QualityThresholds(), self.thresholds)

    def dedup_config(self) -> DedupConfig:
        return _apply(DedupConfig(), self.dedup)


class CurationSettings(dg.ConfigurableResource):
    """Curation, complexity tiers, decontamination and splits.

    ``exclude_flags``: quality flags that exclude a row by themselves (default: the flags
    that make a row useless or harmful to train on). ``max_synthetic_share``: WARN when a
    split holds more synthetic rows than this (guidance warns against training on synthetic
    data alone).
    """

    min_quality_score: float = 0.5
    exclude_flags: list[str] = Field(default_factory=lambda: [
        "no_trainable_content", "empty_or_trivial_response", "special_token_leak",
        "template_placeholder",
    ])
    keep_only_representatives: bool = True
    eval_fraction: float = 0.1
    split_seed: str = "instruct-assets-split-v1"
    max_synthetic_share: float = 0.5
    complexity: dict[str, float] = Field(default_factory=dict)
    decontamination: dict[str, float] = Field(default_factory=dict)
    splits: dict[str, float] = Field(default_factory=dict)

    def curation_config(self) -> CurationConfig:
        return CurationConfig(min_quality_score=self.min_quality_score,
                              exclude_flags=tuple(self.exclude_flags),
                              keep_only_representatives=self.keep_only_representatives)

    def complexity_config(self) -> ComplexityConfig:
        return _apply(ComplexityConfig(), self.complexity)

    def decontam_config(self) -> DecontamConfig:
        return _apply(DecontamConfig(), self.decontamination)

    def split_config(self) -> SplitConfig:
        base = SplitConfig(eval_fraction=self.eval_fraction, seed=self.split_seed)
        return _apply(base, self.splits)
