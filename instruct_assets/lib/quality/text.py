"""Expressions that pull the texts the quality signals read out of ``messages``.

Why a module of its own: every signal reads "the prompt" or "the response", and they must
all agree on what those are. Definitions (canonical schema: optional system first, then
user/assistant alternating, tool turns after an assistant call, ending with assistant):

- ``system_prompt``: content of the first message if its role is ``system``, else null.
- ``first_user``: the first user turn, i.e. the instruction (Alpaca instruction + input).
- ``last_user``: the user turn the final response answers.
- ``user_text`` / ``assistant_text``: all turns of that role joined by a blank line.
- ``response``: the content of the last assistant turn (null if there is none).

All are elementwise over the flattened messages (no per-row Python, no per-list windows),
so they cost a few tens of milliseconds per million rows.
"""

from __future__ import annotations

import polars as pl

MESSAGES = "messages"

# Names of the intermediate text columns added by ``with_text_columns``.
SYSTEM = "system_prompt"
FIRST_USER = "first_user"
LAST_USER = "last_user"
USER_TEXT = "user_text"
ASSISTANT_TEXT = "assistant_text"
RESPONSE = "response"
TEXT_COLUMNS: tuple[str, ...] = (SYSTEM, FIRST_USER, LAST_USER, USER_TEXT, ASSISTANT_TEXT, RESPONSE)

_ROLE = pl.element().struct.field("role")
_CONTENT = pl.element().struct.field("content")


def role_contents(role: str, messages: str = MESSAGES) -> pl.Expr:
    """list[str] of the contents of every ``role`` turn, in order."""
    return pl.col(messages).list.eval(_CONTENT.filter(_ROLE.eq(role)))


def system_prompt(messages: str = MESSAGES) -> pl.Expr:
    """The system prompt, or null when the conversation has none."""
    first = pl.col(messages).list.first()
    return (
        pl.when(first.struct.field("role") == "system")
        .then(first.struct.field("content"))
        .otherwise(None)
        .alias(SYSTEM)
    )


def first_user(messages: str = MESSAGES) -> pl.Expr:
    """The first user turn (the instruction); empty string if absent."""
    return role_contents("user", messages).list.first().fill_null("").alias(FIRST_USER)


def last_user(messages: str = MESSAGES) -> pl.Expr:
    """The last user turn, the one the final assistant response answers."""
    return role_contents("user", messages).list.last().fill_null("").alias(LAST_USER)


def _joined(role: str, messages: str) -> pl.Expr:
    """All ``role`` turns joined by a blank line.

    Single-turn rows (most instruction data) reuse the one turn as is: joining would copy
    every string, which costs more than all the signals that read it.
    """
    turns = role_contents(role, messages)
    several = pl.when(turns.list.len() > 1).then(turns).list.join("\n\n")
    return pl.coalesce(several, turns.list.first(), pl.lit(""))


def user_text(messages: str = MESSAGES) -> pl.Expr:
    """All user turns joined by a blank line."""
    return _joined("user", messages).alias(USER_TEXT)


def assistant_text(messages: str = MESSAGES) -> pl.Expr:
    """All assistant turns joined by a blank line (what a trainer learns from)."""
    return _joined("assistant", messages).alias(ASSISTANT_TEXT)


def response(messages: str = MESSAGES) -> pl.Expr:
    """The final assistant turn; null when there is no assistant turn at all."""
    return role_contents("assistant", messages).list.last().alias(RESPONSE)


def n_messages(messages: str = MESSAGES) -> pl.Expr:
    """Number of messages of any role."""
    return pl.col(messages).list.len().cast(pl.Int32).alias("n_messages")


def n_role(role: str, messages: str = MESSAGES) -> pl.Expr:
    """Number of turns with ``role``."""
    return pl.col(messages).list.eval((_ROLE.eq(role)).cast(pl.Int32)).list.sum().cast(pl.Int32)


def n_turns(messages: str = MESSAGES) -> pl.Expr:
    """Number of user turns: 1 for single-turn instruction data, more for chats."""
    return n_role("user", messages).alias("n_turns")


def role_chars(role: str, messages: str = MESSAGES) -> pl.Expr:
    """Total characters (Unicode code points) in turns of ``role``."""
    return (
        pl.col(messages)
        .list.eval(
            pl.when(_ROLE.eq(role)).then(_CONTENT.str.len_chars()).otherwise(0).cast(pl.Int64)
        )
        .list.sum()
        .cast(pl.Int64)
    )


def has_nonempty_role(role: str, messages: str = MESSAGES) -> pl.Expr:
    """True when at least one ``role`` turn has non-whitespace content."""
    nonblank = _CONTENT.str.contains(r"\S").fill_null(False)
    return pl.col(messages).list.eval((_ROLE.eq(role)) & nonblank).list.any()


def text_columns(messages: str = MESSAGES) -> list[pl.Expr]:
    """The expressions of every text column in ``TEXT_COLUMNS`` plus ``n_messages``/``n_turns``."""
    return [
        system_prompt(messages),
        first_user(messages),
        last_user(messages),
        user_text(messages),
        assistant_text(messages),
        response(messages),
        n_messages(messages),
        n_turns(messages),
    ]


def collect(lf: pl.LazyFrame) -> pl.DataFrame:
    """Collect with the in-memory engine.

    Why: the package's lazy frames exist for common-subexpression elimination across the
    expressions of one stage; polars 2's default streaming engine splits the nested
    ``messages`` column into morsels and was 3x slower on these whole-column string kernels.
    """
    return lf.collect(engine="in-memory")


def add_columns(frame: pl.DataFrame, exprs: list[pl.Expr]) -> pl.DataFrame:
    """``frame`` plus the columns of ``exprs`` (replacing same-named ones).

    Why not ``with_columns``: a lazy ``select`` of the new columns alone, stacked onto the
    frame, shares common subexpressions across ``exprs``; a ``with_columns`` over the wide
    frame (nested ``messages`` included) measured 5x slower for the text columns.
    """
    new = collect(frame.lazy().select(exprs))
    kept = frame.drop([c for c in new.columns if c in frame.columns])
    return kept.hstack(new)


def with_text_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` plus the text columns; a no-op for columns already present."""
    wanted = [e for e in text_columns() if e.meta.output_name() not in frame.columns]
    return add_columns(frame, wanted) if wanted else frame


# --- code detection (shared by alignment, placeholders and output shape) -----------------
#: A markdown code fence.
FENCE = "```"
# Performance note for every regex in this package: polars runs Rust's ``regex`` crate,
# whose fast engines give up on Unicode ``\b`` over non-ASCII text and cannot skip ahead
# without a literal prefix. So hot patterns use ASCII classes, ``(?-u:\b)``, and start
# each line pattern at a literal newline instead of ``(?m)^`` (~10x faster on 1M rows).
_W = "[A-Za-z0-9_]"
_B = "(?-u:\\b)"
_EOL = r"[ \t]*(?:\r?\n|\z)"
#: What a line that only code writes starts with (after indentation): a definition, an
#: import, a control statement, an assignment to a lower-case identifier (formulas in prose
#: start with a capital: "Speed = distance / time"), a call alone on its line, an SQL clause,
#: an HTML/XML tag, a shell command, a shebang, LaTeX, a lone closing bracket or ``end``.
#: Case-sensitive on purpose: prose lines start with a capital ("Return the book", "Select
#: the option from the menu").
_CODE_LINE_START = (
    rf"def[ \t]+{_W}|class[ \t]+{_W}|function[ \t]*{_W}*[ \t]*\(|import[ \t]+[A-Za-z_]|"
    rf"from[ \t]+[A-Za-z0-9_.]+[ \t]+import{_B}|#include{_B}|#!/|"
    rf"(?:public|private|protected|static)[ \t]+{_W}|"
    rf"(?:Public|Private)[ \t]+(?:Function|Sub|Class){_B}|(?:Dim|Sub|Module)[ \t]+{_W}|"
    rf"(?:const|let|var)[ \t]+{_W}+[ \t]*=|return{_B}|(?:for|while|if|switch)[ \t]*\(|"
    rf"for[ \t]+{_W}+[ \t]+in[ \t][^\n]*:{_EOL}|(?:if|elif|while)[ \t][^\n]*:{_EOL}|"
    rf"else[ \t]*:|try[ \t]*:|except{_B}[^\n]*:|package[ \t]+{_W}|using[ \t]+[A-Za-z0-9_.]+;|"
    rf"fn[ \t]+{_W}|func[ \t]+{_W}|"
    r"(?:echo|mkdir|cd|ls|rm|cp|mv|sudo|apt|apt-get|pip|npm|git|grep|sed|awk|chmod|curl|"
    r"wget|docker|kubectl|touch|tar)[ \t]|"
    r"print[ \t]*\(|console\.log|System\.out|<\?php|<!DOCTYPE|"
    r"</?[A-Za-z][A-Za-z0-9-]*(?:[ \t][^<>\n]*)?/?>|"
    r"(?:SELECT|FROM|WHERE|INSERT INTO|UPDATE|DELETE FROM|CREATE TABLE|ALTER TABLE|"
    rf"GROUP BY|ORDER BY|INNER JOIN|LEFT JOIN){_B}|"
    rf"select[ \t]+(?:\*|{_W}+(?:[ \t]*,[ \t]*{_W}+)*)[ \t]+from[ \t]+{_W}|"
    rf"(?:end|End)(?:[ \t]+(?:Sub|Function|Module|If|Class|Select|While))?{_EOL}|"
    rf"[a-z_][A-Za-z0-9_.]*(?:\[[^\]\n]*\])?[ \t]*(?:[-+*/]?=|<-|:=)[ \t]*[^ \t\n]|"
    rf"[A-Za-z_][A-Za-z0-9_.]*\([^\n]*\)[ \t]*;?{_EOL}|\\(?:begin|end)\{{|\\hline|"
    rf"[}}\])];?{_EOL}"
)
#: Code lines, as separate patterns so each has a literal prefix the engine can skip to:
#: a line start (newline, or the start of the text), a line ending in ';' or '{', a Ruby block.
CODE_LINE_PATTERNS: tuple[str, ...] = (
    rf"\n[ \t]*(?:{_CODE_LINE_START})",
    rf"\A[ \t]*(?:{_CODE_LINE_START})",
    rf"[;{{]{_EOL}",
    r"do[ \t]*\|[^|\n]*\|",
)


def has_code(col: str | pl.Expr) -> pl.Expr:
    """True when ``col`` holds a code fence or at least one line only code would contain.

    False on null rows. Uses ``str.find``, which skips null rows: pass a column masked to
    the rows of interest and only those are scanned (``str.contains`` reads them all).
    """
    c = pl.col(col) if isinstance(col, str) else col
    hit = c.str.find(FENCE, literal=True).is_not_null()
    for pattern in CODE_LINE_PATTERNS:
        hit = hit | c.str.find(pattern).is_not_null()
    return hit


def code_line_count(col: str) -> pl.Expr:
    """Code-line signals in ``col`` (a line may count twice: "return x;" starts and ends
    like code); used as "at least two" for the ``code`` output shape."""
    c = pl.col(col)
    total = pl.lit(0, dtype=pl.UInt32)
    for pattern in CODE_LINE_PATTERNS:
        total = total + c.str.count_matches(pattern)
    return total.fill_null(0).cast(pl.Int32)


#: Intermediate columns of ``code_line_stages``: does ``CODE_LINE_PATTERNS[i]`` match.
_CODE_HIT = "_code_hit{}"


def code_line_stages(col: str, name: str = "_code_lines") -> list[list[pl.Expr]]:
    """Stages computing ``name``: ``code_line_count(col)`` capped at 2 (every reader asks
    "none", "some" or "at least two"), as Int32.

    Cheaper than counting: stage 1 asks each pattern whether it matches at all (a search
    that stops at the first match); two patterns with a match already make two signals.
    Only rows where exactly one pattern matched are counted, on that pattern alone (the
    anchored ``\\A`` pattern matches at most once). Adds ``_code_hit<i>`` helper columns.
    """
    c = pl.col(col)
    hits = [pl.col(_CODE_HIT.format(i)) for i in range(len(CODE_LINE_PATTERNS))]
    n_hit = pl.sum_horizontal([h.cast(pl.Int32) for h in hits])
    single = n_hit == 1
    # count_matches skips the rows masked to null; at most one of these is non-null.
    again = pl.coalesce(
        [
            pl.when(single & h).then(c).str.count_matches(p)
            for p, h in zip(CODE_LINE_PATTERNS, hits, strict=True)
            if not p.startswith("\\A")
        ]
    )
    capped = (
        pl.when(n_hit >= 2)
        .then(2)
        .when(n_hit == 0)
        .then(0)
        .otherwise(again.fill_null(1).clip(upper_bound=2))
    )
    return [
        [c.str.contains(p).alias(_CODE_HIT.format(i)) for i, p in enumerate(CODE_LINE_PATTERNS)],
        [capped.fill_null(0).cast(pl.Int32).alias(name)],
    ]


def without_fenced_code(col: str) -> pl.Expr:
    """``col`` with fenced code blocks and inline `code` spans removed (prose only).

    An unclosed fence removes everything after it, as a renderer would show it as code.
    """
    return (
        pl.col(col).str.replace_all(r"(?s)```.*?(?:```|\z)", " ").str.replace_all(r"`[^`\n]+`", " ")
    )
