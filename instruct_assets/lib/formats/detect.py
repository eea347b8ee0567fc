"""Which instruction format a record is in, decided from its keys, and with which fields.

Detection runs once per distinct key set of a file (a handful), not per row, so it can be
plain Python. The result is a :class:`FieldMap`: the format plus the concrete field names
the mapper reads. ``sources.yaml`` settings (format, columns, tags) override detection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from instruct_assets.lib.sources import SourceSpec

#: (user field, assistant field) pairs recognised as prompt/completion, case-insensitive,
#: spaces and dashes read as underscores. Order matters: the first pair present wins.
PAIR_FIELDS: tuple[tuple[str, str], ...] = (
    ("prompt", "completion"),
    ("prompt", "response"),
    ("prompt", "output"),
    ("question", "answer"),
    ("question", "best_answer"),
    ("question", "response"),
    ("query", "response"),
    ("query", "answer"),
    ("input", "output"),
    ("input", "target"),
    ("source", "target"),
    ("human", "assistant"),
)
ALPACA_RESPONSE = ("output", "response", "answer")
ALPACA_INPUT = ("input", "context")


@dataclass(frozen=True)
class FieldMap:
    """A format and the concrete record fields it reads; everything else goes to ``extra``."""

    format: str | None  # None: unknown format
    prompt: str | None = None
    query: str | None = None
    response: str | None = None
    system: str | None = None
    history: str | None = None
    messages: str | None = None
    tools: str | None = None
    text: str | None = None
    role_tag: str | None = None
    content_tag: str | None = None
    tags: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    why: str = ""

    def mapped_fields(self) -> list[str]:
        return [f for f in (self.prompt, self.query, self.response, self.system, self.history,
                            self.messages, self.tools, self.text) if f]


def _norm(key: str) -> str:
    return key.strip().lower().replace(" ", "_").replace("-", "_")


def detect_fields(keys: list[str], spec: SourceSpec) -> FieldMap:
    """The :class:`FieldMap` for records with exactly ``keys`` (configured or detected)."""
    by_norm: dict[str, str] = {}
    for k in keys:
        by_norm.setdefault(_norm(k), k)
    cols = spec.columns

    def pick(configured: str | None, *candidates: str) -> str | None:
        if configured:
            return configured if configured in keys else None
        for c in candidates:
            if c in by_norm:
                return by_norm[c]
        return None

    fmt = spec.format or _guess_format(by_norm, cols)
    if fmt is None:
        return FieldMap(None, why=f"keys {sorted(keys)[:12]} match no known format")
    system = pick(cols.get("system"), "system")
    tools = pick(cols.get("tools"), "tools", "functions")
    if fmt in ("openai", "sharegpt"):
        default_msgs = ("messages", "conversations") if fmt == "openai" else (
            "conversations", "messages")
        return FieldMap(
            fmt, messages=pick(cols.get("messages"), *default_msgs), system=system, tools=tools,
            role_tag=spec.tags.get("role_tag"), content_tag=spec.tags.get("content_tag"),
            tags=dict(spec.tags),
        )
    if fmt == "alpaca":
        return FieldMap(
            fmt, prompt=pick(cols.get("prompt"), "instruction"),
            query=pick(cols.get("query"), *ALPACA_INPUT),
            response=pick(cols.get("response"), *ALPACA_RESPONSE),
            system=system, history=pick(cols.get("history"), "history"),
        )
    if fmt == "prompt_completion":
        prompt, response = cols.get("prompt"), cols.get("response")
        if not (prompt and response):
            for user_key, asst_key in PAIR_FIELDS:
                if user_key in by_norm and asst_key in by_norm:
                    prompt = prompt or by_norm[user_key]
                    response = response or by_norm[asst_key]
                    break
        return FieldMap(fmt, prompt=prompt if prompt in keys else None,
                        response=response if response in keys else None, system=system)
    # qa_text
    return FieldMap(fmt, text=pick(cols.get("text"), "text", "content", "prompt"), system=system)


def _guess_format(by_norm: dict[str, str], cols: dict[str, str]) -> str | None:
    if "messages" in by_norm or "conversations" in by_norm or "messages" in cols:
        field_name = by_norm.get("conversations") or by_norm.get("messages")
        return "sharegpt" if field_name and _norm(field_name) == "conversations" else "openai"
    if "instruction" in by_norm or "prompt" in cols:
        return "alpaca"
    for user_key, asst_key in PAIR_FIELDS:
        if user_key in by_norm and asst_key in by_norm:
            return "prompt_completion"
    if "text" in by_norm:
        return "qa_text"
    return None
