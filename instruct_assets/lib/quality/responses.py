"""Response-side signals: empty, truncated, repetitive, templated, leaking, refusing, noisy.

What a trainer learns is the assistant text, so these are the flags that most often mean
"drop the row". Whole-column regexes run on every row only where a match is rare and the
regex engine can skip ahead (literal prefixes); measures that cost a tokenisation or many
matches per row run on the few rows a cheap screen selects, joined back by row number.
"""

from __future__ import annotations

import polars as pl

from instruct_assets.lib.quality.config import QualityThresholds
from instruct_assets.lib.quality.text import (
    ASSISTANT_TEXT,
    FENCE,
    LAST_USER,
    RESPONSE,
    SYSTEM,
    USER_TEXT,
    code_line_count,
    collect,
    has_code,
    without_fenced_code,
)

ROW = "_row"
#: The final response with fenced code removed: repetition is judged on prose only.
PROSE = "_response_prose"

# --- empty_or_trivial_response -------------------------------------------------------------
#: Whole responses that carry no answer (after lower-casing and stripping final punctuation).
FILLER_RE = (
    r"^(?:n/?a|tbd|todo|idk|<\s*no\s*output\s*>|no output|no answer|no response|"
    r"\.+|-+|…|\?+|_+|\*+)$"
)
#: Acknowledgements and bare booleans: fine for a decision prompt, trivial otherwise.
YES_NO_RE = r"^(?:ok|okay|k|yes|no|yep|nope|yeah|true|false|sure)$"
#: Prompts that ask for a decision (a yes/no/true/false/OK answer is then legitimate).
YES_NO_PROMPT_RE = (
    r"(?i)(?:^|[.!?:\n]\s*)(?:is|are|am|was|were|do|does|did|can|could|will|would|should|"
    r"shall|may|might|must|has|have|had|isn't|aren't|doesn't|don't|didn't)\b"
    r"|\b(?:whether|or not|if|yes|no|true|false|ok|okay|confirm|correct|valid|check|detect|"
    r"determine|verify|classify|agree)\b"
)

# --- special_token_leak ----------------------------------------------------------------------
#: Tokenizer control tokens and chat-template markers that must never be in training text.
#: ``<|...|>`` covers OpenAI/ChatML/Llama-3/Phi tokens (<|endoftext|>, <|im_start|>,
#: <|eot_id|>, <|begin_of_text|>, ...). BERT's [CLS]/[SEP] are left out: responses that
#: explain BERT name them legitimately.
SPECIAL_TOKEN_RE = (
    r"<\|[A-Za-z0-9_]{2,40}\|>|</?s>|\[/?INST\]|<</?SYS>>|<(?:unk|pad|mask|bos|eos)>|"
    r"<(?:start|end)_of_turn>|<(?:start|end)_of_(?:text|sentence)>|"
    r"(?:\A|\n)### (?:Instruction|Response):"
)

# --- refusal_boilerplate ---------------------------------------------------------------------
REFUSAL_RE = (
    r"(?i)\bas an? (?:ai|artificial intelligence)(?: language)? model\b"
    r"|\bas a (?:large )?language model\b"
    r"|\bas an ai(?: assistant)?,? i (?:do not|don['’]t|cannot|can['’]t|am not able|"
    r"am unable|have no|don['’]t have)\b"
    r"|\bi(?:['’]m| am) (?:sorry|afraid),? but (?:i|as an ai)\b[^.!?\n]{0,40}?"
    r"\b(?:cannot|can['’]t|unable|not able|won['’]t|will not)\b"
    r"|\bi (?:cannot|can['’]t|am unable to|am not able to|won['’]t be able to) "
    r"(?:fulfill|comply|assist (?:you )?with|help (?:you )?with|provide|browse|access|"
    r"generate|create)\b"
    r"|\bi don['’]t have (?:personal (?:opinions|experiences|feelings|preferences|beliefs)|"
    r"the ability to|access to real-time)"
    r"|\bmy (?:knowledge|training(?: data)?) (?:cutoff|cut-off)\b"
    r"|\bas of my (?:last|latest) (?:update|training|knowledge)"
)

#: Cheap screen: every REFUSAL_RE match (in sentence or lower case) contains one of these.
#: Literal alternatives with case only on the first letter let the regex engine skip ahead
#: (a case-insensitive screen is 5x slower; ALL-CAPS refusals are not screened in).
REFUSAL_SCREEN_RE = (
    r"[Aa]s an (?:AI|ai|Ai|[Aa]rtificial)|[Ll]anguage model|[Ss]orry,? but|[Aa]fraid,? but|"
    r"I cannot|I can['’]t|[Uu]nable to|[Nn]ot able to|[Bb]e able to|I don['’]t have|"
    r"[Cc]ut-?off|[Aa]s of my"
)

# --- template_placeholder --------------------------------------------------------------------
#: Unrendered Jinja/Handlebars variables and blocks: ``{{name}}``, ``{{ user.name }}``,
#: ``{% if %}``.
JINJA_RE = r"\{\{\s*[A-Za-z_][\w.]*\s*\}\}|\{%-?\s*\w+[^%\n]{0,60}%\}"
_PH_WORDS = (
    r"(?i:your|insert|enter|placeholder|name|date|time|address|number|email|e-mail|phone|"
    r"company|recipient|customer|client|manager|city|state|title|position|website|"
    r"organization|organisation|product|amount|signature|link|url)"
)
#: ``[Your Name]``, ``[Insert date]``, ``[Customer's Name]``, ``[date and time]``: a bracket
#: starting with a capital (or holding a space) and holding a placeholder word.
BRACKET_RE = (
    rf"\[(?:[A-Z][^\[\]\n]{{0,30}}?|[a-z][^\[\]\n]{{0,30}}?\s[^\[\]\n]{{0,30}}?)?\b{_PH_WORDS}\b"
    r"[^\[\]\n]{0,40}\]"
)
#: A bracketed span on one line with no bracket inside: every ``BRACKET_RE`` match is one
#: (it starts at '[' and its body holds no '[', ']' or newline, so it ends at the first ']').
_BRACKET_SPAN_RE = r"\[[^\[\]\n]*\]"
#: Cheap screen: a row can hold a ``BRACKET_RE`` match only if one of its spans holds a
#: placeholder word.
_BRACKET_SCREEN_RE = rf"\[[^\[\]\n]*?{_PH_WORDS}[^\[\]\n]*\]"
#: ``<NAME>``, ``<YOUR_API_KEY>``, ``<insert text here>``.
ANGLE_RE = r"<(?:[A-Z][A-Z0-9_]{2,}(?: [A-Z0-9_]+)*|(?i:your|insert|enter)\b[^<>\n]{0,40})>"
#: ``{name}`` format fields, not preceded by a word char, backslash, ^, _, $ or brace
#: (so LaTeX ``\frac{a}{b}``, ``x_{i}`` and ``{{x}}`` do not count).
BRACE_RE = r"(?:^|[^\w\\^_${}])(\{[A-Za-z_][A-Za-z0-9_]{0,30}\})"
#: Prompts that ask for placeholders: a template, a form letter, fill-in blanks.
TEMPLATE_REQUEST_RE = (
    r"(?i)\btemplates?\b|\bplaceholders?\b|\bfill[- ]in\b|\bform letter\b|\bmad ?libs?\b|"
    r"\bboilerplate\b"
)
#: Cheap screen: rows without any of these cannot hold a placeholder.
_PLACEHOLDER_SCREEN_RE = r"\{\{|\{%|\{[A-Za-z_]|\[[A-Za-z]|<[A-Za-z]"

# --- noise -------------------------------------------------------------------------------------
#: HTML tags/comments/entities, control characters, U+FFFD and long symbol runs.
NOISE_RE = (
    r"<!--.*?-->|</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>\n]{0,200})?/?>|&(?:[A-Za-z]{2,8}|#\d{2,6}|"
    r"#x[0-9A-Fa-f]{2,5});|[\x00-\x08\x0B\x0C\x0E-\x1F\x7F\uFFFD]+|[=_*#~^|+\\/<>-]{6,}"
)
#: Prompts for which markup in the response is the point (HTML pages, XML, templates, code).
MARKUP_REQUEST_RE = (
    r"(?i)\b(?:html|xml|svg|markup|markdown|web ?page|website|tags?|css|code|script|program|"
    r"template|element|regex|ascii|react|component|jsx|vue|angular|latex|function|class|app|"
    r"widget|snippet|query|json|yaml)\b"
)
#: Cheap screens for NOISE_RE (any one passes): tags/entities; U+FFFD, NUL, ESC; symbol
#: runs. Separate simple patterns, because one combined alternation defeats the engine's
#: literal prefilter (5x slower). Other control characters are measured on screened rows
#: but do not trigger the screen: a class of 30 rare bytes has no literal to skip to.
_NOISE_SCREENS = (
    r"[<&]",
    r"\x{FFFD}|[\x00\x1b]",
    r"={6}|-{6}|_{6}|\*{6}|#{6}|~{6}|\+{6}|/{6}|\|{6}",
)

#: Prompts whose answers repeat by design (a chorus, a refrain, a chant).
REPETITIVE_GENRE_RE = (
    r"(?i)\b(?:song|lyrics|chorus|poem|poetry|rap|chant|jingle|nursery rhyme|anthem|hymn|"
    r"refrain|limerick|villanelle)\b"
)

# --- truncation --------------------------------------------------------------------------------
#: Final characters of a response that ended on purpose.
_CLEAN_END = ".!?。！？…\"'”’)]}>*`|"
#: A last line that is a list item, heading, table row, URL, hashtag or a CSV record (two
#: commas glued to the next field, or a quoted field: prose puts a space after its commas)
#: is not prose.
_NOT_PROSE_LINE_RE = (
    r"^\s*(?:[-*•+>#|]|\d{1,3}[.)]|[A-Za-z][.)]\s)|https?://\S+$|\|\s*$|#\w+\s*$"
    r"|,[^\s,][^\n]*,[^\s]|\",[^\s]|[^\s],\""
)


def nonblank_response(last: pl.Expr | None = None) -> pl.Expr:
    """True when the response holds a visible (non-whitespace) character; False when null.

    Same as ``contains(r"\\S")``, cheaper: a visible last character (``last``, see
    ``last_char``) proves it, and the regex runs only on rows whose last 8 characters
    are all whitespace.
    """
    raw = pl.col(RESPONSE).fill_null("")
    last = last_char() if last is None else last
    return (raw.str.len_bytes() > 0) & ~(
        (last == "") & pl.when(last == "").then(raw).str.find(r"\S").is_null()
    )


def trivial_response(
    cfg: QualityThresholds, last_col: bool = False, nonblank_col: bool = False
) -> pl.Expr:
    """True for an empty, filler ("N/A", "...") or bare yes/ok response to a non-yes/no prompt.

    Only responses of at most 24 bytes can be filler, so the string work runs on those alone
    (the others are masked to null, which string kernels skip).
    """
    raw = pl.col(RESPONSE).fill_null("")
    short_raw = pl.when(raw.str.len_bytes() <= 24).then(raw)
    resp = short_raw.str.strip_chars()
    low = resp.str.to_lowercase().str.strip_chars_end(" .!")
    # ``find(...).is_null()``/``is_not_null()`` instead of ``contains``: ``find`` skips the
    # masked rows (``contains`` reads them all). A null turned False inside the final
    # fill_null(False) changes nothing.
    symbol_only = (resp.str.len_chars() < cfg.trivial_min_chars) & resp.str.find(
        r"^[\p{L}\p{N}]"
    ).is_null()
    bare = low.str.find(YES_NO_RE).is_not_null()
    yes_no_prompt = pl.when(bare).then(pl.col(LAST_USER)).str.find(YES_NO_PROMPT_RE).is_not_null()
    # Blank: no visible character (see ``nonblank_response``).
    last = pl.col("_last") if last_col else last_char()
    blank = ~(pl.col("_nonblank") if nonblank_col else nonblank_response(last))
    return (
        blank
        | (
            symbol_only
            | ((low.str.len_chars() == 0) & (resp.str.len_chars() > 0))  # "...", "!!"
            | low.str.find(FILLER_RE).is_not_null()
            | (bare & ~yes_no_prompt.fill_null(False))
        ).fill_null(False)
    ).alias("empty_or_trivial_response")


def special_token() -> pl.Expr:
    """The first special token found in any turn (system, user, assistant), else null."""
    cols = [ASSISTANT_TEXT, USER_TEXT, SYSTEM]
    found = [pl.col(c).str.extract(f"({SPECIAL_TOKEN_RE})", 1).str.strip_chars() for c in cols]
    return pl.coalesce(found).alias("special_token")


def refusal_phrase() -> pl.Expr:
    """The first refusal/AI-disclaimer phrase in the assistant text (lower-cased), else null.

    A literal screen (``REFUSAL_SCREEN_RE``) picks the few rows the full regex reads.
    """
    text = pl.col(ASSISTANT_TEXT)
    screened = pl.when(text.str.contains(REFUSAL_SCREEN_RE)).then(text)
    return screened.str.extract(f"({REFUSAL_RE})", 1).str.to_lowercase().alias("refusal_phrase")


# --- subset measures ----------------------------------------------------------------------------
def _placeholder_measures(sub: pl.DataFrame) -> pl.DataFrame:
    """``placeholder_count`` and the first ``placeholder`` on rows that passed the screen.

    Counted in prose only: fenced code is removed, and a response (or prompt) that is code
    is skipped, since ``{{ x }}`` is Angular/Jinja/Handlebars syntax and ``[x]``/``{x}`` are
    indexing and blocks there. Prompts are checked for ``{{x}}`` only (users legitimately
    write "[Your Name]" when asking for a template).

    ``sub`` needs ``_has_fence``/``_code_lines`` (of the response) and ``_prompt_jinja``
    (the prompt holds ``{{`` or ``{%``). Each part runs on the rows it can change: the
    response part on prose answers (no code), the template-request check on rows with a
    placeholder, the prompt part on prompts holding ``{{``/``{%`` (``JINJA_RE`` needs one).
    """
    a = pl.col(ASSISTANT_TEXT)
    # A single-turn assistant text is the response: reuse its code facts.
    same = (a == pl.col(RESPONSE)).fill_null(False)
    codeish = (
        pl.when(same)
        .then(pl.col("_has_fence") | (pl.col("_code_lines") > 0))
        .otherwise(has_code(pl.when(~same).then(a)))
    )
    sub = sub.with_columns(codeish.alias("_codeish"))
    # Response part. Non-code text holds no fence, so removing fenced code only removes the
    # inline `code` spans (``without_fenced_code`` minus its no-op first step).
    p = pl.col("_prose")
    prose = sub.filter(~pl.col("_codeish")).select(
        ROW, LAST_USER, a.str.replace_all(r"`[^`\n]+`", " ").alias("_prose")
    )
    # ``BRACKET_RE`` matches (count and first), found span by span (see _bracket_matches).
    prose = prose.hstack(_bracket_matches(prose.select(ROW, "_prose")))
    in_response = (
        p.str.count_matches(JINJA_RE)
        + pl.col("_n_bracket")
        + p.str.count_matches(ANGLE_RE)
        + p.str.count_matches(BRACE_RE)
    )
    resp = prose.with_columns(in_response.alias("_n")).filter(pl.col("_n") > 0)
    # A prompt that asks for a template or form wants placeholders in the answer.
    asked = pl.col(LAST_USER).str.contains(TEMPLATE_REQUEST_RE).fill_null(False)
    first = pl.coalesce(
        p.str.extract(f"({JINJA_RE})", 1),
        pl.col("_first_bracket"),
        p.str.extract(f"({ANGLE_RE})", 1),
        p.str.extract(BRACE_RE, 1),
    )
    resp = collect(
        resp.lazy().select(
            ROW,
            pl.when(asked).then(0).otherwise(pl.col("_n")).alias("_n_resp"),
            pl.when(~asked).then(first).alias("_first_resp"),
        )
    )
    # Prompt part.
    prompt = pl.col("_prompt")
    prompt_codeish = pl.col("_prompt_codeish")
    pr = (
        sub.filter(pl.col("_prompt_jinja"))
        .select(
            ROW,
            pl.concat_str(pl.col(SYSTEM).fill_null(""), pl.col(USER_TEXT), separator="\n").alias(
                "_prompt"
            ),
        )
        .with_columns(has_code("_prompt").alias("_prompt_codeish"))
        .select(
            ROW,
            pl.when(prompt_codeish)
            .then(0)
            .otherwise(prompt.str.count_matches(JINJA_RE))
            .alias("_n_prompt"),
            pl.when(~prompt_codeish)
            .then(prompt.str.extract(f"({JINJA_RE})", 1))
            .alias("_first_prompt"),
        )
    )
    out = _attach(_attach(sub.select(ROW), resp), pr)
    count = pl.col("_n_resp").fill_null(0) + pl.col("_n_prompt").fill_null(0)
    return out.select(
        ROW,
        count.cast(pl.Int32).alias("placeholder_count"),
        pl.coalesce("_first_resp", "_first_prompt").alias("placeholder"),
    )


def _bracket_matches(frame: pl.DataFrame) -> pl.DataFrame:
    """``_n_bracket`` (``str.count_matches(BRACKET_RE)``) and ``_first_bracket``
    (``str.extract(BRACKET_RE)``) of ``frame``'s ``_prose``, one row per row of ``frame``
    (keyed by ``_row``).

    Same values, cheaper: ``BRACKET_RE``'s bounded, lazy repetitions around a word list
    make the regex engine fall back to its slow matcher at every '['. Every match is a
    whole bracket span (``_BRACKET_SPAN_RE``; spans are disjoint, so a leftmost-first scan
    finds exactly the spans that match in full), so the spans of the rows that pass
    ``_BRACKET_SCREEN_RE`` are checked one by one, those without a placeholder word first
    dropped by a literal screen.
    """
    s = pl.col("_span")
    p = pl.col("_prose")
    spans = collect(
        frame.lazy()
        .select(ROW, pl.when(p.str.contains(_BRACKET_SCREEN_RE)).then(p).alias("_p"))
        .filter(pl.col("_p").is_not_null())
        .select(ROW, pl.col("_p").str.extract_all(_BRACKET_SPAN_RE).alias("_span"))
        .explode("_span")
        .filter(s.str.contains(_PH_WORDS).fill_null(False))
        .filter(s.str.contains(f"^(?:{BRACKET_RE})$"))
        .group_by(ROW, maintain_order=True)
        .agg(pl.len().cast(pl.UInt32).alias("_n_bracket"), s.first().alias("_first_bracket"))
    )
    out = frame.select(ROW).join(spans, on=ROW, how="left", maintain_order="left")
    return out.select(pl.col("_n_bracket").fill_null(0).cast(pl.UInt32), pl.col("_first_bracket"))


def _noise_measures(sub: pl.DataFrame, cfg: QualityThresholds) -> pl.DataFrame:
    """``noise_ratio``: characters in noise matches / characters, fenced code excluded.

    ``_markup_asked`` (the prompt asks for markup) is only read where the ratio could flag.
    """
    prose = without_fenced_code(RESPONSE)
    noise = prose.str.extract_all(NOISE_RE).list.eval(pl.element().str.len_chars()).list.sum()
    # NaN (an empty response) -> 0 in a second step: ``fill_nan`` on the expression itself
    # evaluates it twice (a when/then over its input), i.e. a second extract_all.
    ratio = pl.col("_ratio").fill_nan(0.0)
    could_flag = (ratio >= cfg.max_noise_ratio) & (pl.col("_chars") >= cfg.noise_min_chars)
    return sub.select(
        ROW,
        "_chars",
        LAST_USER,
        (noise.cast(pl.Float64) / pl.col("_chars").cast(pl.Float64)).alias("_ratio"),
    ).select(
        ROW,
        ratio.alias("noise_ratio"),
        pl.when(could_flag)
        .then(pl.col(LAST_USER))
        .str.find(MARKUP_REQUEST_RE)
        .is_not_null()
        .alias("_markup_asked"),
    )


def _truncation_measures(sub: pl.DataFrame, cfg: QualityThresholds) -> pl.DataFrame:
    """On responses that do not end cleanly: bracket imbalance and the prose cut-off rule.

    ``sub`` holds rows whose last visible character (``_last``, never "" here) is open or a
    quote, with ``_chars``, ``_has_fence`` and ``_code_lines``. The last line ends with that
    character, so the prose rule's "ends on a letter, ',' or ';'" and "no code" parts are
    checked first and the last line is split out on the rows that pass them alone.
    """
    resp = pl.col(RESPONSE)
    # Brackets are counted where there is one (most prose has none: imbalance 0).
    bracketed = pl.when(resp.str.contains(r"[\[\]{}]")).then(resp)
    opens = bracketed.str.count_matches(r"[\[{]").fill_null(0)
    closes = bracketed.str.count_matches(r"[\]}]").fill_null(0)
    imbalance = opens.cast(pl.Int32) - closes.cast(pl.Int32)
    chars = pl.col("_chars")
    last = pl.col("_last")
    prose_end = (
        (chars >= cfg.truncation_min_chars)
        & last.str.contains(r"^[\p{L},;]$")
        # has_code(RESPONSE), from the fence and code-line facts computed once
        & ~(pl.col("_has_fence") | (pl.col("_code_lines") > 0))
    )
    ends_colon = (last == ":") & (chars >= 20)
    sub = collect(
        sub.lazy().select(
            ROW,
            RESPONSE,
            imbalance.alias("bracket_imbalance"),
            prose_end.alias("_prose_end"),
            ends_colon.alias("_ends_colon"),
        )
    )
    last_line = resp.str.tail(400).str.strip_chars_end().str.split("\n").list.last()
    last_line = last_line.str.strip_chars()
    prose_cut = (last_line.str.len_chars() >= cfg.truncation_min_last_line_chars) & ~(
        last_line.str.contains(_NOT_PROSE_LINE_RE)
    )
    cut = collect(
        sub.lazy().filter(pl.col("_prose_end")).select(ROW, prose_cut.alias("_prose_cut"))
    )
    return _attach(sub.select(ROW, "bracket_imbalance", "_ends_colon"), cut).select(
        ROW,
        "bracket_imbalance",
        (
            pl.col("_prose_cut").fill_null(False)
            | pl.col("_ends_colon")
            | (pl.col("bracket_imbalance") >= cfg.bracket_imbalance_min)
        ).alias("_cut"),
    )


def _repetition_measures(sub: pl.DataFrame) -> pl.DataFrame:
    """Exact Gopher-style n-gram ratios on the (few) screened rows.

    Words are whitespace-separated tokens; characters are word characters (spaces excluded).
    ``top_2gram_char_frac``: count x characters of the most frequent 2-gram / all word chars.
    ``dup_5gram_char_frac``: word characters covered by a repeated (not first) occurrence of a
    5-gram / all word chars -- Gopher's measure without its greedy skip, so it can only be a
    little higher on overlapping repeats. Word identity uses polars' 64-bit hash: only
    equality matters, so results do not depend on hash values (collisions are negligible).
    """
    if sub.height == 0:
        return sub.select(
            ROW,
            pl.lit(None, pl.Float64).alias("top_2gram_char_frac"),
            pl.lit(None, pl.Float64).alias("dup_5gram_char_frac"),
        )
    words = (
        sub.select(
            ROW,
            # whitespace-separated words: newlines and tabs become spaces, then split (a
            # literal split is 2x cheaper than extracting \S+ with a regex)
            pl.col(PROSE)
            .str.replace_all("\n", " ", literal=True)
            .str.replace_all("\t", " ", literal=True)
            .str.replace_all("\r", " ", literal=True)
            .str.split(" ")
            .alias("w"),
        )
        .explode("w")
        .filter(pl.col("w").str.len_bytes() > 0)
        .select(
            pl.col(ROW).cast(pl.UInt64),
            pl.col("w").hash(seed=0).alias("h"),
            pl.col("w").str.len_chars().cast(pl.Int64).alias("n"),
        )
    )
    row, h, n = pl.col(ROW), pl.col("h"), pl.col("n")
    k1, k2, k3, k4, k5 = (
        0x9E3779B97F4A7C15,
        0xC2B2AE3D27D4EB4F,
        0x165667B19E3779F9,
        0x27D4EB2F165667C5,
        0xFF51AFD7ED558CCD,
    )
    # Keys mix the row number in, so equal n-grams of different rows never meet; one UInt64
    # key is far cheaper to deduplicate than a (row, n-gram) struct.
    salt = row * k5
    same2 = row.shift(-1) == row
    same5 = row.shift(-4) == row
    g2 = (h * k1 + h.shift(-1)) ^ salt
    g5 = (h * k1 + h.shift(-1) * k2 + h.shift(-2) * k3 + h.shift(-3) * k4 + h.shift(-4)) ^ salt
    grams = words.with_columns(
        pl.when(same2).then(g2).alias("g2"),
        pl.when(same2).then(n + n.shift(-1)).alias("n2"),
        pl.when(same5).then(g5).alias("g5"),
    )
    # Repeated (not first) occurrence of a 5-gram within its row; a word is covered when
    # one of the 5-grams starting at it or at the 4 words before it is such a repeat.
    rep = (pl.col("g5").is_not_null() & ~pl.col("g5").is_first_distinct()).cast(pl.UInt8)
    grams = grams.with_columns(rep.rolling_max(window_size=5, min_samples=1).alias("_cov"))
    totals = grams.group_by(ROW).agg(
        n.sum().alias("_chars"),
        (n * pl.col("_cov")).sum().alias("_dup5_chars"),
    )
    top2 = (
        grams.filter(pl.col("g2").is_not_null())
        .group_by("g2")
        .agg(pl.col(ROW).first(), (pl.len() * pl.col("n2").first()).alias("_c"))
        .group_by(ROW)
        .agg(pl.col("_c").max().alias("_top2_chars"))
    )
    out = (
        sub.select(pl.col(ROW).cast(pl.UInt64))
        .join(totals, on=ROW, how="left")
        .join(top2, on=ROW, how="left")
    )
    chars = pl.col("_chars").cast(pl.Float64)
    return out.select(
        pl.col(ROW).cast(sub.schema[ROW]),
        (pl.col("_top2_chars").fill_null(0) / chars).alias("top_2gram_char_frac"),
        (pl.col("_dup5_chars").fill_null(0) / chars).alias("dup_5gram_char_frac"),
    ).sort(ROW)


def _line_measures(frame: pl.DataFrame, cfg: QualityThresholds) -> pl.DataFrame:
    """Duplicate-line ratios (all rows) and the screen that picks rows for n-gram ratios.

    Lines are those of the prose (fenced code removed) with at least
    ``cfg.repetition_min_line_chars`` bytes; ``response_lines`` counts all non-empty lines.
    Only multi-line responses (about half) are split; a one-line response's statistics
    follow from its length.
    """
    e = pl.element()
    text = pl.col(PROSE).fill_null("")
    base = frame.select(
        ROW,
        PROSE,
        text.str.len_bytes().alias("_len"),
        (
            pl.col("_multi")
            if "_multi" in frame.columns
            else text.str.contains("\n", literal=True)
        ).alias("_multi"),
    )
    multi = base.filter(pl.col("_multi")).select(ROW, pl.col(PROSE).str.split("\n").alias("_all"))
    lines, lens = pl.col("_lines"), pl.col("_lens")
    multi = collect(
        multi.lazy()
        .select(
            ROW,
            pl.col("_all")
            .list.eval(e.filter(e.str.len_bytes() >= cfg.repetition_min_line_chars))
            .alias("_lines"),
            pl.col("_all").list.eval(e.str.len_bytes()).alias("_lens"),
        )
        .with_columns(
            lines.list.len().cast(pl.Int32).alias("_n"),
            lines.list.n_unique().cast(pl.Int32).alias("_u"),
            lens.list.max().cast(pl.Int64).alias("_max_line_m"),
            lens.list.eval((e > 0).cast(pl.Int32)).list.sum().cast(pl.Int32).alias("_rl"),
        )
    )
    n, u = pl.col("_n"), pl.col("_u")
    # Character share of repeated lines: only rows with a repeated line can be non-zero, so
    # the per-list work runs on those alone (filtered: list.eval also reads masked lists).
    dup_chars = lines.list.eval(
        pl.when(e.is_first_distinct()).then(0).otherwise(e.str.len_chars())
    ).list.sum()
    all_chars = lines.list.eval(e.str.len_chars()).list.sum()
    dups = collect(multi.lazy().filter(u < n).select(ROW, (dup_chars / all_chars).alias("_dlcf")))
    multi = _attach(
        multi.select(
            ROW,
            "_max_line_m",
            "_rl",
            pl.when(n > 0).then((n - u).cast(pl.Float64) / n).otherwise(0.0).alias("_dlf"),
        ),
        dups,
    )
    one = pl.col("_len")
    base = base.hstack(_expand(multi.drop(ROW), base.get_column("_multi"))).with_columns(
        pl.coalesce("_max_line_m", one.cast(pl.Int64)).alias("_max_line"),
        pl.coalesce("_rl", (one > 0).cast(pl.Int32)).alias("response_lines"),
        pl.col("_dlf").fill_null(0.0).alias("dup_line_frac"),
        pl.col("_dlcf").fill_null(0.0).alias("dup_line_char_frac"),
    )
    # Screen for the n-gram ratios: long enough for Gopher's statistics, and a cheap sign of
    # looping -- repeated lines, or a runaway line (a generation stuck in a loop rarely
    # emits newlines). A loop inside one shorter paragraph is not screened in: probing every
    # paragraph for a recurring substring cost more than the rest of the scoring.
    long_enough = pl.col(PROSE).str.len_chars() >= cfg.repetition_min_words * 4
    runaway = pl.col("_max_line") >= cfg.repetition_screen_runaway_chars
    repeated = pl.col("dup_line_char_frac") >= cfg.repetition_screen_min_dup_line_char_frac
    screened = long_enough & (repeated | runaway)
    return base.select(
        ROW,
        "response_lines",
        "dup_line_frac",
        "dup_line_char_frac",
        screened.alias("_screened"),
    )


def _expand(part: pl.DataFrame, mask: pl.Series) -> pl.DataFrame:
    """``part`` (the rows where ``mask`` is true, in order) spread over ``mask``'s rows, null
    elsewhere: a positional gather, cheaper than joining on ``_row``."""
    at = pl.select(pl.when(mask).then(mask.cast(pl.UInt32).cum_sum() - 1)).to_series()
    return part.select(pl.all().gather(at))


def _attach(out: pl.DataFrame, part: pl.DataFrame) -> pl.DataFrame:
    """``out`` plus the columns of ``part`` (rows keyed by ``_row``, a subset), null elsewhere.

    Joins only the key column and stacks the result: joining the wide frame itself would
    copy every column of it.
    """
    aligned = out.select(ROW).join(part, on=ROW, how="left", maintain_order="left")
    return out.hstack(aligned.drop(ROW))


def response_frame(frame: pl.DataFrame, cfg: QualityThresholds) -> pl.DataFrame:
    """Every response measure and flag, one row per input row (in input order), keyed by
    ``_row``.

    ``frame`` needs ``_row`` and the text columns of ``text.with_text_columns``; the
    response facts ``_has_fence``, ``_code_lines``, ``_last`` (``last_char``), ``_chars``,
    ``_nonblank`` (``nonblank_response``) and ``_multi`` (holds a newline) are reused when
    present.
    """
    base = frame.select(ROW, RESPONSE, ASSISTANT_TEXT, USER_TEXT, SYSTEM, LAST_USER)
    has = set(frame.columns)
    fence = (
        pl.col("_has_fence")
        if "_has_fence" in has
        else pl.col(RESPONSE).str.contains(FENCE, literal=True).fill_null(False)
    )
    code_lines = pl.col("_code_lines") if "_code_lines" in has else code_line_count(RESPONSE)
    work = base.hstack(
        collect(
            frame.lazy().select(
                special_token(),
                refusal_phrase(),
                fence.alias("_has_fence"),
                code_lines.alias("_code_lines"),
                pl.col(ASSISTANT_TEXT).str.contains(_PLACEHOLDER_SCREEN_RE).alias("_ph_asst"),
                (
                    pl.col(USER_TEXT).str.contains(r"\{\{|\{%")
                    | pl.col(SYSTEM).fill_null("").str.contains(r"\{\{|\{%")
                ).alias("_prompt_jinja"),
                pl.any_horizontal([pl.col(RESPONSE).str.contains(p) for p in _NOISE_SCREENS])
                .fill_null(False)
                .alias("_noise_screen"),
                (pl.col("_last") if "_last" in has else last_char()).alias("_last"),
                (
                    pl.col("_chars")
                    if "_chars" in has
                    else pl.col(RESPONSE).fill_null("").str.len_chars()
                ).alias("_chars"),
                *([pl.col("_nonblank")] if "_nonblank" in has else []),
            )
        )
    )
    # Lazy, so the subexpressions shared inside trivial_response are computed once.
    work = collect(
        work.lazy().with_columns(
            (pl.col("_ph_asst") | pl.col("_prompt_jinja")).alias("_ph_screen"),
            trivial_response(cfg, last_col=True, nonblank_col="_nonblank" in has),
            _open_end(pl.col("_last")).alias("_open_end"),
            _ends_in_quote(pl.col("_last")).alias("_quote_end"),
        )
    )
    # Subset measures: each reads only the rows its screen selected.
    fenced = work.filter(pl.col("_has_fence")).with_columns(
        pl.col(RESPONSE).pipe(_drop_fences).alias(PROSE)
    )
    out = work.select(
        ROW,
        RESPONSE,
        "empty_or_trivial_response",
        "special_token",
        "refusal_phrase",
        "_chars",
    )
    out = _attach(
        out,
        fenced.select(
            ROW,
            (pl.col(RESPONSE).str.count_matches(FENCE, literal=True) % 2 == 1).alias("_odd_fence"),
        ),
    )
    # Cut-off checks read responses that end on an open character, or on a quote (a JSON
    # string cut mid-value ends with '"').
    cut_rows = work.select(
        ROW, RESPONSE, "_last", "_chars", "_has_fence", "_code_lines", "_open_end", "_quote_end"
    ).filter(pl.col("_open_end") | pl.col("_quote_end"))
    out = _attach(out, _truncation_measures(cut_rows, cfg))
    ph_rows = work.select(
        ROW,
        RESPONSE,
        ASSISTANT_TEXT,
        USER_TEXT,
        SYSTEM,
        LAST_USER,
        "_has_fence",
        "_code_lines",
        "_prompt_jinja",
        "_ph_screen",
    ).filter(pl.col("_ph_screen"))
    out = _attach(out, _placeholder_measures(ph_rows))
    noise_rows = work.select(ROW, RESPONSE, LAST_USER, "_chars", "_noise_screen").filter(
        pl.col("_noise_screen")
    )
    out = _attach(out, _noise_measures(noise_rows, cfg))
    # Line ratios on the response; fenced rows are redone on their prose (code removed),
    # so here they are not split (every column of theirs is replaced below).
    multi = (
        pl.col("_multi")
        if "_multi" in has
        else pl.col(RESPONSE).str.contains("\n", literal=True).fill_null(False)
    )
    lines = _line_measures(
        collect(
            frame.lazy().select(
                ROW,
                pl.col(RESPONSE).fill_null("").alias(PROSE),
                (multi & ~pl.col("_has_fence")).alias("_multi"),
            )
        )
        if "_has_fence" in has
        else work.select(ROW, pl.col(RESPONSE).fill_null("").alias(PROSE)),
        cfg,
    )
    prose_lines = _line_measures(fenced.select(ROW, PROSE), cfg)
    out = _attach(out, lines)
    line_cols = [c for c in prose_lines.columns if c != ROW]
    out = _attach(out, prose_lines.rename({c: f"_p{c}" for c in line_cols})).with_columns(
        pl.coalesce(f"_p{c}", c).alias(c) for c in line_cols
    )
    screened = out.filter(pl.col("_screened")).select(ROW)
    prose_all = pl.concat(
        [
            work.join(screened, on=ROW)
            .filter(~pl.col("_has_fence"))
            .select(ROW, pl.col(RESPONSE).alias(PROSE)),
            fenced.join(screened, on=ROW).select(ROW, PROSE),
        ]
    ).sort(ROW)
    out = _attach(out, _repetition_measures(prose_all))
    out = out.with_columns(
        pl.col("placeholder_count").fill_null(0),
        pl.col("noise_ratio").fill_null(0.0),
        pl.col("bracket_imbalance").fill_null(0),
    )
    repetition = (
        (pl.col("dup_line_frac") >= cfg.max_dup_line_frac)
        | (pl.col("dup_line_char_frac") >= cfg.max_dup_line_char_frac)
        | (pl.col("top_2gram_char_frac") >= cfg.max_top_2gram_char_frac).fill_null(False)
        | (pl.col("dup_5gram_char_frac") >= cfg.max_dup_5gram_char_frac).fill_null(False)
    )
    # Code repeats by nature ("}" lines, "public static") and songs and poems repeat their
    # chorus: judge only prose answers to other prompts. Checked on the few rows over a
    # threshold.
    over = out.filter(repetition.fill_null(False)).select(ROW)
    candidates = prose_all.join(over, on=ROW).join(work.select(ROW, LAST_USER), on=ROW)
    excused = candidates.filter(
        has_code(PROSE) | pl.col(LAST_USER).str.contains(REPETITIVE_GENRE_RE)
    ).select(ROW, pl.lit(True).alias("_rep_excused"))
    out = _attach(out, excused)
    repetition = repetition & ~pl.col("_rep_excused").fill_null(False)
    empty = pl.col("empty_or_trivial_response")
    return out.select(
        ROW,
        "empty_or_trivial_response",
        (~empty & (pl.col("_odd_fence").fill_null(False) | pl.col("_cut").fill_null(False))).alias(
            "truncated_response"
        ),
        "bracket_imbalance",
        "response_lines",
        "dup_line_frac",
        "dup_line_char_frac",
        "top_2gram_char_frac",
        "dup_5gram_char_frac",
        (~empty & repetition).alias("repetition"),
        "placeholder_count",
        "placeholder",
        (pl.col("placeholder_count") > 0).alias("template_placeholder"),
        "special_token",
        pl.col("special_token").is_not_null().alias("special_token_leak"),
        "refusal_phrase",
        pl.col("refusal_phrase").is_not_null().alias("refusal_boilerplate"),
        "noise_ratio",
        (
            (pl.col("noise_ratio") >= cfg.max_noise_ratio)
            & (pl.col("_chars") >= cfg.noise_min_chars)
            & ~pl.col("_markup_asked").fill_null(False)
        ).alias("noisy_response"),
    )


def _drop_fences(expr: pl.Expr) -> pl.Expr:
    """``expr`` without fenced code blocks (an unclosed fence drops the rest)."""
    return expr.str.replace_all(r"(?s)```.*?(?:```|\z)", "\n")


def last_char() -> pl.Expr:
    """The last visible character of the response ("" when its last 8 characters are all
    whitespace). Reading a fixed tail keeps this a cheap, allocation-free pass."""
    return pl.col(RESPONSE).fill_null("").str.tail(8).str.strip_chars_end().str.tail(1)


def _ends_in_quote(last: pl.Expr | None = None) -> pl.Expr:
    """True when the response's last visible character is a quote (``last``: a column of
    ``last_char()`` when already computed)."""
    last = last_char() if last is None else last
    return last.is_in(['"', "'", "”", "’"])


def _open_end(last: pl.Expr | None = None) -> pl.Expr:
    """True when the response does not end on a clean final character (trailing space
    ignored)."""
    last = last_char() if last is None else last
    return (last != "") & ~last.is_in(list(_CLEAN_END))
