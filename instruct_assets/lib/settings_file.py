"""``<data dir>/settings.yaml``: the stage settings a data dir runs with.

Why a file: the CLI, the schedule and the sensors all build the same Dagster resources, and a
team wants its thresholds (a synthetic cap, export templates, a quality threshold) versioned
beside its data rather than typed into the launchpad for every run. Each top-level section
is the field set of one settings resource (``ingest``, ``quality``, ``curation``,
``exports``, ``memory``); the resources themselves validate the values, so a wrong name or
type fails with pydantic's message naming the field. Run config given in the UI still overrides it.
"""

from __future__ import annotations

from typing import Any

import yaml

from instruct_assets.lib.paths import DataPaths

#: section -> the resource key it configures in ``build_defs``.
SECTIONS: dict[str, str] = {
    "ingest": "ingest_settings",
    "quality": "quality_settings",
    "curation": "curation_settings",
    "exports": "export_settings",
    "memory": "memory_settings",
}


class SettingsFileError(ValueError):
    """``settings.yaml`` is malformed; the message names the file and what is wrong."""


def read_settings(paths: DataPaths) -> dict[str, dict[str, Any]]:
    """Section name -> field values; empty sections when the file does not exist."""
    path = paths.settings_file
    if not path.exists():
        return {name: {} for name in SECTIONS}
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SettingsFileError(f"{path}: not valid YAML{where}: "
                                f"{getattr(exc, 'problem', exc)}") from exc
    if not isinstance(doc, dict):
        raise SettingsFileError(f"{path}: expected a mapping of sections "
                                f"{sorted(SECTIONS)}, got {type(doc).__name__}")
    unknown = sorted(set(doc) - set(SECTIONS))
    if unknown:
        raise SettingsFileError(f"{path}: unknown section(s) {unknown}; known: "
                                f"{sorted(SECTIONS)}")
    out = {}
    for name in SECTIONS:
        section = doc.get(name) or {}
        if not isinstance(section, dict):
            raise SettingsFileError(f"{path}: section {name!r} must be a mapping of fields")
        out[name] = section
    return out
