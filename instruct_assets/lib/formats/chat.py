"""OpenAI/ChatML (``messages`` of ``role``/``content``) and ShareGPT (``conversations`` of
``from``/``value``) records -> turns.

Both are lists of turns; one mapper reads either key pair per turn (the ShareGPT "hybrid"
that holds ``role``/``content`` inside ``conversations`` is the same thing). OpenAI content
given as a list of typed parts keeps its text parts joined with a newline; non-text parts
(images, audio) are left out of ``content`` and counted in ``extra`` as
``non_text_parts``. An assistant message with ``tool_calls`` and no text becomes an
assistant turn whose content is the ``tool_calls`` JSON as written. ``tools`` (a JSON
string, as in glaive, or a JSON list) is stored as minified JSON text, so the same tool
definitions give the same id however they were spaced. Speaker names are mapped to roles
later (``turns.py``).
"""

from __future__ import annotations

import json

from instruct_assets.lib.formats.detect import FieldMap
from instruct_assets.lib.formats.sql import ident, lit, path, path_of, rest_of


def _first_bad_part(content: str) -> str:
    """SQL: how the first unusable item of a content list is wrong, or NULL when all are
    usable. Usable: an object part; a ``text`` part must hold a string (a number there is a
    ``wrong_type``, never turned into text). ShareGPT ``value: ["a"]`` fails here too."""
    return f"""list_filter(list_transform(from_json({content}, '["JSON"]'), lambda p, j:
          CASE WHEN coalesce(json_type(p), 'NULL') <> 'OBJECT'
                 THEN 'item ' || (j - 1) || ' is ' || lower(coalesce(json_type(p), 'NULL'))
               WHEN p->>'$.type' = 'text'
                    AND coalesce(json_type(p, '$.text'), 'NULL') <> 'VARCHAR'
                 THEN 'item ' || (j - 1) || ' text is '
                      || lower(coalesce(json_type(p, '$.text'), 'missing'))
          END), lambda e: e IS NOT NULL)[1]"""


def chat_sql(fm: FieldMap) -> str:
    """SQL over table ``rec(source_row, raw)`` producing the intermediate turn columns."""
    assert fm.messages is not None
    role_tags = [t for t in (fm.role_tag, "from", "role") if t]
    content_tags = [t for t in (fm.content_tag, "value", "content") if t]
    turn_keys = list(dict.fromkeys([*role_tags, *content_tags, "tool_calls"]))
    spec: dict[str, object] = {fm.messages: [dict.fromkeys(turn_keys, "JSON")]}
    for extra_field in (fm.system, fm.tools):
        if extra_field:
            spec[extra_field] = "JSON"
    speaker = "coalesce(" + ", ".join(f"m.{ident(t)}" for t in dict.fromkeys(role_tags)) + ")"
    content = "coalesce(" + ", ".join(f"m.{ident(t)}" for t in dict.fromkeys(content_tags)) + ")"
    msgs = f"s.{ident(fm.messages)}"
    system = f"s.{ident(fm.system)}" if fm.system else "NULL"
    tools = f"s.{ident(fm.tools)}" if fm.tools else "NULL"
    fmt = "sharegpt" if fm.format == "sharegpt" else "openai"
    msgs_type = f"json_type(raw, {path(fm.messages)})"
    return f"""
WITH parsed AS (
  SELECT source_row, raw, json_transform(raw, {lit(json.dumps(spec))}) AS s,
    json_type(raw, {lit(path_of(fm.messages) + '[*]')}) AS turn_types
  FROM rec
), turns AS (
  SELECT source_row, raw, s,
    list_transform({msgs}, lambda m, i: {{
      'speaker': CASE WHEN json_type({speaker}) = 'VARCHAR' THEN {speaker}->>'$'
                      ELSE CAST({speaker} AS VARCHAR) END,
      'stype': coalesce(json_type({speaker}), 'NULL'),
      'ttype': coalesce(turn_types[i], 'NULL'),
      'ctype': coalesce(json_type({content}), 'NULL'),
      'content': CASE json_type({content})
          WHEN 'VARCHAR' THEN {content}->>'$'
          WHEN 'ARRAY' THEN array_to_string(list_transform(
              list_filter(from_json({content}, '["JSON"]'), lambda p: p->>'$.type' = 'text'),
              lambda p: p->>'$.text'), chr(10))
          ELSE NULL END,
      'bad_part': CASE WHEN json_type({content}) = 'ARRAY' THEN {_first_bad_part(content)} END,
      'non_text': CASE WHEN json_type({content}) = 'ARRAY' THEN len(list_filter(
              from_json({content}, '["JSON"]'),
              lambda p: coalesce(p->>'$.type', '') <> 'text')) ELSE 0 END,
      'tool_calls': CAST(m."tool_calls" AS VARCHAR)
    }}) AS t
  FROM parsed
)
SELECT
  source_row,
  '{fmt}' AS source_format,
  t AS turns,
  CASE WHEN json_type({system}) = 'VARCHAR' THEN {system}->>'$' END AS system,
  CASE WHEN json_type({tools}) = 'VARCHAR' THEN
            CASE WHEN json_valid({tools}->>'$') THEN CAST(json({tools}->>'$') AS VARCHAR)
                 ELSE {tools}->>'$' END
       WHEN {tools} IS NULL OR json_type({tools}) = 'NULL' THEN NULL
       ELSE CAST(json({tools}) AS VARCHAR) END AS tools,
  {rest_of(fm.mapped_fields())} AS extra,
  CASE
    WHEN coalesce({msgs_type}, 'NULL') = 'NULL' THEN 'missing_field'
    WHEN t IS NULL THEN 'wrong_type'
    WHEN len(t) = 0 THEN 'empty_content'
    WHEN {system} IS NOT NULL AND json_type({system}) NOT IN ('VARCHAR', 'NULL') THEN 'wrong_type'
    WHEN {tools} IS NOT NULL AND json_type({tools}) NOT IN ('VARCHAR', 'ARRAY', 'OBJECT', 'NULL')
      THEN 'wrong_type'
  END AS error_code,
  CASE
    WHEN coalesce({msgs_type}, 'NULL') = 'NULL'
      THEN 'field ' || {lit(repr(fm.messages))} || ' is missing or null'
    WHEN t IS NULL THEN 'field ' || {lit(repr(fm.messages))} || ' is '
      || lower({msgs_type}) || ', expected a list of turn objects'
    WHEN len(t) = 0 THEN 'the conversation has no turns'
    WHEN {system} IS NOT NULL AND json_type({system}) NOT IN ('VARCHAR', 'NULL')
      THEN 'system prompt is ' || lower(json_type({system})) || ', expected text'
    WHEN {tools} IS NOT NULL AND json_type({tools}) NOT IN ('VARCHAR', 'ARRAY', 'OBJECT', 'NULL')
      THEN 'field ' || {lit(repr(fm.tools or ''))} || ' is ' || lower(json_type({tools}))
        || ', expected tool definitions (a JSON list, or JSON text)'
  END AS error_detail
FROM turns
"""
