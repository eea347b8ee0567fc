"""Complexity tiers: an explainable score of how demanding an instruction example is.

Why: curriculum ordering, tier-stratified eval splits and dataset reports need a cheap,
deterministic notion of "simple / medium / complex" that a reviewer can audit row by row.
So every signal is a named, countable feature column (no model, no opaque embedding), and
the score is a capped weighted sum of those columns with weights in :class:`ComplexityConfig`.

Texts:

* *prompt* = every ``user`` turn joined by newlines, lowercased (code detection alone reads
  the original case: SQL keywords are upper case). System prompts are left out on purpose:
  they are usually boilerplate shared by a whole source and would shift every row of that
  source without telling its examples apart.
* *response* = every ``assistant`` turn joined by newlines (tool-call JSON included); not
  lowercased (too costly on long texts), its patterns are case-insensitive instead.

Patterns run in ASCII mode (``(?-u:...)``: ASCII ``\b``), which keeps them on the regex
crate's fast DFA path; they match English cue words, so nothing is lost.

Everything is vectorised polars; multi-turn analysis explodes only the rows that have two or
more user turns.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from instruct_assets.lib.parallel import concat_slices

#: Tier names, simplest first. ``complexity_tier`` is an Enum over these, so sorting by it
#: sorts by difficulty.
TIERS: tuple[str, ...] = ("simple", "medium", "complex")
TIER_DTYPE = pl.Enum(list(TIERS))

#: Values of ``multi_turn_pattern``; precedence when several apply is
#: tool_use > clarification > follow_up > independent_turns.
MULTI_TURN_PATTERNS: tuple[str, ...] = (
    "single_turn",
    "independent_turns",
    "follow_up",
    "clarification",
    "tool_use",
)


@dataclass(frozen=True)
class ComplexityConfig:
    """Weights and tier thresholds of the complexity score.

    score = sum over features of ``weight * min(count, cap)`` plus the response-length term.
    Caps stop one runaway signal (a 40-item list, a 30-turn chat) from deciding the tier.
    Defaults were set so that: a one-step request with a short answer is *simple*; one extra
    step or one explicit constraint is *medium*; several steps plus reasoning demands (or code
    to analyse) is *complex*.
    """

    #: Per directive beyond the first: "translate, then summarise" is one extra step.
    w_extra_directive: float = 1.5
    cap_extra_directives: int = 5
    #: Per reasoning demand ("explain why", "compare", "prove", "step by step", ...).
    w_reasoning: float = 1.5
    cap_reasoning: int = 4
    #: Per format / length / audience / tone constraint ("in JSON", "in one sentence", ...).
    w_constraint: float = 1.0
    cap_constraints: int = 4
    #: Per user turn beyond the first: more context to track.
    w_extra_turn: float = 1.0
    cap_extra_turns: int = 5
    #: Bonus by multi-turn pattern: referring back or answering a clarifying question needs
    #: the earlier turns; tool use needs call formatting and result reading.
    w_follow_up: float = 1.0
    w_clarification: float = 1.0
    w_tool_use: float = 2.0
    #: Code or maths in the prompt: the model must read a formal language, not just prose.
    w_code_in_prompt: float = 1.5
    w_math_in_prompt: float = 1.0
    #: ``w_response_length * log2(1 + response_chars / response_chars_unit)``, capped at
    #: ``cap_response_length`` (log: a 4k-char answer is harder than 500 chars, not 8x).
    w_response_length: float = 0.5
    response_chars_unit: float = 500.0
    cap_response_length: float = 2.0
    #: Per structural element of the response (list item, header, table, code block).
    w_response_structure: float = 0.2
    cap_response_structure: int = 10
    #: Per reasoning step line in the response ("Let's ...", "So ...", "Step 2", "Then ...").
    w_response_step: float = 0.5
    cap_response_steps: int = 4
    #: score >= medium_threshold -> medium; score >= complex_threshold -> complex.
    medium_threshold: float = 2.0
    complex_threshold: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.medium_threshold < self.complex_threshold:
            raise ValueError("need 0 < medium_threshold < complex_threshold")
        if self.response_chars_unit <= 0:
            raise ValueError("response_chars_unit must be positive")


# --- patterns (applied to "\n" + lowercased text; ASCII mode for speed) -------------------

_VERBS = (
    "write|rewrite|explain|describe|list|give|provide|summari[sz]e|translate|create|generate|"
    "identify|compare|classify|categori[sz]e|calculate|compute|find|name|suggest|edit|"
    "convert|design|develop|implement|analy[sz]e|evaluate|prove|derive|justify|outline|draft|"
    "compose|make|add|include|fix|correct|determine|solve|rank|sort|extract|count|predict|"
    "recommend|choose|select|answer|discuss|tell|show|output|format|construct|build|plan|"
    "propose|state|define|illustrate|paraphrase|critique|review|debug|refactor|optimi[sz]e|"
    "verify|estimate|brainstorm|replace|remove|insert|reorder|arrange|organi[sz]e|simplify|"
    "expand|shorten|proofread|label|assign|cite|highlight|mention|use|read|consider|imagine|"
    "pretend|act|complete|fill|match|group|split|combine|merge|research|investigate|respond"
)

#: A clause that opens with an imperative verb: at a line/sentence start (optionally after a
#: list marker), after a comma (", and"), or after "and"/"then"/"also".
IMPERATIVE_CLAUSE = (
    r"(?-u:(?:[\n.!?;:][ \t\r\n]*(?:(?:[-*+]|\d+[.)]|\([a-z0-9]\))[ \t]*)?|,[ \t]*(?:and[ \t]+)?"
    r"|\band[ \t]+|\bthen[ \t]+|\balso[ \t]+)(?:please[ \t]+)?(?:" + _VERBS + r")[ \t])"
)

#: Sequencing words that open a further step ("..., then", "after that", "finally").
SEQUENCING = (
    r"(?-u:(?:[\n.!?;:,][ \t]*|\band[ \t]+)(?:then|after that|afterwards?|next|finally|lastly"
    r"|subsequently|second(?:ly)?|third(?:ly)?|fourth(?:ly)?)\b|\bfollowed by\b)"
)

#: Reasoning demands. "explain why/how" counts once.
REASONING = (
    r"(?-u:\b(?:explain(?:[ \t]+(?:why|how))?|why|how come|compare(?:[ \t]+and[ \t]+contrast)?"
    r"|contrast|prove|"
    r"analy[sz]e|analysis|identify|step[- ]by[- ]step|justify|evaluate|derive|critique|assess|"
    r"infer|deduce|reasoning|pros and cons|trade-?offs?|what would happen|implications?|debug|"
    r"diagnose|troubleshoot|argue|critically|walk me through)\b)"
)

_NUMBER = (
    r"(?:\d+|one|two|three|four|five|six|seven|eight|nine|ten|twenty|fifty|hundred|a single|"
    r"single|a few)"
)
_UNIT = (
    r"(?:words?|sentences?|paragraphs?|lines?|characters?|chars|bullet points?|bullets?|items?|"
    r"syllables?|stanzas?|tweets?|pages?|examples?|points?|reasons?|tips?|ideas?|questions?)"
)

#: Format, length, audience, tone and "do not" constraints, as one alternation so that a
#: phrase is counted once ("in no more than 50 words" is one constraint, not two).
CONSTRAINT = (
    r"(?-u:"
    # format
    r"\b(?:in|as|into|using|use|with)[ \t]+(?:an?[ \t]+|the[ \t]+)?(?:valid[ \t]+)?"
    r"(?:json|yaml|xml|csv|markdown|html|latex|a table|table|tabular form|bullet(?:ed)?"
    r"(?:[ \t]+points?|[ \t]+list)?|numbered list|list form|code block|mm/dd/yyyy|dd/mm/yyyy|"
    r"yyyy-mm-dd|iso[ \t]?8601)\b"
    r"|\bbullet(?:ed)?[- ]points?\b|\bbulleted list\b|\bnumbered list\b|\bmm/dd/yyyy\b"
    # explicit limits, with their number and unit
    r"|\b(?:at most|no more than|not more than|less than|fewer than|under|within|up to|at least"
    r"|maximum of|minimum of|exactly|limit(?:ed)? to)[ \t]+"
    + _NUMBER
    + r"(?:[- ]"
    + _UNIT
    + r")?\b"
    # plain quantities ("in one sentence", "a 3-paragraph essay", "five tips")
    r"|\b" + _NUMBER + r"[- ]" + _UNIT + r"\b"
    # brevity
    r"|\b(?:briefly|concisely|succinctly|in brief|in short|keep it (?:short|brief)"
    r"|be (?:brief|concise))\b"
    # audience
    r"|\bfor (?:an?[ \t]+)?(?:\d+|five|six|seven|eight|ten)[- ]year[- ]olds?\b"
    r"|\bfor (?:an?[ \t]+|the[ \t]+)?(?:child|children|kids?|beginners?|novices?|non-?experts?"
    r"|laym[ae]n|laypeople|general audience|experts?|professionals?|(?:high school |college )?"
    r"students|toddlers?|teenagers?|seniors)\b"
    r"|\blike i'?m (?:five|5|a child)\b|\beli5\b"
    r"|\bin (?:simple|layman'?s|plain) (?:terms|language|english|words)\b"
    # tone / style
    r"|\bin (?:an?|the) (?:[a-z-]+[ \t]+){0,2}(?:tone|style|voice|manner|register)\b"
    # negative constraints
    r"|\b(?:do not|don't|dont|without|avoid|never)[ \t]+(?:use|using|mention|mentioning"
    r"|include|including|repeat|repeating|exceed|exceeding)\b"
    r")"
)

#: Multiple-choice option lines "(A) ..." / "b) ..."; two or more count as one constraint
#: (the answer must be one of the given options).
OPTION_LINE = r"(?-u:\n[ \t]*\(?[a-f][.)][ \t])"

#: Code in the prompt (run on the original-case text: SQL keywords are upper case).
CODE = (
    r"(?-u:```|\bdef [A-Za-z_]\w*[ \t]*\(|\bfunction[ \t]*\w*[ \t]*\(|\bclass [A-Za-z_]\w*[ \t]*"
    r"[:({]|#include[ \t]*<|\bimport [\w.]+|\bfrom [\w.]+ import\b|console\.log\(|"
    r"\bprint[ \t]*\(|\breturn\b(?u:[^\n])*;|\bSELECT\b(?u:[^\n])*\bFROM\b|[;{}][ \t]*\r?\n|=>|"
    r"\b(?:int|void|public|private|static|const|let|var)[ \t]+[A-Za-z_]\w*[ \t]*[=(;]|"
    r"</?(?:html|div|script|body|span|table|ul|li|p|a|h[1-6])\b(?u:[^>\n])*>"
    r"|\w\((?u:[^()\n])*\)[ \t]*[;{])"
)

#: Maths in the prompt: an arithmetic/comparison expression between numbers, LaTeX, an
#: equation in x/y/z, or a maths word.
MATH = (
    r"(?-u:\d[ \t]*[+*^=<>][ \t]*[-(]?\d|\d[ \t]+[-/][ \t]+[-(]?\d|\d[ \t]*[-+*/][ \t]*\("
    r"|\)[ \t]*[-+*/=][ \t]*[-(]?\d|\$(?u:[^$\n])+\$|\\(?:frac|sqrt|sum|int|cdot|times|leq?|geq?)\b"
    r"|\b[xyz][ \t]*(?:\^|=)[ \t]*[-\d(]|\b\d+[xyz]\b|\b(?:solve|equation|integral|derivative"
    r"|probability|square root|factorial|logarithm|polynomial|theorem|prime numbers?|calculate"
    r"|compute|arithmetic|percentage|sum of|product of)\b|(?u:[×÷√∑∫π]))"
)

#: Structural elements of a response: list items, markdown headers, table separator rows.
_STRUCTURE_BODY = r"(?:(?:[-*+]|•|\d+[.)]|\(\d+\)|[a-z][.)])[ \t]|#{1,6}[ \t]|\|[ \t]*:?-{3,})"
#: Structural elements of a response: list items, markdown headers, table separator rows.
#: Responses are not lowercased (too costly on long texts): these run case-insensitively, one
#: pattern for lines after a newline and an anchored one for the first line.
STRUCTURE = r"(?i-u:\n[ \t]*" + _STRUCTURE_BODY + ")"
STRUCTURE_FIRST_LINE = r"(?i-u:^[ \t]*" + _STRUCTURE_BODY + ")"

_STEP_BODY = (
    r"(?:step[ \t]*\d+|(?:first(?:ly)?|second(?:ly)?|third(?:ly)?|then|next|finally|so|therefore"
    r"|thus|hence|now|since|because|let'?s|let’s|we (?:know|have|get|can|need|first|then)"
    r"|this (?:means|gives))\b)"
)
#: Lines of a response that open a reasoning step ("Let's ...", "So ...", "Step 2", "Then").
STEP = r"(?i-u:\n[ \t]*" + _STEP_BODY + ")"
STEP_FIRST_LINE = r"(?i-u:^[ \t]*" + _STEP_BODY + ")"

#: Cues that a later user turn refers back to earlier ones.
FOLLOW_UP = (
    r"(?-u:\b(?:it|its|them|the above|above|previous(?:ly)?|earlier|you (?:just )?(?:said|wrote"
    r"|mentioned|gave|suggested|listed|provided)|your (?:answer|response|reply|last|previous|code"
    r"|list|example|story|poem|suggestion|explanation)|the same|instead|also|again|now make"
    r"|make it|more detail|elaborate|expand on|shorter|longer|continue|what about|how about"
    r"|the (?:first|second|third|last) one|that one)\b"
    r"|\b(?:that|this|these|those)[ \t]*[.?!,]"
    r"|\b(?:that|this|these|those) (?:one|code|answer|list|story|poem|example|function|part"
    r"|sentence|paragraph|text|version|response|idea|recipe|plan|email|essay)s?\b"
    r"|\n[ \t]*(?:and|but|so|now|ok(?:ay)?|thanks?|great|why)\b)"
)

#: An assistant turn that asks the user something back.
#: An assistant turn that asks the user something back: it ends with a question mark or
#: asks for details ("could you clarify", "please tell me which ...").
CLARIFYING_QUESTION = (
    r"(?-u:\?[\"')\s]*$|\b(?:could|can|would) you (?:please )?(?:clarify|specify|provide|tell me"
    r"|share|confirm|give me)\b|\bplease (?:tell|provide|specify|share|give|confirm)\b"
    r"|\bdo you mean\b|\bwhich (?:one|of these) (?:do|would) you\b)"
)

#: Service offers that end in "?" but ask nothing ("How can I help you today?").
GENERIC_OFFER = (
    r"(?-u:\bhow (?:can|may) i (?:help|assist)|\bwhat can i do for you|\banything else\b"
    r"|\bis there (?:anything|something)\b)"
)

_ROLE = pl.element().struct.field("role")
_CONTENT = pl.element().struct.field("content")

FEATURE_COLUMNS: tuple[str, ...] = (
    "n_directives",
    "reasoning_demands",
    "n_constraints",
    "n_turns",
    "multi_turn_pattern",
    "has_code_in_prompt",
    "has_math_in_prompt",
    "response_chars",
    "response_structure",
    "response_steps",
)


def _turns_text(role: str) -> pl.Expr:
    """All ``role`` turns joined by a newline; a single turn is taken as is (joining would
    copy every string of single-turn data for nothing)."""
    turns = pl.col("messages").list.eval(_CONTENT.filter(_ROLE.eq(role)))
    several = pl.when(turns.list.len() > 1).then(turns).list.join("\n")
    return pl.coalesce(several, turns.list.first(), pl.lit(""))


def _multi_turn_patterns(normalized: pl.DataFrame) -> pl.DataFrame:
    """``multi_turn_pattern`` for rows with >= 2 user turns and no tool turn.

    Only those rows are exploded (one row per message), so single-turn data costs nothing.
    """
    multi = normalized.select("_row", "messages").filter(
        pl.col("messages").list.eval(_ROLE == "user").list.sum() >= 2,
        ~pl.col("messages").list.eval(_ROLE == "tool").list.any(),
    )
    if multi.height == 0:
        return pl.DataFrame(schema={"_row": pl.UInt32, "_pattern": pl.String})
    turns = (
        multi.explode("messages")
        .with_columns(_pos=pl.int_range(pl.len()).over("_row"))
        .unnest("messages")
        .sort("_row", "_pos")
        .with_columns(text="\n" + pl.col("content").str.to_lowercase())
        .with_columns(
            _user_ordinal=(pl.col("role") == "user").cum_sum().over("_row"),
            _prev_role=pl.col("role").shift(1).over("_row"),
            _prev_asks=(
                pl.col("text").str.contains(CLARIFYING_QUESTION)
                & ~pl.col("text").str.contains(GENERIC_OFFER)
            )
            .shift(1)
            .over("_row"),
        )
    )
    user = pl.col("role") == "user"
    flags = turns.group_by("_row").agg(
        clarification=(
            user
            & (pl.col("_prev_role") == "assistant")
            & pl.col("_prev_asks").fill_null(False)
            # an answer, not a new question
            & ~pl.col("text").str.contains(r"\?[\"')\s]*$")
        ).any(),
        follow_up=(
            user & (pl.col("_user_ordinal") >= 2) & pl.col("text").str.contains(FOLLOW_UP)
        ).any(),
    )
    return flags.select(
        "_row",
        _pattern=pl.when(pl.col("clarification"))
        .then(pl.lit("clarification"))
        .when(pl.col("follow_up"))
        .then(pl.lit("follow_up"))
        .otherwise(pl.lit("independent_turns")),
    )


def _texts(frame: pl.DataFrame) -> pl.DataFrame:
    """``_row``, ``prompt_raw``, ``response`` (see :func:`_turns_text`), ``n_turns``,
    ``_n_assistant`` and ``_has_tool`` for ``frame`` (``_row``, ``messages``).

    A row with at most one user and one assistant turn (nearly all rows) takes its turn's
    content directly (a cheap gather); only the others are filtered and joined.
    """
    messages = pl.col("messages")
    counted = frame.select(
        "_row",
        "messages",
        n_turns=messages.list.eval(_ROLE == "user").list.sum().cast(pl.Int32),
        _n_assistant=messages.list.eval(_ROLE == "assistant").list.sum(),
        _has_tool=messages.list.eval(_ROLE == "tool").list.any(),
        _user_at=messages.list.eval((_ROLE == "user").arg_max()).list.first(),
        _assistant_at=messages.list.eval((_ROLE == "assistant").arg_max()).list.first(),
    )
    single = counted.select(
        prompt_raw=pl.when(pl.col("n_turns") == 1).then(
            messages.list.get(pl.col("_user_at"), null_on_oob=True).struct.field("content")
        ),
        response=pl.when(pl.col("_n_assistant") == 1).then(
            messages.list.get(pl.col("_assistant_at"), null_on_oob=True).struct.field("content")
        ),
    )
    several = counted.select((pl.col("n_turns") > 1) | (pl.col("_n_assistant") > 1)).to_series()
    texts = pl.concat([counted.drop("messages"), single], how="horizontal")
    if several.any():
        joined = frame.filter(several).select(
            "_row", _p=_turns_text("user"), _r=_turns_text("assistant")
        )
        texts = texts.join(joined, on="_row", how="left", maintain_order="left").with_columns(
            prompt_raw=pl.coalesce("_p", "prompt_raw"),
            response=pl.coalesce("_r", "response"),
        ).drop("_p", "_r")
    return texts.with_columns(
        pl.col("prompt_raw").fill_null(""), pl.col("response").fill_null("")
    ).drop("_user_at", "_assistant_at")


def _features(part: pl.DataFrame) -> pl.DataFrame:
    """Feature columns (plus ``_has_tool``) of a slice of the scored frame, in its order."""
    frame = part.with_row_index("_row")
    texts = _texts(frame.select("_row", "messages")).with_columns(
        prompt="\n" + pl.col("prompt_raw").str.to_lowercase()
    )

    def count(col: str, pattern: str) -> pl.Expr:
        return pl.col(col).str.count_matches(pattern)

    fence = pl.col("response").str.contains("```", literal=True)
    feats = pl.concat(
        [frame.select("source", "example_id"), texts], how="horizontal"
    ).lazy().select(
        "_row",
        "source",
        "example_id",
        n_directives=pl.max_horizontal(
            count("prompt", IMPERATIVE_CLAUSE), count("prompt", SEQUENCING) + 1
        ).cast(pl.Int32),
        reasoning_demands=count("prompt", REASONING).cast(pl.Int32),
        n_constraints=(
            count("prompt", CONSTRAINT) + (count("prompt", OPTION_LINE) >= 2).cast(pl.UInt32)
        ).cast(pl.Int32),
        n_turns="n_turns",
        _has_tool="_has_tool",
        has_code_in_prompt=pl.col("prompt_raw").str.contains(CODE),
        has_math_in_prompt=pl.col("prompt").str.contains(MATH),
        # the joined response has one "\n" between consecutive assistant turns
        response_chars=(
            pl.col("response").str.len_chars().cast(pl.Int64)
            - (pl.col("_n_assistant").cast(pl.Int64) - 1).clip(0, None)
        ),
        response_structure=(
            count("response", STRUCTURE)
            + pl.col("response").str.contains(STRUCTURE_FIRST_LINE).cast(pl.UInt32)
            # counted only where a fence is (count_matches skips the masked rows)
            + pl.when(fence)
            .then(pl.col("response").str.count_matches("```", literal=True))
            .otherwise(pl.lit(0, pl.UInt32))
            // 2
        ).cast(pl.Int32),
        response_steps=(
            count("response", STEP)
            + pl.col("response").str.contains(STEP_FIRST_LINE).cast(pl.UInt32)
        ).cast(pl.Int32),
    ).collect()

    patterns = _multi_turn_patterns(frame)
    feats = feats.join(patterns, on="_row", how="left", maintain_order="left").with_columns(
        multi_turn_pattern=pl.when(pl.col("_has_tool"))
        .then(pl.lit("tool_use"))
        .when(pl.col("n_turns") <= 1)
        .then(pl.lit("single_turn"))
        .otherwise(pl.col("_pattern").fill_null("independent_turns"))
    )
    return feats.sort("_row")


def score_complexity(normalized: pl.DataFrame, cfg: ComplexityConfig | None = None) -> pl.DataFrame:
    """Score every normalized example; one output row per input row, in input order.

    Input: the canonical normalized frame (``source``, ``example_id``, ``messages``; other
    columns are ignored). Output columns: ``source``, ``example_id``, the feature columns
    in :data:`FEATURE_COLUMNS`, ``complexity_score`` (f64) and ``complexity_tier``
    (Enum simple < medium < complex).

    Every feature reads its own row only, so they are computed on contiguous row slices
    in parallel threads (:mod:`instruct_assets.lib.parallel`).
    """
    cfg = cfg or ComplexityConfig()
    feats = concat_slices(normalized.select("source", "example_id", "messages"), _features)

    def capped(col: str, offset: int, cap: int) -> pl.Expr:
        return (pl.col(col) - offset).clip(0, cap).cast(pl.Float64)

    pattern_bonus = (
        pl.when(pl.col("multi_turn_pattern") == "tool_use")
        .then(cfg.w_tool_use)
        .when(pl.col("multi_turn_pattern") == "clarification")
        .then(cfg.w_clarification)
        .when(pl.col("multi_turn_pattern") == "follow_up")
        .then(cfg.w_follow_up)
        .otherwise(0.0)
    )
    length_term = (
        (pl.col("response_chars").cast(pl.Float64) / cfg.response_chars_unit + 1.0).log(2)
        * cfg.w_response_length
    ).clip(0.0, cfg.cap_response_length)
    score = (
        capped("n_directives", 1, cfg.cap_extra_directives) * cfg.w_extra_directive
        + capped("reasoning_demands", 0, cfg.cap_reasoning) * cfg.w_reasoning
        + capped("n_constraints", 0, cfg.cap_constraints) * cfg.w_constraint
        + capped("n_turns", 1, cfg.cap_extra_turns) * cfg.w_extra_turn
        + pattern_bonus
        + pl.col("has_code_in_prompt").cast(pl.Float64) * cfg.w_code_in_prompt
        + pl.col("has_math_in_prompt").cast(pl.Float64) * cfg.w_math_in_prompt
        + length_term
        + capped("response_structure", 0, cfg.cap_response_structure) * cfg.w_response_structure
        + capped("response_steps", 0, cfg.cap_response_steps) * cfg.w_response_step
    ).round(4)

    return feats.select(
        "source",
        "example_id",
        *FEATURE_COLUMNS,
        complexity_score=score,
    ).with_columns(
        complexity_tier=pl.when(pl.col("complexity_score") >= cfg.complex_threshold)
        .then(pl.lit("complex"))
        .when(pl.col("complexity_score") >= cfg.medium_threshold)
        .then(pl.lit("medium"))
        .otherwise(pl.lit("simple"))
        .cast(TIER_DTYPE)
    )


def tier_summary(scored: pl.DataFrame) -> pl.DataFrame:
    """Rows and mean score per source x tier (for asset metadata and reports)."""
    return (
        scored.group_by("source", "complexity_tier")
        .agg(rows=pl.len(), mean_score=pl.col("complexity_score").mean().round(3))
        .sort("source", "complexity_tier")
    )
