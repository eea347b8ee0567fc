"""Rendered training text: a conversation flattened with a chat template, as ``{"text": ...}``.

Why: TRL's standard ``text`` dataset (and any trainer without a chat-template step) trains
on the exact string the model will see. Templates are project-owned TOML files in
``lib/templates/`` (read with ``importlib.resources``) so what is rendered is reviewable
data, not code, and rendering is a vectorised concatenation of per-role prefix/suffix
strings, not a Jinja call per row.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import resources

import polars as pl

from instruct_assets.lib.export.alpaca import instruction_expr, output_expr, system_expr
from instruct_assets.lib.export.common import CONTENT, ROLE, encode_records
from instruct_assets.lib.schema import ROLES

#: Templates shipped in ``lib/templates/<name>.toml``.
TEMPLATE_NAMES: tuple[str, ...] = ("chatml", "llama3", "alpaca")

_FIELD = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class ChatTemplate:
    """A multi-turn template: ``bos + Σ prefix[role] + content + suffix[role] + eos``."""

    name: str
    bos: str
    eos: str
    trim_content: bool
    prefix: dict[str, str]
    suffix: dict[str, str]
    special_tokens: tuple[str, ...]


@dataclass(frozen=True)
class SingleTurnTemplate:
    """A prompt for ``[system?, user, assistant]`` rows, with {system}/{instruction}/{output}."""

    name: str
    default_system: str
    pieces: tuple[str, ...]  # literal, field, literal, field, ..., literal
    special_tokens: tuple[str, ...]


Template = ChatTemplate | SingleTurnTemplate


def template_text(name: str) -> str:
    """The raw TOML of a shipped template."""
    if name not in TEMPLATE_NAMES:
        raise ValueError(f"unknown template {name!r}; known: {TEMPLATE_NAMES}")
    ref = resources.files("instruct_assets.lib").joinpath("templates", f"{name}.toml")
    return ref.read_text(encoding="utf-8")


def load_template(name: str) -> Template:
    """Parse ``lib/templates/<name>.toml`` and check it is usable (every role has exactly
    one ``{content}``; a single-turn template uses only its three fields)."""
    spec = tomllib.loads(template_text(name))
    tokens = tuple(spec.get("special_tokens", ()))
    if spec["kind"] == "chat":
        prefix: dict[str, str] = {}
        suffix: dict[str, str] = {}
        for role in ROLES:
            parts = spec["turn"][role].split("{content}")
            if len(parts) != 2:
                raise ValueError(f"template {name}: role {role} needs exactly one {{content}}")
            prefix[role], suffix[role] = parts
        return ChatTemplate(
            name=spec["name"],
            bos=spec.get("bos", ""),
            eos=spec.get("eos", ""),
            trim_content=bool(spec.get("trim_content", False)),
            prefix=prefix,
            suffix=suffix,
            special_tokens=tokens,
        )
    if spec["kind"] == "single_turn":
        pieces = tuple(_FIELD.split(spec["template"]))
        fields = set(pieces[1::2])
        if not fields <= {"system", "instruction", "output"} or "output" not in fields:
            raise ValueError(f"template {name}: unexpected fields {sorted(fields)}")
        return SingleTurnTemplate(
            name=spec["name"],
            default_system=spec["default_system"],
            pieces=pieces,
            special_tokens=tokens,
        )
    raise ValueError(f"template {name}: unknown kind {spec['kind']!r}")


def render_expr(template: Template) -> pl.Expr:
    """The rendered text of each row's ``messages`` (single-turn templates: filter rows with
    ``alpaca.single_turn_mask`` first)."""
    if isinstance(template, ChatTemplate):
        content = CONTENT.str.strip_chars() if template.trim_content else CONTENT
        turn = pl.concat_str(
            ROLE.replace_strict(template.prefix, return_dtype=pl.String),
            content,
            ROLE.replace_strict(template.suffix, return_dtype=pl.String),
        )
        body = pl.col("messages").list.eval(turn).list.join("")
        return pl.concat_str(pl.lit(template.bos), body, pl.lit(template.eos))
    values = {
        "system": system_expr().fill_null(pl.lit(template.default_system)),
        "instruction": instruction_expr(),
        "output": output_expr(),
    }
    parts = [
        pl.lit(piece) if i % 2 == 0 else values[piece] for i, piece in enumerate(template.pieces)
    ]
    return pl.concat_str(parts)


def text_lines(rows: pl.DataFrame, template: Template) -> pl.Series:
    """``{"text": ...}`` JSON text per row."""
    return encode_records(rows.select(render_expr(template).alias("text")))


def template_token_mask(template: Template) -> pl.Expr:
    """True where some message content already holds one of the template's markers.

    Why: such a row renders to text whose turn boundaries are ambiguous (a prompt-injection
    or a leaked template); it is still exported, but counted so the lead can decide.
    """
    if not template.special_tokens:
        return pl.lit(False)
    hit = CONTENT.str.contains_any(list(template.special_tokens))
    return pl.col("messages").list.eval(hit).list.any().fill_null(False)


def parse_text(text: str, template: Template) -> list[dict[str, str]]:
    """Read rendered text back into messages (best effort: content holding a template
    marker cannot be split back; Llama 3 content comes back trimmed)."""
    if isinstance(template, SingleTurnTemplate):
        return _parse_single_turn(text, template)
    if not text.startswith(template.bos) or not text.endswith(template.eos):
        raise ValueError(f"text does not start/end with the {template.name} markers")
    body = text[len(template.bos) : len(text) - len(template.eos)]
    alternatives = "|".join(
        f"(?P<{role}>{re.escape(template.prefix[role])}(?P<{role}_c>.*?){re.escape(template.suffix[role])})"
        for role in ROLES
    )
    pattern = re.compile(alternatives, re.DOTALL)
    messages: list[dict[str, str]] = []
    pos = 0
    while pos < len(body):
        match = pattern.match(body, pos)
        if match is None:
            raise ValueError(f"unparseable {template.name} text at offset {pos}")
        role = next(r for r in ROLES if match.group(r) is not None)
        messages.append({"role": role, "content": match.group(f"{role}_c")})
        pos = match.end()
    return messages


def _parse_single_turn(text: str, template: SingleTurnTemplate) -> list[dict[str, str]]:
    pattern = "".join(
        re.escape(piece) if i % 2 == 0 else f"(?P<{piece}>.*?)"
        for i, piece in enumerate(template.pieces)
    )
    match = re.fullmatch(pattern, text, re.DOTALL)
    if match is None:
        raise ValueError(f"text does not follow the {template.name} prompt")
    found = match.groupdict()
    messages = []
    if found.get("system") is not None and found["system"] != template.default_system:
        messages.append({"role": "system", "content": found["system"]})
    messages.append({"role": "user", "content": found["instruction"]})
    messages.append({"role": "assistant", "content": found["output"]})
    return messages
