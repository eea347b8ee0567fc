"""Alpaca (``instruction`` + optional ``input`` + ``output``) and prompt/completion pairs ->
turns.

The user turn is the instruction, then, when ``input`` (Dolly: ``context``) is not blank,
a blank line (``\\n\\n``) and the input, as LLaMA-Factory and Unsloth join them. A
``merged_prompt`` template from ``sources.yaml`` (``"### Instruction:\\n{instruction}..."``)
replaces that rule. ``response`` is read when ``output`` is absent; when both exist,
``output`` wins and ``response`` stays in ``extra``. LLaMA-Factory's ``history`` (a list of
``[user, assistant]`` pairs) becomes earlier turns. Values are decoded from JSON only when
they are JSON strings: numbers, lists and objects are ``wrong_type`` rejects, never
stringified silently.
"""

from __future__ import annotations

import json
import re

from instruct_assets.lib.formats.detect import FieldMap
from instruct_assets.lib.formats.sql import ident, lit, rest_of

_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


def _text(field: str) -> str:
    ref = f"s.{ident(field)}"
    return f"CASE WHEN json_type({ref}) = 'VARCHAR' THEN {ref}->>'$' END"


def _turn(speaker: str, content_sql: str) -> str:
    return (f"{{'speaker': '{speaker}', 'stype': 'VARCHAR', 'ttype': 'OBJECT', "
            f"'ctype': 'VARCHAR', 'content': {content_sql}, 'bad_part': CAST(NULL AS VARCHAR), "
            f"'non_text': 0, 'tool_calls': CAST(NULL AS VARCHAR)}}")


def _user_sql(fm: FieldMap, merged_prompt: str | None) -> str:
    if merged_prompt:
        parts, last = [], 0
        for m in _PLACEHOLDER.finditer(merged_prompt):
            parts.append(lit(merged_prompt[last : m.start()]))
            parts.append(f"coalesce({_text(m.group(1))}, '')")
            last = m.end()
        parts.append(lit(merged_prompt[last:]))
        return "concat(" + ", ".join(parts) + ")"
    prompt = _text(fm.prompt) if fm.prompt else "NULL"
    if not fm.query:
        return prompt
    query = _text(fm.query)
    return (f"CASE WHEN coalesce(trim({query}), '') = '' THEN {prompt} "
            f"WHEN coalesce({prompt}, '') = '' THEN {query} "
            f"ELSE {prompt} || chr(10) || chr(10) || {query} END")


def pairs_sql(fm: FieldMap, merged_prompt: str | None = None) -> str:
    """SQL over ``rec(source_row, raw)`` producing the intermediate turn columns."""
    template_fields = _PLACEHOLDER.findall(merged_prompt) if merged_prompt else []
    read = list(dict.fromkeys([*fm.mapped_fields(), *template_fields]))
    spec = lit(json.dumps(dict.fromkeys(read, "JSON")))
    text_fields = [f for f in (fm.prompt, fm.query, fm.response, fm.system, *template_fields) if f]
    checks = []
    required = [f for f in (fm.prompt, fm.response) if f] if not merged_prompt else (
        [fm.response] if fm.response else [])
    if not merged_prompt and not fm.prompt:
        checks.append(("TRUE", "'missing_field'", "'no instruction/prompt field'"))
    if not fm.response:
        checks.append(("TRUE", "'missing_field'", "'no output/response field'"))
    for f in required:
        ref = f"s.{ident(f)}"
        checks.append((f"{ref} IS NULL OR json_type({ref}) = 'NULL'", "'missing_field'",
                       lit(f"field {f!r} is missing or null")))
    for f in dict.fromkeys(text_fields):
        ref = f"s.{ident(f)}"
        checks.append((f"json_type({ref}) NOT IN ('VARCHAR', 'NULL')", "'wrong_type'",
                       f"{lit(f'field {f!r} is ')} || lower(json_type({ref})) "
                       f"|| ', expected text'"))
    history = "[]"
    if fm.history:
        ref = f"s.{ident(fm.history)}"
        history = (f"CASE WHEN json_type({ref}) = 'ARRAY' THEN flatten(list_transform("
                   f"from_json({ref}, '[[\"VARCHAR\"]]'), lambda pr: [{_turn('user', 'pr[1]')}, "
                   f"{_turn('assistant', 'pr[2]')}])) ELSE [] END")
        checks.append((f"json_type({ref}) NOT IN ('ARRAY', 'NULL')", "'wrong_type'",
                       lit(f"field {fm.history!r} is not a list of [user, assistant] pairs")))
        # every item must be exactly two strings: a number is never turned into text and a
        # third element is never dropped silently
        items = f"from_json({ref}, '[\"JSON\"]')"
        bad = (f"list_position(list_transform({items}, lambda p: coalesce("
               f"json_type(p) = 'ARRAY' AND json_array_length(p) = 2 "
               f"AND json_type(p, '$[0]') = 'VARCHAR' AND json_type(p, '$[1]') = 'VARCHAR', "
               f"false)), false)")
        checks.append((f"json_type({ref}) = 'ARRAY' AND {bad} IS NOT NULL", "'wrong_type'",
                       f"{lit(f'field {fm.history!r} item ')} || ({bad} - 1) || "
                       f"' is ' || left(CAST({items}[{bad}] AS VARCHAR), 60) || "
                       f"', expected a [user, assistant] pair of text'"))
    code = "CASE " + " ".join(f"WHEN {c} THEN {v}" for c, v, _ in checks) + " END" \
        if checks else "NULL"
    detail = "CASE " + " ".join(f"WHEN {c} THEN {d}" for c, _, d in checks) + " END" \
        if checks else "NULL"
    response = _text(fm.response) if fm.response else "NULL"
    system = _text(fm.system) if fm.system else "NULL"
    return f"""
WITH parsed AS (
  SELECT source_row, raw, json_transform(raw, {spec}) AS s FROM rec
)
SELECT
  source_row,
  '{fm.format}' AS source_format,
  list_concat({history}, [{_turn('user', _user_sql(fm, merged_prompt))},
                          {_turn('assistant', response)}]) AS turns,
  {system} AS system,
  CAST(NULL AS VARCHAR) AS tools,
  {rest_of(read)} AS extra,
  {code} AS error_code,
  {detail} AS error_detail
FROM parsed
"""
