"""Sources: folders under ``data/raw/`` and their optional description in ``sources.yaml``.

A source is ``data/raw/<name>/`` (every non-hidden file below it, sorted; a file in no
supported container becomes a reject, never a silent skip) or an entry in
``sources.yaml`` listing ``files`` (paths or globs relative to the data dir). An entry can
override the detected format and map odd field names and roles, in the spirit of
LLaMA-Factory's ``dataset_info.json``::

    sources:
      my_chats:
        format: sharegpt            # alpaca | openai | sharegpt | prompt_completion | qa_text
        columns: {messages: dialog, system: sys_prompt, tools: functions}
        tags: {role_tag: speaker, content_tag: text, user_tag: client, assistant_tag: agent}
        merged_prompt: "### Instruction:\\n{instruction}\\n\\n### Input:\\n{input}"
        system_prompt: "You are a helpful assistant."
        origin: human               # or synthetic
        license: MIT
        notes: free text

Malformed files raise :class:`SourcesConfigError` naming the file, line and problem. Paths
that resolve outside the data dir are refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from instruct_assets.lib.paths import DataPaths
from instruct_assets.lib.schema import FORMATS, ORIGINS

#: Folders named ``synthetic_*`` (written by ``synthetic_variations``) default to
#: ``origin: synthetic`` when ``sources.yaml`` says nothing about them.
SYNTHETIC_PREFIX = "synthetic_"
SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
ALLOWED_KEYS = {"format", "columns", "tags", "roles", "merged_prompt", "system_prompt",
                "origin", "license", "notes", "files", "role"}
COLUMN_KEYS = {"prompt", "query", "response", "system", "history", "messages", "tools", "text"}
TAG_KEYS = {"role_tag", "content_tag", "user_tag", "assistant_tag", "observation_tag",
            "function_tag", "system_tag"}
SUPPORTED_SUFFIXES = {".json", ".jsonl", ".ndjson", ".csv", ".tsv", ".parquet", ".pq", ".txt",
                      ".text", ".md", ".gz"}


class SourcesConfigError(ValueError):
    """``sources.yaml`` is malformed: the message names file, line and what is wrong."""


@dataclass(frozen=True)
class SourceSpec:
    """How to read one source. Empty fields mean "detect from the data"."""

    name: str
    format: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)
    merged_prompt: str | None = None
    system_prompt: str | None = None
    origin: str = "human"
    license: str | None = None
    notes: str | None = None
    files: tuple[str, ...] = ()
    role: str | None = None

    def fingerprint_fields(self) -> dict[str, object]:
        """The settings that change parsing (part of a source's data version)."""
        return {"format": self.format, "columns": self.columns, "tags": self.tags,
                "roles": self.roles, "merged_prompt": self.merged_prompt,
                "system_prompt": self.system_prompt, "origin": self.origin,
                "files": list(self.files)}


class _LineLoader(yaml.SafeLoader):
    """A YAML loader that remembers the line of every mapping, for error messages."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_sources_config(paths: DataPaths) -> dict[str, SourceSpec]:
    """The entries of ``sources.yaml`` (empty when the file does not exist)."""
    path = paths.sources_file
    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8")
    try:
        doc = yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown line"
        problem = getattr(exc, "problem", None) or str(exc)
        raise SourcesConfigError(f"{path}: {where}: invalid YAML: {problem}") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict) or not isinstance(doc.get("sources", {}), dict):
        raise SourcesConfigError(f"{path}: line 1: expected a mapping with a 'sources:' key")
    unknown_top = set(doc) - {"sources", "__line__"}
    if unknown_top:
        raise SourcesConfigError(f"{path}: line 1: unknown top-level keys {sorted(unknown_top)}")
    out = {}
    for name, entry in (doc.get("sources") or {}).items():
        if name == "__line__":
            continue
        out[str(name)] = _parse_entry(path, paths, str(name), entry)
    return out


def _parse_entry(path: Path, paths: DataPaths, name: str, entry: object) -> SourceSpec:
    def fail(line: int, msg: str) -> SourcesConfigError:
        return SourcesConfigError(f"{path}: line {line}: source '{name}': {msg}")

    if entry is None:
        entry = {"__line__": 0}
    if not isinstance(entry, dict):
        raise SourcesConfigError(f"{path}: source '{name}': expected a mapping of settings")
    line = entry.get("__line__", 0)
    if not SOURCE_NAME.match(name):
        raise fail(line, "names may hold letters, digits, '_', '-', '.' only")
    unknown = set(entry) - ALLOWED_KEYS - {"__line__"}
    if unknown:
        raise fail(line, f"unknown keys {sorted(unknown)}; allowed: {sorted(ALLOWED_KEYS)}")
    fmt = entry.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise fail(line, f"format '{fmt}' is not one of {list(FORMATS)}")
    origin = entry.get("origin", "human")
    if origin not in ORIGINS:
        raise fail(line, f"origin '{origin}' is not one of {list(ORIGINS)}")
    columns = _str_map(entry.get("columns"), COLUMN_KEYS, fail, line, "columns")
    tags = _str_map(entry.get("tags"), TAG_KEYS, fail, line, "tags")
    roles = _str_map(entry.get("roles"), None, fail, line, "roles")
    bad_roles = {v for v in roles.values() if v not in ("system", "user", "assistant", "tool")}
    if bad_roles:
        raise fail(line, f"roles map to {sorted(bad_roles)}; targets are "
                         "system/user/assistant/tool")
    files = entry.get("files") or []
    if isinstance(files, str):
        files = [files]
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise fail(line, "files must be a list of paths relative to the data dir")
    for f in files:
        if Path(f).is_absolute() or not paths.inside(paths.root / f):
            raise fail(line, f"file '{f}' resolves outside the data dir {paths.root}")
    for key in ("merged_prompt", "system_prompt", "license", "notes", "role"):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            raise fail(line, f"{key} must be text")
    return SourceSpec(
        name=name, format=fmt, columns=columns, tags=tags, roles=roles,
        merged_prompt=entry.get("merged_prompt"), system_prompt=entry.get("system_prompt"),
        origin=origin, license=entry.get("license"), notes=entry.get("notes"),
        files=tuple(files), role=entry.get("role"),
    )


def _str_map(value, allowed, fail, line, what) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail(line, f"{what} must be a mapping")
    value = {k: v for k, v in value.items() if k != "__line__"}
    if allowed is not None and set(value) - allowed:
        unknown = sorted(set(value) - allowed)
        raise fail(line, f"unknown {what} {unknown}; allowed: {sorted(allowed)}")
    if not all(isinstance(v, str) for v in value.values()):
        raise fail(line, f"{what} values must be text")
    return {str(k): v for k, v in value.items()}


def discover_sources(paths: DataPaths) -> dict[str, SourceSpec]:
    """Every source: folders under ``raw/`` plus entries of ``sources.yaml``, by name."""
    specs = load_sources_config(paths)
    found: dict[str, SourceSpec] = {}
    if paths.raw.is_dir():
        for folder in sorted(p for p in paths.raw.iterdir() if p.is_dir()):
            if folder.name.startswith(".") or not SOURCE_NAME.match(folder.name):
                continue
            default = SourceSpec(name=folder.name, origin="synthetic"
                                 if folder.name.startswith(SYNTHETIC_PREFIX) else "human")
            found[folder.name] = specs.get(folder.name, default)
    for name, spec in specs.items():
        if spec.files:
            found[name] = spec
    return dict(sorted(found.items()))


def source_files(paths: DataPaths, spec: SourceSpec) -> list[Path]:
    """The files of a source, sorted by path: listed ``files`` or everything in its folder."""
    if spec.files:
        out: set[Path] = set()
        for pattern in spec.files:
            matches = sorted(paths.root.glob(pattern)) if any(c in pattern for c in "*?[") \
                else [paths.root / pattern]
            for p in matches:
                if p.is_file() and not paths.inside(p):
                    # a link that only the expanded glob reveals: refuse it by name, as a
                    # listed path is refused, instead of dropping it without a word
                    raise SourcesConfigError(
                        f"{paths.sources_file}: source '{spec.name}': '{pattern}' matches "
                        f"{paths.relative(p)}, which resolves outside the data dir "
                        f"{paths.root} (a symlink?)")
                if p.is_file():
                    out.add(p)
        return sorted(out)
    folder = paths.raw / spec.name
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
