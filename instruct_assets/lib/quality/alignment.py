"""Does the final response deliver what the prompt explicitly asked for?

Only explicit, checkable requests are judged: JSON output, code, a number of items, a
sentence or word budget, a target language. Requests are read from the first paragraph of
the last user turn (the instruction; in Alpaca data the input follows a blank line and must
not count as a request). Every check is lenient: it flags only clear violations.

Cost model: the request regexes run on every row (over short instruction paragraphs); the
expensive response measures (word counts, stopword counts, JSON parsing) run only on the
rows that made the matching request, and are joined back by row number.
"""

from __future__ import annotations

import duckdb
import polars as pl

from instruct_assets.lib.quality.config import QualityThresholds
from instruct_assets.lib.quality.text import LAST_USER, RESPONSE, collect, has_code

ROW = "_row"
REQUEST_TEXT = "_request_text"

#: ``misalignment_kind`` values, in the priority used when several requests are violated.
MISALIGNMENT_KINDS: dict[str, str] = {
    "json": "JSON was requested but the response holds no valid JSON",
    "code": "code was requested but the response contains none",
    "item_count": "N items were requested but a different number was given",
    "sentence_count": "one (or N) sentences were requested but clearly more were written",
    "word_count": "a word budget was requested and clearly missed",
    "language": "a target language was requested but the response is not in it",
}

_NUM_WORDS = {
    "one": 1,
    "a single": 1,
    "a": 1,
    "single": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "fifteen": 15,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "hundred": 100,
    "a hundred": 100,
}
_NUM = (
    r"(?:\d{1,4}|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|"
    r"twenty|thirty|forty|fifty|a hundred|hundred)"
)

# --- requests ------------------------------------------------------------------------------
JSON_REQUEST_RE = (
    r"(?i)\b(?:in|as|into|to)\s+(?:a\s+|an\s+|the\s+|valid\s+|proper\s+|strict\s+)*json\b"
    r"|\bjson\s+format\b|\b(?:be|is|produce|generate|emit)\s+valid\s+json\b"
    r"|\b(?:return|output|respond|reply|answer)\s+(?:with\s+|only\s+)*(?:a\s+|an\s+|the\s+|valid\s+)*json\b"
)
_LANG_NAMES = (
    r"(?:python|java|c\+\+|c#|c|javascript|js|typescript|ruby|php|kotlin|swift|scala|dart|go|"
    r"rust|perl|r|bash|shell|powershell|sql|html|css|matlab|haskell|lua|julia)"
)
_CODE_NOUN = (
    r"(?:function|functions|program|script|code|snippet|subroutine|"
    rf"{_LANG_NAMES}\s+(?:class|method|procedure|query)|"
    r"(?:sql|mysql|postgres\w*|sqlite|database|db)\s+query|query\s+in\s+sql|html\s+page|"
    r"web\s*page|css\s+rule|css\s+code|stylesheet|unit\s+tests?|api\s+endpoint)"
)
CODE_REQUEST_RE = (
    r"(?i)\b(?:write|create|implement|generate|develop|build|give me|provide|construct|"
    r"compose|produce|design|make|edit|modify|rewrite|refactor|fix|complete)\s+"
    r"(?:me\s+)?(?:a\s+|an\s+|the\s+|some\s+|this\s+)?(?:[a-z0-9+#.-]+\s+){0,3}?"
    rf"{_CODE_NOUN}\b(?:\s+(?:for|about|of|in|on)\s+(?:a\s+|an\s+|the\s+)?[a-z]+|\s+[a-z]+)?"
)
# Words in the matched request span that show the "code" noun is not code
# ("a script for a movie", "a story about a program").
_NOT_CODE_RE = (
    r"(?i)\b(?:about|describing|explaining|story|poem|essay|article|summary|description|"
    r"explanation|review|song|letter|email|tweet|post|blog|comment|documentation|report|"
    r"movie|film|play|sales|call|video|podcast|commercial|scene|theatre|theater|speech|"
    r"comedy|radio|youtube|tv|ad|advertisement|output|result|name|names|monologue|"
    r"opening|episode|show|skit|screenplay)\b"
)
#: Questions about code ("How do I create a web page?", "What is the output of ...") want
#: an explanation or an answer, not necessarily code.
#: A "script" is code only next to a programming word; otherwise it is a screenplay.
_PROGRAMMING_CONTEXT_RE = (
    r"(?i)\b(?:python|bash|shell|javascript|js|typescript|powershell|perl|ruby|php|lua|sql|"
    r"code|program|function|command|automat\w*|cron|batch|node|api|file|files|data|csv|json|"
    r"install\w*|deploy\w*|server|linux|unix|windows|excel|vba|google apps|r)\b"
)
_CODE_QUESTION_RE = (
    r"(?i)^\s*(?:how|what|why|when|which|where|who|explain|describe|is|are|can|does|"
    r"identify|classify|detect|determine|analy[sz]e|evaluate|compare|summari[sz]e)\b"
)
_ITEM_VERB = (
    r"(?:list|name|give|provide|suggest|generate|brainstorm|come up with|enumerate|identify|"
    r"outline|recommend|mention|share|offer|state|what are|write down|describe|explain|"
    r"compile)"
)
ITEM_REQUEST_RE = (
    rf"(?i)\b{_ITEM_VERB}\s+(?:me\s+|us\s+)?(?<atleast>at least\s+)?(?:exactly\s+|only\s+|"
    rf"the\s+|top\s+|some\s+)?(?<n>\d{{1,2}}|two|three|four|five|six|seven|eight|nine|ten|"
    rf"eleven|twelve|fifteen|twenty)\s+(?:[a-z-]+\s+){{0,3}}?(?<noun>[a-z]{{2,}}s)\b"
)
# Plural nouns that are units of length or numbers, not list items.
_NOT_ITEMS = [
    "words",
    "sentences",
    "characters",
    "paragraphs",
    "lines",
    "syllables",
    "letters",
    "minutes",
    "seconds",
    "hours",
    "days",
    "weeks",
    "months",
    "years",
    "times",
    "digits",
    "numbers",
    "integers",
    "decimals",
    "percents",
    "dollars",
    "pages",
    "bullets",
]
_COUNT_PHRASE_RE = (
    r"(?i)\b(?:\d{1,2}|two|three|four|five|six|seven|eight|nine|ten)\s+(?:[a-z-]+\s+)?[a-z]{2,}s\b"
)
SENTENCE_REQUEST_RE = (
    # "in one sentence", "as two sentences" (not "the words in a sentence": no bare "a" here)
    r"(?i)\b(?:in|as|with|using|into)\s+(?:just\s+|only\s+|exactly\s+)?"
    r"(?<n>one|a single|single|two|three|four|five|\d)\s+sentences?\b"
    # "write a sentence", "answer in a sentence", "summarize it in 2 sentences"
    r"|\b(?:write|give|provide|answer|respond|reply|explain|describe|summari[sz]e|define)\s+"
    r"(?:it\s+|this\s+|that\s+|me\s+)?(?:in\s+)?(?:just\s+|only\s+|exactly\s+)?"
    r"(?<n3>one|a single|a|single|two|three|four|five|\d)\s+sentences?\b"
    r"|\b(?<n2>one|single)[- ]sentence\b"
)
_EACH_RE = r"(?i)\b(?:each|every|per|for all)\b"
WORD_REQUEST_RE = (
    r"(?i)\b(?<max>under|below|less than|fewer than|no more than|not more than|not exceeding|"
    r"at most|up to|maximum of|max(?:imum)?|within|no longer than)\s+(?:of\s+)?"
    rf"(?<n>{_NUM})\s*(?:-\s*)?words?\b"
    r"|\b(?<approx>in|with|using|about|around|approximately|roughly|exactly)\s+"
    rf"(?<n2>{_NUM})\s*(?:-\s*)?words?\b(?<ormax>\s+or\s+(?:less|fewer))?"
    # "a summary of 100 words" (digits only: "think of two words" is not a budget)
    r"|\bof\s+(?<n4>\d{2,4})\s+words\b"
    r"|\b(?<n3>\d{1,4})[- ]word\b"
)
_LANGS: dict[str, str] = {
    "spanish": "es",
    "french": "fr",
    "german": "de",
    "italian": "it",
    "portuguese": "pt",
    "chinese": "zh",
    "mandarin": "zh",
    "japanese": "ja",
    "korean": "ko",
    "russian": "ru",
    "ukrainian": "uk",
    "arabic": "ar",
    "hindi": "hi",
    "greek": "el",
    "hebrew": "he",
    "thai": "th",
}
LANGUAGE_REQUEST_RE = (
    r"(?i)\b(?:translate|translation|write|respond|reply|answer|rewrite|say|compose|generate|"
    r"summari[sz]e|explain|describe|tell|convert)\b[^.?!\n]{0,60}?\b(?:in|into|to)\s+"
    rf"(?<lang>{'|'.join(_LANGS)})\b"
)
#: Letters of each non-Latin target language's script(s).
SCRIPT_RE: dict[str, str] = {
    "zh": r"\p{Han}",
    "ja": r"[\p{Hiragana}\p{Katakana}\p{Han}]",
    "ko": r"\p{Hangul}",
    "ru": r"\p{Cyrillic}",
    "uk": r"\p{Cyrillic}",
    "ar": r"\p{Arabic}",
    "hi": r"\p{Devanagari}",
    "el": r"\p{Greek}",
    "he": r"\p{Hebrew}",
    "th": r"\p{Thai}",
}
#: Frequent function words that are not also English words (so they discriminate).
STOPWORDS: dict[str, tuple[str, ...]] = {
    "en": (
        "the",
        "and",
        "of",
        "to",
        "is",
        "that",
        "it",
        "for",
        "with",
        "was",
        "are",
        "this",
        "you",
        "have",
        "be",
        "on",
        "in",
        "what",
        "which",
        "from",
        "they",
        "not",
    ),
    "es": (
        "el",
        "la",
        "los",
        "las",
        "que",
        "de",
        "del",
        "por",
        "para",
        "con",
        "una",
        "es",
        "y",
        "en",
        "muy",
        "pero",
        "como",
        "más",
        "está",
        "son",
        "su",
        "sus",
        "lo",
        "al",
    ),
    "fr": (
        "le",
        "la",
        "les",
        "des",
        "est",
        "et",
        "un",
        "une",
        "du",
        "que",
        "qui",
        "pour",
        "dans",
        "pas",
        "avec",
        "sur",
        "au",
        "ce",
        "il",
        "elle",
        "nous",
        "vous",
        "sont",
        "très",
        "mais",
        "je",
    ),
    "de": (
        "der",
        "die",
        "das",
        "und",
        "ist",
        "nicht",
        "ein",
        "eine",
        "zu",
        "den",
        "mit",
        "sich",
        "auf",
        "für",
        "von",
        "dem",
        "des",
        "auch",
        "es",
        "sind",
        "wir",
        "ich",
        "sie",
        "werden",
    ),
    "it": (
        "il",
        "lo",
        "la",
        "gli",
        "le",
        "di",
        "che",
        "è",
        "e",
        "per",
        "con",
        "una",
        "sono",
        "non",
        "del",
        "della",
        "nel",
        "anche",
        "ma",
        "più",
        "questo",
        "un",
    ),
    "pt": (
        "o",
        "os",
        "as",
        "de",
        "que",
        "e",
        "um",
        "uma",
        "para",
        "com",
        "não",
        "é",
        "do",
        "da",
        "dos",
        "das",
        "em",
        "no",
        "na",
        "mais",
        "mas",
        "por",
        "se",
        "também",
    ),
}


def _stopword_re(lang: str) -> str:
    return r"(?i)\b(?:" + "|".join(STOPWORDS[lang]) + r")\b"


# --- response measures ---------------------------------------------------------------------
#: Numbered list items at the top level ("1. ", "2) ", "(3) ").
NUMBERED_ITEM_RE = r"(?m)^[ ]{0,3}(?:\d{1,2}[.)]|\(\d{1,2}\))[ \t]+\S"
#: Bulleted list items at the top level (no indentation, so sub-bullets are not counted).
BULLET_ITEM_RE = r"(?m)^[-*•+][ \t]+\S"
NONEMPTY_LINE_RE = r"(?m)^[ \t]*\S"
#: Sentence ends: terminal punctuation followed by space, a closing quote/bracket or the end.
SENTENCE_END_RE = r"[.!?。！？]+(?:[\s\"'”’)\]]|$)"
WORD_RE = r"\S+"
#: Inline separators of a one-line enumeration ("apples, pears and plums").
INLINE_SEP_RE = r",|;|\band\b|\bor\b"


def request_text(col: str = LAST_USER) -> pl.Expr:
    """First paragraph of the last user turn (at most 1000 chars): where requests are read."""
    c = pl.col(col)
    # head/splitn count characters (``str.find`` returns a byte offset, so it cannot cut)
    return c.str.head(1000).str.splitn("\n\n", 2).struct.field("field_0").alias(REQUEST_TEXT)


def _num(expr: pl.Expr) -> pl.Expr:
    """Digits or number words to Int32."""
    low = expr.str.to_lowercase().str.strip_chars()
    return pl.coalesce(
        low.str.to_integer(strict=False),
        low.replace_strict(_NUM_WORDS, default=None, return_dtype=pl.Int64),
    ).cast(pl.Int32)


# Literal screens on the lower-cased request text (no (?i): plain literals let the engine
# skip ahead); each request regex then reads only the rows its screen passed, the others
# being masked to null (string kernels skip nulls).
_JSON_SCREEN = r"json"
_CODE_SCREEN = (
    r"function|program|script|code|snippet|subroutine|class|method|procedure|query|page|css|"
    r"stylesheet|test|endpoint"
)
_SCREEN_NUM = r"(?:[0-9]|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty)"
# A list verb followed closely by a count ("list 5", "give me three", "name the top 3").
_ITEM_SCREEN = (
    r"(?:list|name|give|provide|suggest|generate|brainstorm|come up with|enumerate|identify|"
    r"outline|recommend|mention|share|offer|state|what are|write down|describe|explain|"
    rf"compile) (?:me |us )?(?:at least |exactly |only |the |top |some )*{_SCREEN_NUM}"
)
_SENTENCE_SCREEN = r"(?:one|single|two|three|four|five|[0-9]| a)[ -]sentence"
_WORD_SCREEN = (
    r"(?:[0-9]|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|"
    r"twenty|thirty|forty|fifty|hundred) ?-? ?words?"
)
_LANGUAGE_SCREEN = "|".join(_LANGS)
#: Any of the screens: rows without a match cannot hold a request.
ANY_REQUEST_SCREEN = "|".join(
    f"(?:{p})"
    for p in (
        _JSON_SCREEN,
        _CODE_SCREEN,
        _ITEM_SCREEN,
        _SENTENCE_SCREEN,
        _WORD_SCREEN,
        _LANGUAGE_SCREEN,
    )
)


def _counts_items(req: pl.Expr) -> pl.Expr:
    """True when the request counts things other than words/sentences ("50 short stories")."""
    nouns = req.str.extract_all(_COUNT_PHRASE_RE).list.eval(
        pl.element().str.extract(r"([a-z]+)$", 1)
    )
    return nouns.list.eval(~pl.element().is_in(_NOT_ITEMS)).list.any()


def _screened(req: pl.Expr, *screens: str) -> pl.Expr:
    """``req`` where every screen matches, null elsewhere (string kernels skip nulls)."""
    mask = pl.lit(True)
    for screen in screens:
        mask = mask & req.str.contains(screen)
    return pl.when(mask).then(req)


def request_stages() -> list[list[pl.Expr]]:
    """Stages computing what the prompt asks for from ``_request_text``.

    Stage 1 lower-cases the request, stage 2 masks it per request kind with a literal
    screen, stage 3 runs each request pattern on its few unmasked rows, stage 4 derives the
    public columns. Intermediate ``_req*`` columns are materialised on purpose: polars does
    not reliably share a subexpression used by several expressions, and recomputing the
    masked texts costs more than storing them.
    """
    req = pl.col("_req")
    budget = pl.when(pl.col("_req_sent").is_not_null() | pl.col("_req_word").is_not_null()).then(
        req
    )
    lower = [pl.col(REQUEST_TEXT).str.to_lowercase().alias("_req")]
    masked = [
        _screened(req, _JSON_SCREEN).alias("_req_json"),
        _screened(req, _CODE_SCREEN).alias("_req_code"),
        _screened(req, _ITEM_SCREEN).alias("_req_item"),
        _screened(req, _SENTENCE_SCREEN).alias("_req_sent"),
        _screened(req, _WORD_SCREEN).alias("_req_word"),
        _screened(req, _LANGUAGE_SCREEN).alias("_req_lang"),
    ]
    extracted = [
        pl.col("_req_json").str.find(JSON_REQUEST_RE).is_not_null().alias("json_requested"),
        pl.col("_req_code").str.extract(CODE_REQUEST_RE, 0).alias("_code_span"),
        pl.col("_req_item").str.extract_groups(ITEM_REQUEST_RE).alias("_item"),
        pl.col("_req_sent").str.extract_groups(SENTENCE_REQUEST_RE).alias("_sent"),
        pl.col("_req_word").str.extract_groups(WORD_REQUEST_RE).alias("_word"),
        pl.col("_req_lang")
        .str.extract_groups(LANGUAGE_REQUEST_RE)
        .struct.field("lang")
        .alias("_lang"),
        # "for each", "per item", "50 stories under ten words": a sentence/word budget then
        # applies to parts, not to the whole response.
        (budget.str.find(_EACH_RE).is_not_null() | _counts_items(budget))
        .fill_null(False)
        .alias("_each"),
    ]
    span, item, sent, word = (pl.col(c) for c in ("_code_span", "_item", "_sent", "_word"))
    # ``str.find(...).is_not_null()`` rather than ``str.contains``: ``find`` skips the null
    # (masked) rows, ``contains`` scans them all; both agree on the rows that count.
    spanned = pl.when(span.is_not_null()).then(req)
    code_requested = (
        span.is_not_null()
        & span.str.find(_NOT_CODE_RE).is_null()
        & spanned.str.find(_CODE_QUESTION_RE).is_null()
        & (
            span.str.find(r"\bscripts?\b").is_null()
            | spanned.str.find(_PROGRAMMING_CONTEXT_RE).is_not_null()
        )
    ).fill_null(False)
    item_noun = item.struct.field("noun")
    # "2 goods and 2 services": several counts make the expected total ambiguous.
    several = pl.when(item_noun.is_not_null()).then(req).str.count_matches(_COUNT_PHRASE_RE) >= 2
    items_n = pl.when(~item_noun.is_in(_NOT_ITEMS) & ~several).then(_num(item.struct.field("n")))
    sent_n = pl.coalesce(sent.struct.field("n"), sent.struct.field("n2"), sent.struct.field("n3"))
    word_n = pl.coalesce(
        word.struct.field("n"),
        word.struct.field("n2"),
        word.struct.field("n3"),
        word.struct.field("n4"),
    )
    words_is_max = word.struct.field("max").is_not_null() | word.struct.field("ormax").is_not_null()
    each = pl.col("_each")
    final = [
        code_requested.alias("code_requested"),
        items_n.alias("requested_items"),
        item.struct.field("atleast").is_not_null().alias("_items_at_least"),
        pl.when(~each).then(_num(sent_n)).alias("requested_sentences"),
        pl.when(~each).then(_num(word_n)).alias("requested_words"),
        words_is_max.fill_null(False).alias("_words_is_max"),
        pl.col("_lang")
        .replace_strict(_LANGS, default=None, return_dtype=pl.String)
        .alias("requested_language"),
    ]
    return [lower, masked, extracted, final]


def json_candidates(col: str = RESPONSE) -> list[pl.Expr]:
    """Texts that may hold the requested JSON: the fenced block (or whole response), and the
    span from the first '{'/'[' to the last '}'/']' (for "Here is the JSON: {...}").

    Pass a column masked to the rows that asked for JSON: the patterns read whole responses.
    """
    c = pl.col(col).str.strip_chars()
    fenced = c.str.extract(r"(?s)```[a-zA-Z]*\s*\n?(.*?)```", 1)
    primary = pl.coalesce(fenced, c).str.strip_chars()
    span = c.str.extract(r"(?s)([\[{].*[\]}])", 1)
    return [primary.alias("_json_a"), span.alias("_json_b")]


def json_valid(frame: pl.DataFrame, columns: list[str]) -> pl.Series:
    """Vectorised JSON validity (DuckDB ``json_valid``): True when any column parses.

    Why DuckDB: polars' ``str.json_decode`` fails the whole column on one bad row; DuckDB
    checks each value and returns a boolean per row.
    """
    if frame.height == 0:
        return pl.Series("json_valid", [], dtype=pl.Boolean)
    con = duckdb.connect()
    try:
        con.register("cand", frame.select(columns).with_row_index("_i"))
        ors = " OR ".join(f"coalesce(json_valid({c}), false)" for c in columns)
        out = con.sql(f"SELECT _i, ({ors}) AS v FROM cand ORDER BY _i").pl()
    finally:
        con.close()
    return out["v"].alias("json_valid")


def _count(col: str, pattern: str) -> pl.Expr:
    return pl.col(col).str.count_matches(pattern).fill_null(0).cast(pl.Int32)


def response_item_count(col: str = RESPONSE) -> pl.Expr:
    """Items in the response: numbered items, else bullets, else non-empty lines, else the
    inline enumeration of a one-line answer (separators + 1)."""
    numbered = _count(col, NUMBERED_ITEM_RE)
    bullets = _count(col, BULLET_ITEM_RE)
    lines = _count(col, NONEMPTY_LINE_RE)
    inline = _count(col, INLINE_SEP_RE) + 1
    return (
        pl.when(numbered >= 2)
        .then(numbered)
        .when(bullets >= 2)
        .then(bullets)
        .when(lines >= 2)
        .then(lines)
        .otherwise(inline)
        .cast(pl.Int32)
    )


def sentence_count(col: str = RESPONSE) -> pl.Expr:
    """Sentence ends, plus one for a final fragment without terminal punctuation."""
    c = pl.col(col).str.strip_chars()
    ends = c.str.count_matches(SENTENCE_END_RE).fill_null(0)
    open_tail = (c.str.len_chars() > 0) & ~c.str.contains(r"[.!?。！？][\"'”’)\]]*$")
    return (ends + open_tail.cast(pl.UInt32)).cast(pl.Int32)


def _language_measures(cfg: QualityThresholds) -> list[pl.Expr]:
    """``target_language_share`` and ``_lang_evidence`` for rows with a requested language.

    Every count reads a response masked to the rows of one target language, so each
    pattern scans only the responses it is about.
    """
    lang = pl.col("requested_language")
    resp = pl.when(lang.is_not_null()).then(pl.col(RESPONSE))
    letters = resp.str.count_matches(r"\p{L}").cast(pl.Float64)
    en = resp.str.count_matches(_stopword_re("en")).cast(pl.Float64)
    shares = []
    for code, pattern in SCRIPT_RE.items():
        mine = pl.when(lang == code).then(resp)
        shares.append(mine.str.count_matches(pattern).cast(pl.Float64) / letters)
    for code in ("es", "fr", "de", "it", "pt"):
        tgt = pl.when(lang == code).then(resp).str.count_matches(_stopword_re(code))
        shares.append(tgt.cast(pl.Float64) / (tgt.cast(pl.Float64) + en))
    scripts = lang.is_in(list(SCRIPT_RE))
    evidence = (
        pl.when(scripts)
        .then(letters >= cfg.language_min_letters)
        .otherwise(en >= cfg.language_min_english_stopwords)
    )
    return [
        pl.coalesce(shares).fill_nan(None).alias("target_language_share"),
        evidence.alias("_lang_evidence"),
    ]


def alignment_frame(frame: pl.DataFrame, cfg: QualityThresholds) -> pl.DataFrame:
    """Per-row alignment measures and ``output_misalignment``/``misalignment_kind``.

    ``frame`` needs ``_row`` (row number), the ``last_user`` and ``response`` text columns;
    ``_has_fence``/``_code_lines`` (see ``score_examples``) are reused when present.
    Returns ``_row`` plus: json_requested, json_valid, code_requested, has_code,
    requested_items, response_items, requested_sentences, response_sentences,
    requested_words, response_words, requested_language, target_language_share,
    misalignment_kind, output_misalignment (measures are null where nothing was requested).
    """
    facts = {"_has_fence", "_code_lines"} <= set(frame.columns)
    extra = ["_has_fence", "_code_lines"] if facts else []
    base = frame.select(ROW, LAST_USER, RESPONSE, *extra).with_columns(
        pl.col(RESPONSE).fill_null(""), request_text()
    )
    # One union screen picks the ~20% of rows that may hold any request; the request stages
    # then run on those alone (4x cheaper than masking every stage over all rows).
    maybe = pl.col(REQUEST_TEXT).str.to_lowercase().str.contains(ANY_REQUEST_SCREEN)
    req = base.filter(maybe.fill_null(False))
    for stage in request_stages():
        req = collect(req.lazy().with_columns(stage))
    asked = req.filter(
        pl.col("json_requested")
        | pl.col("code_requested")
        | pl.col("requested_items").is_not_null()
        | pl.col("requested_sentences").is_not_null()
        | pl.col("requested_words").is_not_null()
        | pl.col("requested_language").is_not_null()
    )
    # Expensive measures, only on rows that asked for something, and within those each on
    # a response masked to the rows that made the matching request.
    resp = pl.col(RESPONSE)
    # has_code(response): from the fence/code-line facts when the caller computed them.
    code_facts = (
        pl.col("_has_fence") | (pl.col("_code_lines") > 0) if facts else has_code("_resp_code")
    )
    for_items = pl.when(pl.col("requested_items").is_not_null()).then(resp)
    measured = (
        asked.lazy()
        .with_columns(
            pl.when(pl.col("code_requested")).then(resp).alias("_resp_code"),
            for_items.alias("_resp_items"),
            pl.when(pl.col("requested_sentences").is_not_null()).then(resp).alias("_resp_sent"),
            pl.when(pl.col("requested_words").is_not_null()).then(resp).alias("_resp_words"),
            pl.when(pl.col("json_requested")).then(resp).alias("_resp_json"),
        )
        .with_columns(
            pl.when(pl.col("code_requested")).then(code_facts).alias("has_code"),
            response_item_count("_resp_items").alias("response_items"),
            (_count("_resp_items", NUMBERED_ITEM_RE) >= 2).alias("_numbered"),
            sentence_count("_resp_sent").alias("response_sentences"),
            pl.when(pl.col("_resp_words").is_not_null())
            .then(_count("_resp_words", WORD_RE))
            .alias("response_words"),
            *_language_measures(cfg),
            *json_candidates("_resp_json"),
        )
    )
    measured = collect(measured)
    json_rows = measured.filter(pl.col("json_requested"))
    valid = json_valid(json_rows, ["_json_a", "_json_b"])
    measured = measured.join(
        json_rows.select(ROW).with_columns(valid), on=ROW, how="left", maintain_order="left"
    )
    measured = measured.with_columns(_kind(cfg).alias("misalignment_kind"))
    keep = [
        "json_requested",
        "json_valid",
        "code_requested",
        "has_code",
        "requested_items",
        "response_items",
        "requested_sentences",
        "response_sentences",
        "requested_words",
        "response_words",
        "requested_language",
        "target_language_share",
        "misalignment_kind",
    ]
    found = req.select(ROW, "json_requested", "code_requested").join(
        measured.select(ROW, *[k for k in keep if k not in ("json_requested", "code_requested")]),
        on=ROW,
        how="left",
    )
    out = base.select(ROW).join(found, on=ROW, how="left", maintain_order="left")
    return out.select(ROW, *keep).with_columns(
        pl.col("json_requested").fill_null(False),
        pl.col("code_requested").fill_null(False),
        pl.col("misalignment_kind").is_not_null().alias("output_misalignment"),
    )


def _kind(cfg: QualityThresholds) -> pl.Expr:
    """The first violated request, in ``MISALIGNMENT_KINDS`` order; null when none."""
    code = pl.col("code_requested")
    items, given = pl.col("requested_items"), pl.col("response_items")
    at_least = pl.col("_items_at_least")
    item_bad = (
        pl.when(at_least)
        .then(given < items)
        .when(pl.col("_numbered"))
        .then(given != items)
        .otherwise(given < items)
    )
    sent_bad = pl.col("response_sentences") > pl.max_horizontal(
        pl.col("requested_sentences") + (cfg.one_sentence_max_sentences - 1),
        pl.col("requested_sentences"),
    )
    words, n_words = pl.col("response_words"), pl.col("requested_words")
    over = words > n_words * (1 + cfg.word_limit_over_ratio) + cfg.word_limit_slack_words
    under = (~pl.col("_words_is_max")) & (words < n_words * cfg.word_limit_under_ratio)
    lang_bad = pl.col("_lang_evidence") & (
        pl.col("target_language_share").fill_nan(0.0)
        < pl.when(pl.col("requested_language").is_in(list(SCRIPT_RE)))
        .then(cfg.min_target_script_share)
        .otherwise(cfg.min_target_stopword_share)
    )
    # Code requests own their output: "convert this dict to JSON in Python" wants code, a
    # list of N functions is not a list of N prose items, "a function that translates to
    # Spanish" is not Spanish. Empty responses are flagged elsewhere, not here.
    blank = pl.col(RESPONSE).str.strip_chars().str.len_chars() == 0
    return (
        pl.when(blank)
        .then(pl.lit(None, dtype=pl.String))
        .when(pl.col("json_requested") & ~code & ~pl.col("json_valid").fill_null(False))
        .then(pl.lit("json"))
        .when(code & ~pl.col("has_code"))
        .then(pl.lit("code"))
        .when(~code & item_bad.fill_null(False))
        .then(pl.lit("item_count"))
        .when(~code & (sent_bad.fill_null(False)))
        .then(pl.lit("sentence_count"))
        .when(~code & ((over | under).fill_null(False)))
        .then(pl.lit("word_count"))
        .when(~code & (lang_bad.fill_null(False)))
        .then(pl.lit("language"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )


__all__ = [
    "MISALIGNMENT_KINDS",
    "alignment_frame",
    "json_valid",
    "request_stages",
    "request_text",
]
