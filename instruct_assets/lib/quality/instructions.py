"""Instruction-side signals: vague directives and references to content that is not there.

Both read the first user turn (the instruction): a later turn can lean on earlier ones
("make it shorter"), the first one cannot. Both are deliberately precise rather than
exhaustive: a false "vague" flag on a good prompt costs more than a missed one.
"""

from __future__ import annotations

import polars as pl

from instruct_assets.lib.quality.config import QualityThresholds
from instruct_assets.lib.quality.text import FIRST_USER, SYSTEM

# --- vague_instruction -------------------------------------------------------------------
# The whole (lower-cased, stripped) first user turn must be a generic directive: a verb
# from _VERBS, at most a generic object (_OBJECT) and generic complements. Anything specific
# ("the bug in this Python function", "more formal", "a poem") breaks the full match.
_POLITE = r"(?:(?:please|pls|plz|kindly|can you|could you|would you|will you|can u|could u|"
_POLITE += r"i need you to|i want you to|just|now|ok|okay|hey|hi)[\s,]+)*"
_NOUN = (
    r"(?:text|thing|things|one|stuff|content|document|doc|code|passage|essay|writing|draft|"
    r"piece|sentence|paragraph|file|task|problem|issue|question|work|output|answer|version)"
)
_OBJECT = (
    r"(?:it|this|that|these|those|something|anything|stuff|things?|"
    rf"(?:this|that|the|my|your|these|those|some|a)\s+{_NOUN})"
)
_COMPLEMENT = (
    r"(?:better|good|great|nicer|nice|right|correct|correctly|properly|again|up|now|please|"
    r"for me|quickly|asap|somehow|a bit|a little|a bit better|a little better|thanks|"
    rf"thank you|(?:with|about|on|to|for)\s+{_OBJECT}|something with {_OBJECT})"
)
_VERBS = (
    r"(?:do|make|fix|improve|change|edit|rewrite|redo|enhance|update|modify|polish|refine|"
    r"tweak|adjust|correct|clean|clean up|work on|handle|process|check|review|look at|"
    r"optimi[sz]e|continue|finish|complete|solve|answer|write|create|generate|tell me|"
    r"go ahead and do|deal with)"
)
_HELP = rf"(?:help|help me|help me out|help out|assist me)(?:\s+(?:with|on)\s+{_OBJECT})?"
_DIRECTIVE = rf"(?:{_VERBS}(?:\s+{_OBJECT})?(?:[\s,]+{_COMPLEMENT}){{0,2}})"
_OTHER = r"(?:do your thing|do the thing|you know what to do|whatever|go ahead|something|anything)"
VAGUE_RE = rf"^{_POLITE}(?:{_HELP}|{_DIRECTIVE}|{_OTHER})(?:[\s,]+(?:please|thanks|thank you))?$"

# --- missing_context ---------------------------------------------------------------------
_REF_NOUN = (
    r"(?:text|texts|passage|passages|paragraphs?|sentences?|phrases?|words?|article|essay|"
    r"poem|story|stories|code|snippet|function|program|script|query|table|data|dataset|"
    r"list|document|email|e-mail|letter|excerpt|statements?|quote|quotation|review|tweet|"
    r"post|message|conversation|dialogue|dialog|transcript|image|picture|photo|chart|"
    r"graph|diagram|figure|equation|expression|problem|questions?|input|json|csv|xml|html|"
    r"file|url|link|song|lyrics|speech|report|recipe|headline|numbers|items|names|values|"
    r"terms|options|choices|instructions|examples?|context|content|article)"
)
# Deictic determiners that point at material supposed to be in the prompt.
_DEICTIC = (
    r"(?:this|these|the following|following|the given|the provided|the above|the below|"
    r"the attached|the aforementioned|the preceding|the accompanying|the enclosed|"
    r"the supplied|above|below|attached|provided)"
)
_FILLER = r"(?:[a-z][\w+#-]*\s+){0,2}?"
# Verbs that operate on supplied content ("summarize the text", "rewrite given sentence").
_CONTENT_VERBS = (
    r"(?:summari[sz]e|analy[sz]e|describe|explain|rewrite|edit|translate|classify|proofread|"
    r"read|review|paraphrase|shorten|correct|fix|improve|check|categori[sz]e|evaluate|convert|"
    r"format|sort|reverse|use|identify|find|extract|interpret|debug|optimi[sz]e|refactor)"
)
_STRONG_REF = (
    rf"\b(?:{_DEICTIC}\s+{_FILLER}{_REF_NOUN}|"
    # bare "given" only at the start or right after a content verb ("a given list" is generic)
    rf"(?:^|{_CONTENT_VERBS}\s+)given\s+{_REF_NOUN}|"
    rf"{_REF_NOUN}\s+(?:above|below|provided|given here|attached)|"
    # "Classify the following animals": any plural noun right after "the following".
    r"the following\s+(?:[a-z-]+\s+)?[a-z]{3,}s)\b"
)
#: A reference to supplied material, matched in the lower-cased last clause of the prompt
#: (see ``REVERSED_LAST_CLAUSE_RE``): nothing but plain words may follow it.
STRONG_REF_RE = rf"({_STRONG_REF})"
# "Summarize the table.", "Classify the following:" -- a bare "the <noun>" counts only after a
# content verb and when the prompt ends right there ("links in the document" is generic).
_WEAK_REF_NOUNS = (
    r"(?:table|chart|graph|passage|text|excerpt|article|paragraph|code|image|picture|"
    r"diagram|figure|data|document|snippet|transcript|email|sentence|poem|story)"
)
WEAK_MISSING_CONTEXT_RE = (
    rf"(?i)\b{_CONTENT_VERBS}\s+(the\s+(?:[a-z-]+\s+)?{_WEAK_REF_NOUNS})\s*[.?!:]?$"
    r"|(\bthe following)\s*[.?!:]?$"
)
# Alpaca placeholders for "no input" that carry no content.
_NO_INPUT_RE = r"(?i)\n\s*(?:`?<\s*no\s*input\s*>`?|n/?a|none|null|nil|no input|-+)\s*$"


def vague_instruction(col: str = FIRST_USER) -> pl.Expr:
    """True when the whole first user turn is a generic directive ("Make this better").

    Only turns of at most 80 bytes can be; longer ones are masked to null before any work.
    """
    short = pl.col(col).str.len_bytes() <= 80
    text = (
        pl.when(short)
        .then(pl.col(col))
        .str.strip_chars()
        .str.to_lowercase()
        .str.strip_chars_end(" .!?…;,")
        .str.strip_chars()
    )
    return text.str.contains(VAGUE_RE).fill_null(False).alias("vague_instruction")


#: Literal screen: a reference needs one of these words (the weak rule "Summarize the
#: table." is screened separately on the prompt's last characters).
_REFERENCE_SCREEN = (
    r"[Tt]his|[Tt]hese|[Ff]ollowing|[Gg]iven|[Pp]rovided|[Aa]bove|[Bb]elow|[Aa]ttached|"
    r"aforementioned|[Pp]receding|[Aa]ccompanying|[Ee]nclosed|[Ss]upplied"
)
#: The last clause of a prompt, read on the *reversed* text: what follows its last quote,
#: colon, bracket, digit, newline or sentence end (final punctuation aside). A reference
#: with inline content never ends up in it, so the reference patterns only read this short
#: tail. Reversing makes the pattern start-anchored, which the engine runs in one short
#: forward pass (an end-anchored capture scans from every start position).
_CLAUSE_UNIT = r"(?:[A-Za-z]['’][A-Za-z]|[^:\n\"“”'‘’`\[\]{}<>|0-9.!?])"
REVERSED_LAST_CLAUSE_RE = rf"^\s*[.!?:]*({_CLAUSE_UNIT}*)"
#: The same clause read forwards, on a text stripped of trailing whitespace and .!?:
#: (the start of the longest suffix made of clause units).
LAST_CLAUSE_RE = rf"{_CLAUSE_UNIT}*$"


def context_reference_stages(cfg: QualityThresholds, col: str = FIRST_USER) -> list[list[pl.Expr]]:
    """Stages computing ``context_reference``: the phrase pointing at absent content
    ("the following text"), else null.

    Null unless the turn (Alpaca "no input" markers such as '<noinput>' dropped) is one line
    of at most ``cfg.missing_context_max_prompt_chars`` characters whose last clause holds
    the reference (no inline content after it). Work is narrowed stage by stage (length,
    one line, a literal screen, the last clause) so the patterns read few, short strings;
    intermediate columns (``_ctx_*``) are materialised because polars does not reliably
    share subexpressions across them.
    """
    raw = pl.col(col)
    short = pl.when(raw.str.len_chars() <= cfg.missing_context_max_prompt_chars + 40).then(raw)
    # Only multi-line prompts can hide a "no input" marker (the pattern starts with a
    # newline): on one-line prompts the replace finds nothing, cheaply (literal prefix).
    text = short.str.replace(_NO_INPUT_RE, "")
    t = pl.col("_ctx_text")
    one_line = (~t.str.contains("\n", literal=True)) & (
        t.str.len_chars() <= cfg.missing_context_max_prompt_chars
    )
    screened = one_line & (
        t.str.contains(_REFERENCE_SCREEN)
        | t.str.tail(40)
        .str.to_lowercase()
        .str.contains(rf"(?:{_WEAK_REF_NOUNS}|following)[^a-z0-9]*$")
    )
    # ASCII prompts (nearly all) take a forward route with the same result: strip what the
    # reversed pattern skips (trailing whitespace, then trailing .!?:), then keep the
    # longest suffix the clause pattern accepts (``LAST_CLAUSE_RE``; its units read the
    # same both ways, so the longest suffix is the reversed pattern's greedy prefix). On
    # ASCII, one character is one byte (``find`` returns bytes, ``slice`` counts
    # characters) and one grapheme (``str.reverse`` reverses graphemes). Reversing costs
    # more than the patterns themselves.
    ascii_ = t.str.len_bytes() == t.str.len_chars()
    tail = pl.when(screened & ascii_).then(t).str.strip_chars_end().str.strip_chars_end(".!?:")
    reversed_ = (
        pl.when(screened & ~ascii_)
        .then(t)
        .str.reverse()
        .str.extract(REVERSED_LAST_CLAUSE_RE, 1)
        .str.reverse()
    )
    k = pl.col("_ctx_tail")
    forward = k.str.slice(k.str.find(LAST_CLAUSE_RE))
    clause = pl.coalesce(forward, pl.col("_ctx_rev")).str.to_lowercase()
    c = pl.col("_ctx_clause")
    ref = pl.coalesce(
        c.str.extract(STRONG_REF_RE, 1),
        c.str.extract(WEAK_MISSING_CONTEXT_RE, 1),
        c.str.extract(WEAK_MISSING_CONTEXT_RE, 2),
    )
    return [
        [text.str.strip_chars().alias("_ctx_text")],
        [tail.alias("_ctx_tail"), reversed_.alias("_ctx_rev")],
        [clause.alias("_ctx_clause")],
        [ref.alias("context_reference")],
    ]


def missing_context(cfg: QualityThresholds, col: str = FIRST_USER) -> pl.Expr:
    """True when the instruction refers to content that neither it nor the system prompt holds.

    Expects ``context_reference`` and the ``system_prompt`` text column to exist.
    """
    system_holds = pl.col(SYSTEM).str.len_chars().fill_null(0) >= (
        cfg.missing_context_system_holds_chars
    )
    return (pl.col("context_reference").is_not_null() & ~system_holds).alias("missing_context")


def instruction_columns(cfg: QualityThresholds) -> list[list[pl.Expr]]:
    """Stages of expressions (each stage may read the previous stage's columns); the
    ``_ctx_*`` helper columns they add can be dropped afterwards."""
    ctx = context_reference_stages(cfg)
    return [
        [
            pl.col(FIRST_USER).str.len_chars().cast(pl.Int64).alias("instruction_chars"),
            vague_instruction(),
            *ctx[0],
        ],
        *ctx[1:],
        [missing_context(cfg)],
    ]
