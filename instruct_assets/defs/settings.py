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
from instruct_assets.lib.export.rendered import TEMPLATE_NAMES
from instruct_assets.lib.export.writers import KINDS
from instruct_assets.lib.quality.config import QualityThresholds
from instruct_assets.lib.quality.dedup import DedupConfig
from instruct_assets.lib.splits import SplitConfig
from instruct_assets.lib.synthetic_cap import SyntheticCapConfig


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
    that make a row useless or harmful to train on). ``max_synthetic_share``: the largest
    share of synthetic rows in a split (guidance warns against training on synthetic data
    alone); None: no cap. A WARN check reports a split above it; with
    ``enforce_synthetic_cap`` the splits stage drops the fewest synthetic rows to meet it
    (``lib.synthetic_cap``) and a blocking check verifies it.
    """

    min_quality_score: float = 0.5
    exclude_flags: list[str] = Field(default_factory=lambda: [
        "no_trainable_content", "empty_or_trivial_response", "special_token_leak",
        "template_placeholder",
    ])
    keep_only_representatives: bool = True
    eval_fraction: float = 0.1
    split_seed: str = "instruct-assets-split-v1"
    max_synthetic_share: float | None = 0.5
    enforce_synthetic_cap: bool = False
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

    def synthetic_cap_config(self) -> SyntheticCapConfig:
        return SyntheticCapConfig(max_synthetic_share=self.max_synthetic_share,
                                  enforce=self.enforce_synthetic_cap)

    def split_config(self) -> SplitConfig:
        base = SplitConfig(eval_fraction=self.eval_fraction, seed=self.split_seed)
        return _apply(base, self.splits)


class ExportSettings(dg.ConfigurableResource):
    """Which training exports ``training_exports`` writes.

    ``formats``: data formats among ``openai`` (OpenAI/TRL JSONL), ``openai_parquet`` (its
    Parquet copy), ``sharegpt`` (LLaMA-Factory JSON) and ``alpaca`` (single-turn JSON).
    ``templates``: chat templates the conversations are also rendered with as ``{"text"}``
    JSONL, among ``chatml``, ``llama3`` and ``alpaca`` (the Alpaca prompt, single-turn rows).
    Default: every format and ChatML only; each template costs one more file per split of
    about the size of the OpenAI JSONL, so add the others when a trainer needs them.
    """

    formats: list[str] = Field(default_factory=lambda: [
        "openai", "openai_parquet", "sharegpt", "alpaca"])
    templates: list[str] = Field(default_factory=lambda: ["chatml"])

    def kinds(self) -> list[str]:
        """The export kinds to write (formats, then ``text_<template>``), validated."""
        known_formats = [k for k in KINDS if not k.startswith("text_")]
        problems = []
        unknown = [f for f in self.formats if f not in known_formats]
        if unknown:
            problems.append(f"unknown export format(s) {unknown}; known: {known_formats}")
        unknown = [t for t in self.templates if t not in TEMPLATE_NAMES]
        if unknown:
            problems.append(f"unknown template(s) {unknown}; known: {list(TEMPLATE_NAMES)}")
        if problems:
            raise dg.Failure("ExportSettings: " + "; ".join(problems))
        return list(dict.fromkeys([*self.formats, *(f"text_{t}" for t in self.templates)]))
