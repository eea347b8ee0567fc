"""Benchmark decontamination by word n-gram overlap (GPT-3 / NeMo Curator style).

Why: a training example that contains an evaluation item verbatim inflates that benchmark's
score. Shared word 13-grams are the standard, cheap, explainable test: 13 consecutive words
in common almost never happens by chance, and a paraphrase shares none.

Text normalisation (both sides, :func:`normalize_text_expr`): lowercase, every run of
characters that are not letters or digits becomes one space (so punctuation is stripped and
whitespace collapsed), trimmed; words are the space-separated tokens.

N-gram hashes are defined here, not borrowed from a library: each word gets an id = its
1-based rank in the index's sorted vocabulary, and a gram of ``g`` words hashes to
``sum(id_k * B**(g-1-k)) mod 2**64`` with ``B`` the 64-bit FNV prime. That depends only on
the benchmark text, so it is the same on every machine, process and library version.

Cost: benchmarks are small, examples are not. Examples are first screened with one
Aho-Corasick pass (polars ``str.contains_any``) for *anchors*: word ``m``-grams of the
benchmark, ``m = ceil((n+1)/2)``, taken every ``n - m + 1`` words, so every item n-gram contains
one whole anchor. Only the rows that contain an anchor (usually a tiny share) are split into
words and hashed for the exact count.

Normalising every example only to look for anchors cost most of the stage, so a cheaper
*raw-text screen* runs first (:func:`anchor_screen`) and only the rows it passes are
normalised and checked for anchors exactly. The screen is a superset of the exact rule:
it never drops a row whose normalised text contains an anchor (see :class:`AnchorScreen`
for why, and ``tests/lib/test_decontaminate.py`` for the proof on tricky cases).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from instruct_assets.lib.parallel import concat_slices

#: 64-bit FNV prime, the base of the polynomial n-gram hash.
HASH_BASE = np.uint64(1099511628211)

#: A run of characters that are neither letters nor digits, with any spaces before it, or a
#: run of 2+ spaces (single spaces are left alone: rewriting each one costs a lot).
_NON_WORD_RUN = r" *[^\p{L}\p{N} ][^\p{L}\p{N}]*| {2,}"

_ROLE = pl.element().struct.field("role")
_CONTENT = pl.element().struct.field("content")

CONTAMINATION_SCHEMA = pl.Schema(
    {
        "source": pl.String,
        "example_id": pl.String,
        "benchmark": pl.String,
        "item_id": pl.String,
        "overlap_ngrams": pl.Int64,
        "overlap_ratio": pl.Float64,
        "contaminated": pl.Boolean,
    }
)


@dataclass(frozen=True)
class DecontamConfig:
    """N-gram size and the contamination rule.

    An (example, item) pair is reported when they share at least one n-gram, and is
    ``contaminated`` when they share one and any of these holds:

    * the item is short: at most ``short_item_ngrams`` n-grams (for n=13: up to 22 words),
      so one shared n-gram is most of it;
    * ``overlap_ratio`` (shared / item n-grams) >= ``min_overlap_ratio``: e.g. a copied
      question is about a third of a BBH question+answer item;
    * ``overlap_ngrams`` >= ``min_overlap_ngrams``: for n=13, 10 shared n-grams are at least
      22 words in common, which happens when a long item's question is copied without its
      (long, chain-of-thought) answer.

    Items with fewer than ``n`` words but at least ``min_item_words`` are matched as one
    whole-item gram (a copy of the whole item contaminates); shorter items are not checkable
    (too likely by chance) and get ``n_grams = 0`` in the index.
    """

    n: int = 13
    min_item_words: int = 8
    short_item_ngrams: int = 10
    min_overlap_ratio: float = 0.2
    min_overlap_ngrams: int = 10
    #: Turns of an example whose text is checked (system prompts are shared boilerplate).
    roles: tuple[str, ...] = ("user", "assistant")

    def __post_init__(self) -> None:
        if self.n < 2:
            raise ValueError("n must be >= 2")
        if not 1 <= self.min_item_words <= self.n:
            raise ValueError("min_item_words must be in [1, n]")


@dataclass(frozen=True)
class BenchmarkIndex:
    """Hashed n-grams of benchmark items (build with :func:`build_benchmark_index`).

    ``grams``: benchmark, item_id, gram_len, gram_hash (one row per distinct gram of an item);
    ``items``: benchmark, item_id, n_words, n_grams; ``vocab``: word, word_id;
    ``anchors``: the screening strings (" w1 ... wm ").
    """

    n: int
    min_item_words: int
    grams: pl.DataFrame
    items: pl.DataFrame
    vocab: pl.DataFrame
    anchors: list[str]


def normalize_text_expr(text: pl.Expr) -> pl.Expr:
    """Lowercase, non-alphanumeric runs -> one space, trimmed (see module docstring)."""
    return text.str.to_lowercase().str.replace_all(_NON_WORD_RUN, " ").str.strip_chars(" ")


#: Characters whose lowercase (polars ``str.to_lowercase``) is not one character of the same
#: kind: ``İ`` -> ``i`` + combining dot (two characters, the dot is not a letter), the Kelvin
#: sign -> ASCII ``k``, and two letters whose lowercase is a letter while they are not (in
#: the regex engine's Unicode tables). Rows holding one skip the raw-text screen (they go to
#: the exact check). A test recomputes this set over every code point.
CASE_SPECIAL_CHARS: tuple[str, ...] = ("\u0130", "\u212a", "\ua7d2", "\ua7d4")

#: A raw character that cannot be part of an ASCII word (ASCII-only: cheap for the DFA).
_RAW_SEP = "[^a-zA-Z0-9]"


def _raw_word(word: str) -> str:
    """Regex matching every raw spelling of a normalised ``word``: ASCII letters in either
    case, digits as is, each run of non-ASCII characters as any run of non-ASCII ones."""
    out: list[str] = []
    for ch in word:
        if not ch.isascii():
            if not out or out[-1] != "[^\\x00-\\x7F]+":
                out.append("[^\\x00-\\x7F]+")
        elif ch.isalpha():
            out.append(f"[{ch}{ch.upper()}]")
        else:
            out.append(ch)  # a digit: normalised words hold letters and digits only
    return "".join(out)


@dataclass(frozen=True)
class AnchorScreen:
    """Regexes over *raw* message contents that a row must pass to be checked exactly.

    A row passes when one of its messages matches ``within`` (a whole anchor inside one
    message) or holds a :data:`CASE_SPECIAL_CHARS` character, or when one message matches
    ``ends`` and one matches ``starts`` (an anchor running across two turns: the text is
    the turns joined, so the first turn ends with one of the anchor's words but its last
    and a later turn starts with one of its words but its first).

    Why it is a superset of "the normalised text contains the anchor": without a special
    character, lowercasing maps each raw character to one character, and an ASCII letter or
    digit only comes from the same ASCII letter (either case) or digit; so each anchor word
    is a raw run matching :func:`_raw_word`, the non-empty non-word runs between the words
    come from raw characters that are not ASCII letters or digits (``[^a-zA-Z0-9]+``), and
    the same holds at both ends of the anchor (or the text starts/ends there). Every
    message of a row is screened, whatever its role: more text can only pass more rows.
    """

    within: str
    ends: str
    starts: str

    def row_passes(self, messages: pl.Expr) -> pl.Expr:
        content = pl.element().struct.field("content")

        def any_message(pred: pl.Expr) -> pl.Expr:
            return messages.list.eval(pred.fill_null(False)).list.any()

        return any_message(
            content.str.contains(self.within) | content.str.contains_any(CASE_SPECIAL_CHARS)
        ) | (
            any_message(content.str.contains(self.ends))
            & any_message(content.str.contains(self.starts))
        )


#: Above this many anchors the screen's regexes grow past the regex engine's size limit
#: (and a pass costs more than normalising), so rows are normalised without a screen.
MAX_SCREEN_ANCHORS = 256


def anchor_screen(anchors: list[str]) -> AnchorScreen | None:
    """The raw-text screen of an index's ``anchors`` (see :class:`AnchorScreen`), or None
    when there are more than :data:`MAX_SCREEN_ANCHORS` (every row is then normalised)."""
    if len(anchors) > MAX_SCREEN_ANCHORS:
        return None
    words = [a.split() for a in anchors]
    sep = _RAW_SEP
    whole = "|".join(f"{sep}+".join(_raw_word(w) for w in ws) for ws in words)

    def alternation(chosen: set[str]) -> str:
        return "|".join(_raw_word(w) for w in sorted(chosen))

    ends = alternation({w for ws in words for w in ws[:-1]})
    starts = alternation({w for ws in words for w in ws[1:]})
    never = "[^\\s\\S]"  # a class matching nothing (one-word anchors span no turns)
    return AnchorScreen(
        within=f"(?:^|{sep})(?:{whole})(?:{sep}|$)",
        # a message-end anchored pattern with single words: the regex engine searches
        # it from the end (multi-word variants here were orders of magnitude slower)
        ends=f"(?:^|{sep})(?:{ends or never}){sep}*$",
        starts=f"^{sep}*(?:{starts or never})(?:{sep}|$)",
    )


def _window_hashes(
    ids: np.ndarray, starts: np.ndarray, lengths: np.ndarray, g: int
) -> tuple[np.ndarray, np.ndarray]:
    """(row index, hash) of every window of ``g`` consecutive ids inside each row.

    ``ids`` holds the rows' word ids back to back; windows containing id 0 (a word outside
    the vocabulary) are dropped, since no benchmark gram can contain one.
    """
    n_win = np.clip(lengths - g + 1, 0, None)
    total = int(n_win.sum())
    if total == 0:
        return np.empty(0, np.int64), np.empty(0, np.uint64)
    row = np.repeat(np.arange(lengths.size, dtype=np.int64), n_win)
    first_win = np.cumsum(n_win) - n_win
    pos = starts[row] + (np.arange(total, dtype=np.int64) - first_win[row])
    h = np.zeros(total, dtype=np.uint64)
    zeros = np.zeros(total, dtype=np.int64)
    for k in range(g):
        word = ids[pos + k]
        h = h * HASH_BASE + word  # wraps mod 2**64
        zeros += word == 0
    keep = zeros == 0
    return row[keep], h[keep]


def _word_ids(words: pl.DataFrame, vocab: pl.DataFrame) -> np.ndarray:
    """Vocabulary ids (0 = unknown) of a frame's ``word`` column, in row order."""
    return (
        words.join(vocab, on="word", how="left", maintain_order="left")["word_id"]
        .fill_null(0)
        .to_numpy()
        .astype(np.uint64)
    )


def _exploded_words(frame: pl.DataFrame, text_col: str) -> tuple[pl.DataFrame, np.ndarray]:
    """One row per word (``_row``, ``word``) in text order, plus each row's word count."""
    words = frame.select(
        pl.col(text_col).str.split(" ").list.eval(pl.element().filter(pl.element() != ""))
    ).with_row_index("_row")
    lengths = words[text_col].list.len().to_numpy().astype(np.int64)
    exploded = words.explode(text_col).drop_nulls(text_col).rename({text_col: "word"})
    return exploded, lengths


def build_benchmark_index(
    benchmarks: pl.DataFrame, cfg: DecontamConfig | None = None
) -> BenchmarkIndex:
    """Index benchmark items: columns ``benchmark``, ``item_id`` (cast to str), ``text``
    (question and answer text together)."""
    cfg = cfg or DecontamConfig()
    n, m = cfg.n, (cfg.n + 2) // 2
    stride = n - m + 1
    items = (
        benchmarks.select(
            pl.col("benchmark").cast(pl.String),
            pl.col("item_id").cast(pl.String),
            normalize_text_expr(pl.col("text").cast(pl.String).fill_null("")).alias("norm"),
        )
        .unique(subset=["benchmark", "item_id"], keep="first", maintain_order=True)
        .sort("benchmark", "item_id")
    )
    exploded, lengths = _exploded_words(items.select("norm"), "norm")
    vocab = (
        exploded.select("word")
        .unique()
        .sort("word")
        .with_row_index("word_id", offset=1)
        .with_columns(pl.col("word_id").cast(pl.UInt64))
    )
    ids = _word_ids(exploded.select("word"), vocab)
    starts = np.cumsum(lengths) - lengths
    # whole-item grams for short items, n-grams for the rest
    gram_len = np.where(lengths >= n, n, np.where(lengths >= cfg.min_item_words, lengths, 0))
    parts = []
    for g in sorted({int(x) for x in gram_len if x > 0}):
        sel = np.flatnonzero(gram_len == g)
        row, h = _window_hashes(ids, starts[sel], lengths[sel], g)
        parts.append(
            pl.DataFrame({"_row": sel[row], "gram_len": np.full(row.size, g), "gram_hash": h})
        )
    keys = items.select("benchmark", "item_id").with_row_index("_row")
    grams_schema = {"_row": pl.UInt32, "gram_len": pl.Int64, "gram_hash": pl.UInt64}
    grams = (
        pl.concat([p.cast(grams_schema) for p in parts])
        if parts
        else pl.DataFrame(schema=grams_schema)
    )
    grams = (
        grams.unique()
        .join(keys, on="_row")
        .select("benchmark", "item_id", "gram_len", "gram_hash")
        .sort("benchmark", "item_id", "gram_len", "gram_hash")
    )
    item_table = (
        keys.with_columns(
            n_words=pl.Series(lengths, dtype=pl.Int64),
        )
        .join(
            grams.group_by("benchmark", "item_id").agg(n_grams=pl.len().cast(pl.Int64)),
            on=["benchmark", "item_id"],
            how="left",
        )
        .with_columns(pl.col("n_grams").fill_null(0))
        .select("benchmark", "item_id", "n_words", "n_grams")
        .sort("benchmark", "item_id")
    )
    # anchors: m-grams every `stride` words (long items), the whole text (short items)
    words = items.select(
        w=pl.col("norm").str.split(" "), n_words=pl.Series(lengths, dtype=pl.Int64)
    )
    long_anchors = (
        words.filter(pl.col("n_words") >= n)
        .with_columns(q=pl.int_ranges(0, pl.col("n_words") - m + 1, stride))
        .explode("q")
        .select(pl.col("w").list.slice(pl.col("q"), m).list.join(" "))
    )
    short_anchors = words.filter(
        pl.col("n_words") < n, pl.col("n_words") >= cfg.min_item_words
    ).select(pl.col("w").list.join(" "))
    anchors = sorted(
        {" " + a + " " for a in pl.concat([long_anchors, short_anchors])["w"].to_list()}
    )
    return BenchmarkIndex(
        n=n,
        min_item_words=cfg.min_item_words,
        grams=grams,
        items=item_table,
        vocab=vocab,
        anchors=anchors,
    )


def find_contamination(
    examples: pl.DataFrame, index: BenchmarkIndex, cfg: DecontamConfig | None = None
) -> pl.DataFrame:
    """(example, benchmark item) pairs sharing at least one n-gram, with the verdict.

    ``examples``: the normalized frame (``source``, ``example_id``, ``messages``). Output
    columns: :data:`CONTAMINATION_SCHEMA`, sorted by (source, example_id, benchmark,
    item_id). Pairs below the threshold are kept (``contaminated = false``) so near misses
    can be reviewed.
    """
    cfg = cfg or DecontamConfig()
    if cfg.n != index.n or cfg.min_item_words != index.min_item_words:
        raise ValueError("index was built with another n / min_item_words than cfg")
    if not index.anchors or examples.height == 0:
        return pl.DataFrame(schema=CONTAMINATION_SCHEMA)

    text = pl.col("messages").list.eval(_CONTENT.filter(_ROLE.is_in(cfg.roles))).list.join(" ")
    screen = anchor_screen(index.anchors)

    def exact(part: pl.DataFrame) -> pl.DataFrame:
        """Rows of ``part`` whose normalised text holds an anchor, screened raw first."""
        rows = part.lazy()
        if screen is not None:
            rows = rows.filter(screen.row_passes(pl.col("messages")))
        return (
            rows
            .select(
                "source",
                "example_id",
                norm=pl.lit(" ") + normalize_text_expr(text) + pl.lit(" "),
            )
            .filter(pl.col("norm").str.contains_any(index.anchors))
            .collect()
        )

    # row-local: screened slice by slice on every core
    candidates = concat_slices(examples.select("source", "example_id", "messages"), exact).sort(
        "source", "example_id"
    )
    if candidates.height == 0:
        return pl.DataFrame(schema=CONTAMINATION_SCHEMA)

    exploded, lengths = _exploded_words(candidates.select("norm"), "norm")
    ids = _word_ids(exploded.select("word"), index.vocab)
    starts = np.cumsum(lengths) - lengths
    parts = []
    for g in index.grams["gram_len"].unique().sort().to_list():
        row, h = _window_hashes(ids, starts, lengths, int(g))
        parts.append(pl.DataFrame({"_row": row, "gram_len": np.full(row.size, g), "gram_hash": h}))
    windows = pl.concat(parts).unique()
    pairs = (
        windows.join(index.grams, on=["gram_len", "gram_hash"])
        .group_by("_row", "benchmark", "item_id")
        .agg(overlap_ngrams=pl.len().cast(pl.Int64))
        .join(index.items, on=["benchmark", "item_id"])
        .join(
            candidates.select("source", "example_id")
            .with_row_index("_row")
            .with_columns(pl.col("_row").cast(pl.Int64)),
            on="_row",
        )
    )
    ratio = pl.col("overlap_ngrams") / pl.col("n_grams")
    return (
        pairs.with_columns(overlap_ratio=ratio.round(6))
        .with_columns(
            contaminated=(pl.col("overlap_ngrams") >= 1)
            & (
                (pl.col("n_grams") <= cfg.short_item_ngrams)
                | (ratio >= cfg.min_overlap_ratio)
                | (pl.col("overlap_ngrams") >= cfg.min_overlap_ngrams)
            )
        )
        .select(CONTAMINATION_SCHEMA.names())
        .cast(CONTAMINATION_SCHEMA)
        .sort("source", "example_id", "benchmark", "item_id")
    )


def hit_table(contamination: pl.DataFrame, index: BenchmarkIndex | None = None) -> pl.DataFrame:
    """Per benchmark: items hit and examples hit (contaminated pairs only), plus the number
    of pairs that overlapped without reaching the threshold. With ``index``, benchmarks
    without any hit are listed too, with ``items_total``."""
    hits = contamination.group_by("benchmark").agg(
        items_hit=pl.col("item_id").filter(pl.col("contaminated")).n_unique().cast(pl.Int64),
        examples_hit=pl.struct("source", "example_id")
        .filter(pl.col("contaminated"))
        .n_unique()
        .cast(pl.Int64),
        near_miss_pairs=(~pl.col("contaminated")).sum().cast(pl.Int64),
    )
    if index is not None:
        totals = index.items.group_by("benchmark").agg(items_total=pl.len().cast(pl.Int64))
        hits = totals.join(hits, on="benchmark", how="left").with_columns(
            pl.col("items_hit", "examples_hit", "near_miss_pairs").fill_null(0)
        )
    return hits.sort("benchmark")
