"""Exact and near-duplicate detection over normalized conversations, vectorised and deterministic.

Why this shape: duplicates inflate some behaviours in training and leak between train and eval
splits, so every example gets an exact key, a near-duplicate estimate and a cluster id. The work
must scale to millions of rows on a small machine, so nothing here calls Python per row: text is
lowercased, tokenised, hashed and MinHashed with numpy over the raw UTF-8 bytes of the message
contents, in document-aligned chunks (~2 MB of text, joined by polars into one buffer) that keep
every array in cache, with per-thread work buffers reused from chunk to chunk (fresh large numpy
temporaries cost page faults); two threads hash chunks in parallel (numpy releases the GIL),
which never changes a result. Only the exact key and the LSH band hashes are kept for every
row; the full MinHash signatures are hashed again for the few rows in candidate pairs instead
of being stored (112 x 4 bytes per row).

Normalisation (shared by the exact key and the MinHash text):
    text is lowercased (ASCII, plus every BMP character whose lowercase has the same UTF-8
    length, from Python's Unicode tables; the rare others such as U+0130 stay as they are);
    a *token* is a maximal run of word bytes: ASCII letters, digits and ``_``, and every
    non-ASCII character except those in the punctuation / symbol / space blocks of
    :data:`NON_WORD_RANGES`. Everything else (ASCII punctuation, whitespace, typographic quotes
    and dashes, CJK punctuation, emoji) separates tokens and is otherwise ignored. So case,
    whitespace and punctuation never matter ("don't" is the two tokens "don", "t"). This is
    close to ``\\w+`` but defined here, so it does not move with a regex engine's tables. Like
    ``\\w+``, unspaced scripts (CJK) yield long tokens, so near-duplicate recall there is weak.

Exact key (``exact_key``, 32 hex chars = 128 bits): a hash of the whole normalised conversation:
    every turn in order (system, user, assistant, tool), each turn's role and token sequence,
    plus the ``tools`` JSON as a pseudo-turn when ``key_includes_tools`` (the tool list is part
    of what the model sees). A null, empty or token-less ``tools`` hashes like none.

MinHash text: the tokens of the turns whose role is in ``text_roles`` (user + assistant turns by
    default), in conversation order, as if joined with a space: shingles may span two turns.
    System prompts and tool results are left out on purpose: shared boilerplate system prompts
    would otherwise make unrelated examples look alike.

Hashing (stable across library versions because it is defined here, not by polars ``hash`` or
    DuckDB ``hash``, neither promised stable): a token's hash mixes its bytes, read as 8-byte
    little-endian words, through the murmur3 ``fmix64`` finaliser; a shingle (``shingle_words``
    consecutive tokens) is a polynomial over its token hashes mod 2**64, then ``fmix64``.

MinHash: one-permutation hashing (Li, Owen & Zhang 2012) with ``num_bands * rows_per_band`` bins
    (14 x 8 = 112, as datatrove uses): each shingle hash picks a bin from its high 32 bits and
    offers its low 32 bits; a bin keeps the minimum. Empty bins (common below a few hundred
    shingles) are filled by rotation densification (Shrivastava & Li 2014). One hash per shingle
    instead of 112 is what makes 1M rows take seconds; the estimated Jaccard similarity is the
    share of equal bins (on random edits of alpaca_en_demo answers: bias < 0.015, sd 0.04-0.09).
    Band b holds bins b, b+14, b+28, ... (strided) so that densified runs of one donor value
    never fill a whole band; with consecutive bands, tiny texts sharing one shingle collided.

Candidates and verification: examples with identical signatures are collapsed first (estimated
    Jaccard 1.0). Signatures sharing any band land in one LSH bucket; inside a bucket, ordered
    by signature hash (content, never row order), each member is paired with the next
    ``bucket_window`` members and with the bucket's first member, so a bucket of 100k copies of
    a template costs O(n * window) pairs instead of O(n**2). A pair is a near duplicate when its
    estimated Jaccard is ``>= jaccard_threshold``. Clusters are connected components over exact
    AND near links (vectorised min-label hooking with pointer jumping). Equal keys (signature
    hashes, exact keys, band hashes) are found by sorting only the rows that a counting
    prefilter on the hash bits cannot rule out, never all rows.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from instruct_assets.lib.graph import connected_components

__all__ = [
    "DEDUP_SCHEMA",
    "NON_WORD_RANGES",
    "DedupConfig",
    "cluster_hashes",
    "dedup_hashes",
    "duplicates_frame",
    "find_clusters",
    "find_duplicates",
    "pick_representatives",
    "signatures_of",
]


@dataclass(frozen=True)
class DedupConfig:
    """Parameters of :func:`find_duplicates`.

    shingle_words: words per shingle (5, as datatrove). A text with fewer tokens is one shingle.
    num_bands, rows_per_band: LSH banding; ``num_bands * rows_per_band`` MinHash bins (112).
        With 14 x 8 a pair at Jaccard 0.8 becomes a candidate with p ~= 0.92, at 0.5 ~= 0.05.
    jaccard_threshold: a candidate pair is a near duplicate when its estimated Jaccard
        (share of equal MinHash bins) is at least this.
    text_roles: roles whose turns make the MinHash text (user + assistant turns, joined in
        conversation order). System prompts and tool results are excluded.
    key_includes_tools: hash the ``tools`` JSON into ``exact_key`` (same dialogue offered
        different tool schemas is then not an *exact* duplicate; it is still a near duplicate,
        since the MinHash text is the same).
    max_shingles_per_doc: keep only the first N shingles of each text (None = all). Work is
        linear in shingles, so this only bounds pathological documents; off by default because
        a cap hides edits after the cap.
    bucket_window: in an LSH bucket (members sorted by signature hash), each member is paired
        with this many following members plus the bucket's first member. Bounds the cost of
        huge buckets; members of a true cluster still connect transitively.
    chunk_bytes: text bytes tokenised per batch; a memory/speed knob, never changes results.
    workers: threads hashing batches in parallel; never changes results.
    """

    shingle_words: int = 5
    num_bands: int = 14
    rows_per_band: int = 8
    jaccard_threshold: float = 0.8
    text_roles: tuple[str, ...] = ("user", "assistant")
    key_includes_tools: bool = True
    max_shingles_per_doc: int | None = None
    bucket_window: int = 32
    chunk_bytes: int = 1 << 21
    workers: int = min(2, os.cpu_count() or 1)

    def __post_init__(self) -> None:
        if self.shingle_words < 1:
            raise ValueError("shingle_words must be >= 1")
        if self.num_bands < 1 or self.rows_per_band < 1:
            raise ValueError("num_bands and rows_per_band must be >= 1")
        if not 0.0 < self.jaccard_threshold <= 1.0:
            raise ValueError("jaccard_threshold must be in (0, 1]")
        if self.max_shingles_per_doc is not None and self.max_shingles_per_doc < 1:
            raise ValueError("max_shingles_per_doc must be >= 1 or None")
        if self.bucket_window < 1 or self.chunk_bytes < 1024 or self.workers < 1:
            raise ValueError("bucket_window, workers must be >= 1 and chunk_bytes >= 1024")
        bad = set(self.text_roles) - set(_ROLE_CODES)
        if bad:
            raise ValueError(f"unknown text_roles {sorted(bad)}")

    @property
    def num_hashes(self) -> int:
        """MinHash bins: ``num_bands * rows_per_band``."""
        return self.num_bands * self.rows_per_band


#: Columns returned by :func:`find_duplicates`, in order.
DEDUP_SCHEMA = pl.Schema(
    {
        "source": pl.String,
        "example_id": pl.String,
        "exact_key": pl.String,
        "is_exact_duplicate": pl.Boolean,
        "near_dup_jaccard": pl.Float64,
        "is_near_duplicate": pl.Boolean,
        "dup_cluster_id": pl.String,
        "dup_cluster_size": pl.Int64,
    }
)

#: Non-ASCII code points that separate tokens (half-open ranges): Latin-1 punctuation and
#: symbols (incl. NBSP), x and ÷, General Punctuation through Misc Symbols and Arrows
#: (quotes, dashes, ellipsis, typographic spaces, currency, arrows, maths, box drawing,
#: dingbats), Supplemental Punctuation, CJK Symbols and Punctuation, variation selectors,
#: CJK compatibility / small forms, fullwidth ASCII punctuation, Specials (incl. U+FFFD),
#: emoji and pictographs, tag characters.
NON_WORD_RANGES: tuple[tuple[int, int], ...] = (
    (0x80, 0xC0),
    (0xD7, 0xD8),
    (0xF7, 0xF8),
    (0x2000, 0x2C00),
    (0x2E00, 0x2E80),
    (0x3000, 0x3040),
    (0xFE00, 0xFE20),
    (0xFE30, 0xFE70),
    (0xFF00, 0xFF10),
    (0xFF1A, 0xFF21),
    (0xFF3B, 0xFF41),
    (0xFF5B, 0xFF66),
    (0xFFF0, 0x10000),
    (0x1F000, 0x1FB00),
    (0xE0000, 0xE0080),
)

_ROLE_CODES: dict[str, int] = {"system": 1, "user": 2, "assistant": 3, "tool": 4}
_TOOLS_CODE = 5
_TOOLS_INDEX = 1 << 40  # message index of the tools pseudo-message
_OTHER_CODE = 6  # unknown or null role
_EMPTY = np.uint32(0xFFFFFFFF)

_U64 = np.uint64
_M1 = _U64(0xFF51AFD7ED558CCD)
_M2 = _U64(0xC4CEB9FE1A85EC53)
_S33 = _U64(33)
_K_TOKEN = _U64(0x9E3779B97F4A7C15)
_K_CHUNK = _U64(0xD6E8FEB86659FD93)
_K_LEN = _U64(0xCBF29CE484222325)
_K_POS = _U64(0xA0761D6478BD642F)
_K_ROLE = _U64(0xE7037ED1A0B428DB)
_K_MSGI = _U64(0x8EBC6AF09C88C6E3)
_K_NTOK = _U64(0x589965CC75374CC3)
_K_LO = _U64(0x1D8E4E27C47D124F)
_K_SHINGLE = _U64(0x100000001B3)  # odd multiplier of the shingle polynomial
_K_BAND = _U64(0x94D049BB133111EB)
_K_NOSHINGLE = _U64(0x7FB5D329728EA185)
_MASK32 = _U64(0xFFFFFFFF)
_C_DENSE = np.uint32(0x9E3779B9)  # densification step (odd)
_LEN_MASK = np.array([0] + [(1 << (8 * k)) - 1 for k in range(1, 9)], dtype=np.uint64)
_CHUNKS_PER_TASK = 4  # hashing chunks per densify/band pass

_NON_WORD_BOUNDS = np.array([b for r in NON_WORD_RANGES for b in r], dtype=np.int64)


def _fmix64(x: np.ndarray, tmp: np.ndarray | None = None) -> np.ndarray:
    """murmur3's 64-bit finaliser, in place (uint64 wraps): a fixed, well-mixing bijection.

    ``tmp`` (same shape) is scratch space; passing one avoids three temporaries.
    """
    if tmp is None:
        tmp = np.empty_like(x)
    np.right_shift(x, _S33, out=tmp)
    x ^= tmp
    x *= _M1
    np.right_shift(x, _S33, out=tmp)
    x ^= tmp
    x *= _M2
    np.right_shift(x, _S33, out=tmp)
    x ^= tmp
    return x


def _segment_sums(x: np.ndarray, bounds: np.ndarray, cs: np.ndarray | None = None) -> np.ndarray:
    """Wrapping uint64 sum of ``x[bounds[i]:bounds[i+1]]`` for each i (empty segments -> 0).

    ``cs`` (``x.size + 1`` uint64) is optional scratch space for the running sum.
    """
    if cs is None:
        cs = np.empty(x.size + 1, dtype=np.uint64)
    cs[0] = 0
    np.cumsum(x, out=cs[1:])
    return cs[bounds[1:]] - cs[bounds[:-1]]


class _Scratch:
    """Work buffers of one thread, reused from chunk to chunk.

    Big numpy temporaries are fresh allocations whose pages the kernel must fault in and
    zero every time; reusing a few named buffers (``out=`` everywhere) avoids most of that.
    Buffers only grow. Contents are garbage until written.
    """

    def __init__(self) -> None:
        self._bufs: dict[str, np.ndarray] = {}
        self._ramp = np.zeros(0, dtype=np.uint64)

    def __call__(self, name: str, size: int, dtype: type) -> np.ndarray:
        buf = self._bufs.get(name)
        if buf is None or buf.size < size:
            buf = np.empty(max(size + size // 4, 4096), dtype=dtype)
            self._bufs[name] = buf
        return buf[:size]

    def ramp(self, size: int) -> np.ndarray:
        """``arange(size) * _K_POS`` (uint64, wrapping), computed once per size class."""
        if self._ramp.size < size:
            self._ramp = np.arange(max(size + size // 4, 4096), dtype=np.uint64) * _K_POS
        return self._ramp[:size]


@functools.cache
def _lower_bmp() -> np.ndarray:
    """Lowercase code point of each BMP code point whose lowercase has the same UTF-8 length.

    Built once from Python's Unicode tables; the few characters whose lowercase changes
    byte length (e.g. U+0130) are left as they are, which keeps lowercasing in place.
    """
    table = np.arange(0x10000, dtype=np.int64)
    for cp in range(0x80, 0x10000):
        if 0xD800 <= cp < 0xE000:
            continue
        ch = chr(cp)
        low = ch.lower()
        if low != ch and len(low) == 1 and len(low.encode()) == len(ch.encode()):
            table[cp] = ord(low)
    return table


@dataclass
class _Stream:
    """Messages of a batch of docs, flattened: the unit the chunked hashing walks over.

    ``doc_msg`` (n+1) bounds each doc's messages; ``msg_code`` is the role code of each
    message and ``msg_index`` its position in the conversation (the tools pseudo-message has
    a fixed index of its own); ``offsets`` (m+1) are the byte offsets of the contents as if
    concatenated, used to size chunks; ``content`` holds the texts (String, nulls as
    empty), turned into one contiguous buffer per chunk only.
    """

    doc_msg: np.ndarray
    msg_code: np.ndarray
    msg_index: np.ndarray
    offsets: np.ndarray
    content: pl.Series

    def chunk_bytes(self, m0: int, m1: int, buf_of: _Scratch) -> tuple[np.ndarray, np.ndarray]:
        """Messages ``m0:m1`` as one UTF-8 buffer, each followed by a NUL (a non-word byte,
        so no token runs from one message into the next), in a scratch buffer with 16 zero
        bytes of padding; and the byte offset of each message's start (plus the end).

        One ``str.join`` per chunk is a single copy into a contiguous buffer.
        """
        joined = self.content.slice(m0, m1 - m0).str.join("\x00")
        arr = joined.to_arrow(compat_level=pl.CompatLevel.oldest())
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        _, off_buf, data_buf = arr.buffers()
        off = np.frombuffer(off_buf, dtype=np.int64)[arr.offset : arr.offset + 2]
        b0, n = int(off[0]), int(off[1] - off[0])
        buf = buf_of("bytes", n + 17, np.uint8)
        if n:
            buf[:n] = np.frombuffer(data_buf, dtype=np.uint8, count=n, offset=b0)
        buf[n:] = 0  # the last message's NUL, then padding
        starts = self.offsets[m0 : m1 + 1] - self.offsets[m0]
        starts += np.arange(m1 - m0 + 1)
        if m1 > m0 and starts[-1] != n + 1:
            raise AssertionError("joined message bytes do not match their byte sizes")
        return buf, starts


def _text(strings: pl.Series) -> pl.Series:
    """Strings with nulls read as empty (no byte copy: polars views)."""
    return strings.fill_null("")


def _message_stream(normalized: pl.DataFrame) -> _Stream:
    """Flatten ``messages`` (null or empty lists give docs with no messages)."""
    msgs = normalized["messages"]
    counts = msgs.list.len().fill_null(0).to_numpy().astype(np.int64)
    doc_msg = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=doc_msg[1:])
    flat = msgs.explode(empty_as_null=False, keep_nulls=False)
    codes = (
        flat.struct.field("role")
        .replace_strict(_ROLE_CODES, default=_OTHER_CODE, return_dtype=pl.Int8)
        .fill_null(_OTHER_CODE)
        .to_numpy()
    )
    content = _text(flat.struct.field("content"))
    msg_doc = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    index = (np.arange(doc_msg[-1], dtype=np.int64) - doc_msg[msg_doc]).astype(np.uint64)
    return _Stream(doc_msg, codes, index, _byte_offsets(content), content)


def _byte_offsets(content: pl.Series) -> np.ndarray:
    """Cumulative UTF-8 byte sizes (n+1) of a String series."""
    sizes = content.str.len_bytes().fill_null(0).to_numpy().astype(np.int64)
    offsets = np.zeros(sizes.size + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    return offsets


def _lowercase_word_mask(buf: np.ndarray, n: int, word: np.ndarray, sc: _Scratch) -> None:
    """Lowercase ``buf[:n]`` in place and write its word-byte mask into ``word`` (n bools).

    ``buf`` has at least 3 padding bytes. ASCII is handled by arithmetic on all bytes (much
    faster than a lookup table in numpy): ``x | 0x20`` folds case, so one range test finds
    the letters, and OR-ing 0x20 into exactly those lowercases them. Non-ASCII characters
    are decoded only where a lead byte occurs, lowercased through :func:`_lower_bmp` and
    tested against :data:`NON_WORD_RANGES`.
    """
    x = buf[:n]
    t = sc("mask_u8", n, np.uint8)
    b = sc("mask_b", n, np.bool_)
    np.bitwise_or(x, 0x20, out=t)
    t -= 97
    np.less(t, 26, out=word)  # ASCII letters, either case
    np.multiply(word.view(np.uint8), np.uint8(0x20), out=t)
    x |= t  # A-Z -> a-z
    np.subtract(x, 48, out=t)
    np.less(t, 10, out=b)
    word |= b
    np.equal(x, 95, out=b)
    word |= b
    np.greater_equal(x, 0x80, out=b)
    word |= b
    high = np.flatnonzero(b)
    if not high.size:
        return
    leads = high[x[high] >= 0xC0]
    if leads.size:
        b0 = buf[leads].astype(np.int64)
        b1 = (buf[leads + 1] & 0x3F).astype(np.int64)
        b2 = (buf[leads + 2] & 0x3F).astype(np.int64)
        b3 = (buf[leads + 3] & 0x3F).astype(np.int64)
        nbytes = np.where(b0 < 0xE0, 2, np.where(b0 < 0xF0, 3, 4))
        cp = np.where(
            nbytes == 2,
            ((b0 & 0x1F) << 6) | b1,
            np.where(
                nbytes == 3,
                ((b0 & 0x0F) << 12) | (b1 << 6) | b2,
                ((b0 & 0x07) << 18) | (b1 << 12) | (b2 << 6) | b3,
            ),
        )
        low = cp.copy()
        bmp = cp < 0x10000
        low[bmp] = _lower_bmp()[cp[bmp]]
        two = np.flatnonzero((low != cp) & (nbytes == 2))
        buf[leads[two]] = 0xC0 | (low[two] >> 6)
        buf[leads[two] + 1] = 0x80 | (low[two] & 0x3F)
        three = np.flatnonzero((low != cp) & (nbytes == 3))
        buf[leads[three]] = 0xE0 | (low[three] >> 12)
        buf[leads[three] + 1] = 0x80 | ((low[three] >> 6) & 0x3F)
        buf[leads[three] + 2] = 0x80 | (low[three] & 0x3F)
        nonword = (np.searchsorted(_NON_WORD_BOUNDS, cp, side="right") & 1) == 1
        for k in range(4):
            pos = leads[nonword & (nbytes > k)] + k
            word[pos[pos < n]] = False


@dataclass
class _Tokens:
    """Tokens of a chunk of messages: hashes (in text order) and per-message token bounds."""

    h: np.ndarray
    msg_tok0: np.ndarray  # (messages + 1) first token of each message, local


def _tokenize(st: _Stream, m0: int, m1: int, sc: _Scratch) -> _Tokens:
    """Token hashes of messages ``m0:m1`` and per-message token bounds.

    Tokens never cross message boundaries. A token of at most 8 bytes hashes as
    ``fmix64(bytes as a zero-padded little-endian word + K)``; a longer one as below.
    """
    buf, msg_off = st.chunk_bytes(m0, m1, sc)
    n = int(msg_off[-1])  # the last message's NUL is at n - 1
    word = sc("word", n + 2, np.bool_)  # padded with a non-word byte on both sides
    word[0] = word[n + 1] = False
    _lowercase_word_mask(buf, n, word[1 : n + 1], sc)
    # Runs of word bytes: transitions alternate start, end (positions shifted by the pad).
    # Every message ends with a NUL byte, so runs never cross messages.
    d = sc("edge", n + 1, np.bool_)
    np.not_equal(word[1:], word[:-1], out=d)
    edges = np.flatnonzero(d)
    starts = edges[0::2].copy()
    lens = edges[1::2] - starts
    win = np.ndarray((n + 9,), dtype="<u8", buffer=buf, strides=(1,))  # 8-byte windows
    h = win[starts]
    longer = np.flatnonzero(lens > 8)
    w0 = h[longer]  # first words of the long tokens, before masking
    h &= _LEN_MASK[np.minimum(lens, 8)]
    h += _K_TOKEN
    _fmix64(h, sc("tok_tmp", h.size, np.uint64))
    if w0.size:
        # Longer tokens: sum of fmix64(word_k + k * K) over all their 8-byte words k
        # (the last one zero-padded), plus the length, through fmix64 again. Words 0 and 1
        # are done for all of them at once; the rare tokens over 16 bytes add the rest.
        ls, ll = starts[longer], lens[longer]
        x = _fmix64(w0)
        w1 = win[ls + 8]
        w1 &= _LEN_MASK[np.minimum(ll - 8, 8)]
        w1 += _K_CHUNK
        x += _fmix64(w1)
        very = np.flatnonzero(ll > 16)
        if very.size:
            x[very] += _word_sums(win, ls[very], ll[very], 2)
        x += ll.astype(np.uint64) * _K_LEN
        h[longer] = _fmix64(x)
    msg_tok0 = np.searchsorted(starts, msg_off)
    return _Tokens(h, msg_tok0)


def _word_sums(win: np.ndarray, s: np.ndarray, lens: np.ndarray, k0: int) -> np.ndarray:
    """Per token, the sum over its 8-byte words ``k >= k0`` of ``fmix64(word_k + k * K)``
    (the last word zero-padded): one flat, loop-free pass, even for megabyte-long tokens."""
    nwords = (lens + 7) // 8 - k0
    first_word = np.zeros(s.size, dtype=np.int64)
    np.cumsum(nwords[:-1], out=first_word[1:])
    owner = np.repeat(np.arange(s.size), nwords)
    k = np.arange(owner.size, dtype=np.int64) - first_word[owner] + k0
    rest = np.minimum(lens[owner] - 8 * k, 8)
    w = win[s[owner] + 8 * k] & _LEN_MASK[rest]
    w += k.astype(np.uint64) * _K_CHUNK
    _fmix64(w)
    return np.add.reduceat(w, first_word)


def _key_sums(
    st: _Stream, d0: int, d1: int, tok: _Tokens, sc: _Scratch
) -> tuple[np.ndarray, np.ndarray]:
    """Per-doc (hi, lo) sums of the exact-key terms of docs ``d0:d1``.

    A token's term mixes its hash, its position in its message and the message's index; a
    message's term mixes its role, index and token count. Sums are order-free, positions
    make them order-sensitive; two differently seeded halves give 128 bits.
    """
    m0, m1 = int(st.doc_msg[d0]), int(st.doc_msg[d1])
    idx = st.msg_index[m0:m1]
    h, msg_tok0 = tok.h, tok.msg_tok0
    nt = h.size
    ntok = np.diff(msg_tok0)
    # idx * K_MSGI + (token - msg_tok0) * K_POS + h, with the per-message part repeated
    base = idx * _K_MSGI - msg_tok0[:-1].astype(np.uint64) * _K_POS
    t = sc("key_t", nt, np.uint64)
    tmp = sc("tok_tmp", nt, np.uint64)
    t[:] = np.repeat(base, ntok)
    t += sc.ramp(nt)
    t += h
    _fmix64(t, tmp)
    m = st.msg_code[m0:m1].astype(np.uint64) * _K_ROLE + idx * _K_MSGI
    m += ntok.astype(np.uint64) * _K_NTOK
    _fmix64(m)
    doc_msg = st.doc_msg[d0 : d1 + 1] - m0
    doc_tok = msg_tok0[doc_msg]
    cs = sc("key_cs", nt + 1, np.uint64)
    hi = _segment_sums(t, doc_tok, cs) + _segment_sums(m, doc_msg)
    t ^= _K_LO
    m ^= _K_LO
    lo = _segment_sums(_fmix64(t, tmp), doc_tok, cs) + _segment_sums(_fmix64(m), doc_msg)
    return hi, lo


def _minhash(
    cfg: DedupConfig, t: np.ndarray, n_text: np.ndarray, flat: np.ndarray, row: int, col0: int,
    sc: _Scratch,
) -> None:
    """Undensified MinHash bins of docs ``col0:col0 + n_text.size`` from their doc-sorted text
    tokens ``t`` (``n_text`` per doc), into ``flat``: the flattened bins x docs signature
    array (``row`` docs per bin), whose bins of these docs start empty.

    A shingle is ``fmix64`` of the polynomial over ``shingle_words`` consecutive token
    hashes; a text shorter than that is one shingle (its tokens, zero-padded). Shingle
    hash ``s`` goes to bin ``((s >> 32) * bins) >> 32`` and offers ``s & 0xFFFFFFFF``.
    """
    sw, nh = cfg.shingle_words, cfg.num_hashes
    nd = n_text.size
    first = np.zeros(nd + 1, dtype=np.int64)
    np.cumsum(n_text, out=first[1:])
    nt = t.size
    if nt >= sw:
        span = nt - sw + 1
        s = sc("sh_s", span, np.uint64)
        key = sc("sh_key", span, np.uint64)
        s[:] = t[:span]
        for k in range(1, sw):
            s *= _K_SHINGLE
            s += t[k : k + span]
        _fmix64(s, key)
        np.right_shift(s, _U64(32), out=key)
        key *= _U64(nh)
        key >>= _U64(32)
        key *= _U64(row)
        key += np.repeat(np.arange(col0, col0 + nd, dtype=np.uint64), n_text)[:span]
        s &= _MASK32
        val = sc("sh_val", span, np.uint32)
        np.copyto(val, s, casting="unsafe")
        # Windows that run past their doc's end (its last sw - 1 positions) offer nothing.
        # The same for positions past max_shingles_per_doc.
        for k in range(1, sw):
            pos = first[1:] - k
            pos = pos[(pos >= first[:-1]) & (pos < span)]
            val[pos] = _EMPTY
        if cfg.max_shingles_per_doc is not None:
            rel = np.arange(span) - np.repeat(first[:-1], n_text)[:span]
            val[rel >= cfg.max_shingles_per_doc] = _EMPTY
        np.minimum.at(flat, key.view(np.int64), val)
    short = np.flatnonzero((n_text > 0) & (n_text < sw))
    if short.size:
        s = np.zeros(short.size, dtype=np.uint64)
        for k in range(sw):
            s *= _K_SHINGLE
            ok = k < n_text[short]
            s[ok] += t[first[short[ok]] + k]
        _fmix64(s)
        key = ((s >> _U64(32)) * _U64(nh)) >> _U64(32)
        key = key.astype(np.int64) * row + (col0 + short)
        np.minimum.at(flat, key, (s & _MASK32).astype(np.uint32))


def _densify(sig: np.ndarray, has: np.ndarray, sc: _Scratch) -> None:
    """Fill the empty bins of a (bins x docs) signature block in place, for docs with text.

    Rotation densification (Shrivastava & Li 2014), borrowing from the left: an empty bin
    takes the nearest non-empty bin to its left (circularly) plus ``distance * C`` (mod
    2**32), so two texts agree on a filled bin only when they agree on the donor at the same
    distance. Walking the bins as rows keeps every operation a contiguous vector op; the
    choice "own value or carry" is a mask blend (``carry ^ ((carry ^ own) & full)``), which
    numpy runs several times faster than a masked copy.
    """
    nh, nd = sig.shape
    full_b = sc("dn_full", nh * nd, np.bool_).reshape(nh, nd)
    np.not_equal(sig, _EMPTY, out=full_b)
    full = sc("dn_mask", nh * nd, np.uint32).reshape(nh, nd)
    np.copyto(full, full_b)
    np.negative(full, out=full)  # 0xFFFFFFFF where the bin is filled
    carry = np.zeros(nd, dtype=np.uint32)
    tmp = np.empty(nd, dtype=np.uint32)
    for j in range(nh):  # docs without text get garbage here; nobody reads it
        carry += _C_DENSE
        np.bitwise_xor(carry, sig[j], out=tmp)
        tmp &= full[j]
        carry ^= tmp
        sig[j] = carry
    # Leading empty bins take the donor from the end of the row: a second lap, with the
    # same blend, over the docs that start with an empty bin, until none is left.
    pending = np.negative((has & ~full_b[0]).astype(np.uint32))
    for j in range(nh):
        pending &= ~full[j]
        if not pending.any():
            break
        carry += _C_DENSE
        np.bitwise_xor(carry, sig[j], out=tmp)
        tmp &= pending
        sig[j] ^= tmp


def _signatures(
    cfg: DedupConfig, st: _Stream, text_lut: np.ndarray, cuts: list[int], out: dict,
    scratch: dict,
) -> None:
    """Hash docs ``cuts[0]:cuts[-1]`` into the arrays of ``out`` that are present:
    ``hi``/``lo`` (exact-key sums), ``has`` (any MinHash text), ``bands`` (band hashes),
    ``sig`` (the densified MinHash signature). ``scratch`` maps each thread to its
    :class:`_Scratch`.

    Text is tokenised and shingled chunk by chunk (``cuts``: about ``chunk_bytes`` of text
    each, so the per-token arrays stay in cache); densification and band hashing then run
    once over all these docs, on longer rows. Signatures are bins-major (``sig[bin, doc]``)
    so that per-bin work is contiguous. They live in scratch space: only the band hashes
    are kept for every doc, the signatures only where asked for.
    """
    sc = scratch.setdefault(threading.get_ident(), _Scratch())
    nh = cfg.num_hashes
    d0, d1 = cuts[0], cuts[-1]
    nd = d1 - d0
    flat = sc("sig", nh * nd, np.uint32)
    flat.fill(_EMPTY)
    has = np.empty(nd, dtype=bool)
    for c0, c1 in itertools.pairwise(cuts):
        m0, m1 = int(st.doc_msg[c0]), int(st.doc_msg[c1])
        tok = _tokenize(st, m0, m1, sc)
        if "hi" in out:
            hi, lo = _key_sums(st, c0, c1, tok, sc)
            out["hi"][c0:c1] += hi
            out["lo"][c0:c1] += lo
        doc_msg = st.doc_msg[c0 : c1 + 1] - m0
        sel = text_lut[st.msg_code[m0:m1]]
        if sel.all():
            t, n_text = tok.h, np.diff(tok.msg_tok0[doc_msg])
        else:
            ntok = np.diff(tok.msg_tok0)
            t = tok.h[np.repeat(sel, ntok)]
            text_cs = np.zeros(ntok.size + 1, dtype=np.int64)
            np.cumsum(ntok * sel, out=text_cs[1:])
            n_text = np.diff(text_cs[doc_msg])
        _minhash(cfg, t, n_text, flat, nd, c0 - d0, sc)
        has[c0 - d0 : c1 - d0] = n_text > 0
    sig = flat.reshape(nh, nd)
    _densify(sig, has, sc)
    out["has"][d0:d1] = has
    if "sig" in out:
        out["sig"][:, d0:d1] = sig
    if "bands" in out:
        # Band b holds bins b, b + num_bands, b + 2 * num_bands, ...: strided, not
        # consecutive, so a run of empty bins densified from one donor never fills a whole
        # band (which would make tiny texts sharing a single shingle collide).
        sig3 = sig.reshape(cfg.rows_per_band, cfg.num_bands, nd)
        bh = np.zeros((cfg.num_bands, nd), dtype=np.uint64)
        for r in range(cfg.rows_per_band):
            bh *= _K_SHINGLE
            bh += sig3[r]
        bh += (np.arange(1, cfg.num_bands + 1, dtype=np.uint64) * _K_BAND)[:, None]
        out["bands"][:, d0:d1] = _fmix64(bh, sc("band_tmp", bh.size, np.uint64).reshape(bh.shape))


def _hash_docs(cfg: DedupConfig, normalized: pl.DataFrame, out: dict) -> None:
    """Run :func:`_signatures` over all docs of ``normalized`` on ``cfg.workers`` threads,
    in tasks of ``_CHUNKS_PER_TASK`` chunks of about ``chunk_bytes`` of text.

    Tasks write disjoint slices, and numpy releases the GIL in its loops: threads give the
    second core work without changing any result.
    """
    text_lut = np.zeros(8, dtype=bool)
    text_lut[[_ROLE_CODES[r] for r in cfg.text_roles]] = True
    st = _message_stream(normalized)
    chunks = _doc_chunks(st.offsets[st.doc_msg], cfg.chunk_bytes)
    cuts = [c[0] for c in chunks] + [c[1] for c in chunks[-1:]]  # chunks are contiguous
    tasks = [cuts[i : i + _CHUNKS_PER_TASK + 1] for i in range(0, len(chunks), _CHUNKS_PER_TASK)]
    work = functools.partial(_signatures, cfg, st, text_lut, out=out, scratch={})
    with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
        list(pool.map(work, tasks))


def _doc_chunks(doc_bytes: np.ndarray, chunk_bytes: int, max_docs: int = 1 << 16) -> list:
    """Doc-aligned [d0, d1) ranges of about ``chunk_bytes`` text and at most ``max_docs`` docs."""
    n = doc_bytes.size - 1
    cuts = np.concatenate(
        [
            np.searchsorted(doc_bytes, np.arange(0, doc_bytes[-1], chunk_bytes), side="right") - 1,
            np.arange(0, n, max_docs),
            [n],
        ]
    )
    cuts = _sorted_unique(np.clip(cuts, 0, n))
    return [(a, b) for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True) if b > a]


def _sorted_unique(x: np.ndarray) -> np.ndarray:
    """Sorted distinct values (sort + diff: numpy's hash-based ``unique`` is slower here)."""
    x = np.sort(x)
    keep = np.ones(x.size, dtype=bool)
    keep[1:] = x[1:] != x[:-1]
    return x[keep]


def _maybe_repeated(keys: np.ndarray, low_bits: bool = False) -> np.ndarray:
    """Ascending indices of the ``keys`` (well-mixed uint64) that may occur more than once:
    every repeated key, plus the keys that merely share a slot of a counting table (4x
    larger than the input) on the top bits (or the low bits). A cheap superset to sort."""
    bits = int(min(26, max(10, math.ceil(math.log2(max(keys.size, 2))) + 2)))
    if low_bits:
        slot = (keys & _U64((1 << bits) - 1)).astype(np.intp)
    else:
        slot = (keys >> _U64(64 - bits)).astype(np.intp)
    return np.flatnonzero(np.bincount(slot, minlength=1 << bits)[slot] > 1)


def _first_of_equal(*keys: np.ndarray) -> np.ndarray:
    """For each row, the smallest row index with the same key tuple (``keys[0]`` is the
    well-mixed uint64 the prefilter runs on; the others break its ties)."""
    n = keys[0].size
    first = np.arange(n, dtype=np.int64)
    cand = _maybe_repeated(keys[0])
    if cand.size < 2:
        return first
    # A stable sort on the first key (``cand`` ascends, so ties stay in row order); the
    # other keys only re-sort the rows whose first key repeats.
    sub = cand[np.argsort(keys[0][cand], kind="stable")]
    k0 = keys[0][sub]
    same = k0[1:] == k0[:-1]
    if len(keys) > 1 and same.any():
        in_run = np.zeros(sub.size, dtype=bool)
        in_run[1:] |= same
        in_run[:-1] |= same
        at = np.flatnonzero(in_run)
        part = sub[at]
        sub[at] = part[np.lexsort(tuple(k[part] for k in reversed(keys)))]
    new = np.zeros(sub.size, dtype=bool)
    new[0] = True
    for k in keys:
        ks = k[sub]
        new[1:] |= ks[1:] != ks[:-1]
    first[sub] = sub[new][np.cumsum(new) - 1]
    return first


def _candidate_pairs(
    bands: np.ndarray, rows: np.ndarray, rank: np.ndarray, window: int
) -> tuple[np.ndarray, np.ndarray]:
    """Unique pairs (u, v) of ``rows`` (ascending) that share a band hash.

    ``rank`` (one distinct uint64 per row of ``rows``) orders the members of a bucket by
    content, never by row: each is paired with the next ``window`` members and with the
    bucket's first member, u before v. Per band, two counting prefilters (top bits, then
    low bits of the survivors) drop nearly all unique keys before the rest are sorted.
    """
    us: list[np.ndarray] = []
    vs: list[np.ndarray] = []
    for band in bands:
        keys = band[rows]
        cand = _maybe_repeated(keys)
        if cand.size < 2:
            continue
        cand = cand[_maybe_repeated(keys[cand], low_bits=True)]
        if cand.size < 2:
            continue
        ck = keys[cand]
        o = np.argsort(ck)
        ks = ck[o]
        eq = ks[1:] == ks[:-1]
        if not eq.any():
            continue
        in_run = np.zeros(ks.size, dtype=bool)
        in_run[1:] |= eq
        in_run[:-1] |= eq
        pos = np.flatnonzero(in_run)
        kr, members = ks[pos], cand[o[pos]]
        by_rank = np.lexsort((rank[members], kr))  # deterministic order inside each bucket
        kr, members = kr[by_rank], members[by_rank]
        new_run = np.ones(pos.size, dtype=bool)
        new_run[1:] = kr[1:] != kr[:-1]
        run_id = np.cumsum(new_run) - 1
        run_start = np.flatnonzero(new_run)[run_id]
        for d in range(1, min(window, pos.size - 1) + 1):
            same = run_id[d:] == run_id[:-d]
            if not same.any():
                break
            us.append(members[:-d][same])
            vs.append(members[d:][same])
        far = np.flatnonzero(np.arange(pos.size) - run_start > window)
        us.append(members[run_start[far]])
        vs.append(members[far])
    if not us:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    g = np.int64(rows.size)
    code = _sorted_unique(np.concatenate(us).astype(np.int64) * g + np.concatenate(vs))
    return rows[code // g], rows[code % g]


def _hex_word(y: np.ndarray) -> np.ndarray:
    """Lowercase hex digits of 32-bit values ``y`` (uint64), one per byte, least significant
    digit in the lowest byte: nibbles spread into bytes by shifts and masks, then mapped to
    ASCII with arithmetic (digits >= 10 gain 0x27 more), all on whole uint64 lanes."""
    z = y | (y << _U64(16))
    z &= _U64(0x0000FFFF0000FFFF)
    z |= z << _U64(8)
    z &= _U64(0x00FF00FF00FF00FF)
    z |= z << _U64(4)
    z &= _U64(0x0F0F0F0F0F0F0F0F)
    letter = z + _U64(0x0606060606060606)
    letter >>= _U64(4)
    letter &= _U64(0x0101010101010101)
    letter *= _U64(0x27)
    z += _U64(0x3030303030303030)
    z += letter
    return z


def _hex_keys(hi: np.ndarray, lo: np.ndarray) -> pl.Series:
    """32-char lowercase hex of (hi, lo), big-endian, so string order equals numeric order."""
    n = hi.size
    txt = np.empty((n, 4), dtype=">u8")  # big-endian words: most significant digit first
    for col, (x, shift) in enumerate(((hi, 32), (hi, 0), (lo, 32), (lo, 0))):
        txt[:, col] = _hex_word((x >> _U64(shift)) & _MASK32)
    offsets = np.arange(0, 32 * (n + 1), 32, dtype=np.int64)
    arr = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(txt))
    return pl.Series("exact_key", arr, dtype=pl.String)


def _tools_key_sums(normalized: pl.DataFrame, cfg: DedupConfig, hi: np.ndarray,
                    lo: np.ndarray) -> None:
    """Add the ``tools`` pseudo-message's exact-key terms to ``hi``/``lo``.

    Null and empty ``tools`` (most rows) add the constant term of a token-less message
    without being tokenised.
    """
    tools = _text(normalized["tools"].cast(pl.String))
    some = np.flatnonzero(tools.str.len_bytes().fill_null(0).to_numpy() > 0)
    c = np.array([_TOOLS_CODE], dtype=np.uint64) * _K_ROLE
    c += np.array([_TOOLS_INDEX], dtype=np.uint64) * _K_MSGI
    c_hi = _fmix64(c)[0]
    c_lo = _fmix64(c ^ _K_LO)[0]
    hi += c_hi
    lo += c_lo
    if not some.size:
        return
    hi[some] -= c_hi
    lo[some] -= c_lo
    content = tools.gather(some)
    k = some.size
    st = _Stream(  # one pseudo-message per doc
        np.arange(k + 1, dtype=np.int64),
        np.full(k, _TOOLS_CODE, dtype=np.int8),
        np.full(k, _TOOLS_INDEX, dtype=np.uint64),
        _byte_offsets(content),
        content,
    )
    sc = _Scratch()
    for d0, d1 in _doc_chunks(st.offsets, cfg.chunk_bytes):
        t_hi, t_lo = _key_sums(st, d0, d1, _tokenize(st, d0, d1, sc), sc)
        hi[some[d0:d1]] += t_hi
        lo[some[d0:d1]] += t_lo


def dedup_hashes(normalized: pl.DataFrame, cfg: DedupConfig) -> dict[str, np.ndarray]:
    """The per-row material clustering needs, for each row of ``normalized`` (row-local, so a
    chunked stage hashes chunk by chunk and concatenates): ``hi``/``lo`` (the finished
    128-bit exact key), ``has`` (any MinHash text) and ``bands`` (num_bands x rows)."""
    n = normalized.height
    out = {
        "hi": np.zeros(n, dtype=np.uint64),
        "lo": np.zeros(n, dtype=np.uint64),
        "has": np.empty(n, dtype=bool),
        "bands": np.empty((cfg.num_bands, n), dtype=np.uint64),
    }
    if n == 0:
        return out
    _hash_docs(cfg, normalized, out)
    hi, lo = out["hi"], out["lo"]
    if cfg.key_includes_tools and "tools" in normalized.columns:
        _tools_key_sums(normalized, cfg, hi, lo)
    _fmix64(hi)
    lo ^= _K_LO
    _fmix64(lo)
    return out


def signatures_of(normalized: pl.DataFrame, cfg: DedupConfig, rows: np.ndarray) -> np.ndarray:
    """Densified MinHash signatures (bins x len(rows), uint32) of ``normalized[rows]``."""
    sig_out = {"sig": np.empty((cfg.num_hashes, rows.size), dtype=np.uint32),
               "has": np.empty(rows.size, dtype=bool)}
    if rows.size:
        _hash_docs(cfg, normalized.select("messages")[rows], sig_out)
    return sig_out["sig"]


def cluster_hashes(
    hashes: dict[str, np.ndarray], cfg: DedupConfig,
    signatures: Callable[[np.ndarray], np.ndarray],
) -> dict[str, np.ndarray]:
    """Clusters over the :func:`dedup_hashes` of all rows (consumes ``hashes["bands"]``).

    ``signatures(rows)`` returns the MinHash signatures (bins x len(rows)) of the given
    ascending row indices: only rows in candidate pairs need them, so a chunked caller
    hashes those again from its chunks. Returns per row: ``hi``/``lo``, ``exact_dup``,
    ``jaccard`` (NaN = null), ``near``, ``smallest`` (row whose exact key names the
    cluster) and ``cluster_size``.
    """
    hi, lo, has, bands = hashes["hi"], hashes["lo"], hashes["has"], hashes.pop("bands")
    n = hi.size
    nh = cfg.num_hashes

    # Groups of identical MinHash signatures (rows without text tokens group by exact key),
    # each named by its first row. Only rows whose key may repeat are sorted.
    sig_hash = np.zeros(n, dtype=np.uint64)
    for b in range(cfg.num_bands):
        sig_hash *= _K_SHINGLE
        sig_hash += bands[b]
    _fmix64(sig_hash)
    gkey = np.where(has, sig_hash, _fmix64(hi ^ _K_NOSHINGLE))
    del sig_hash
    grp = _first_of_equal(gkey)
    arange = np.arange(n, dtype=np.int64)

    # LSH candidates among distinct signatures (one row per group with text), ordered in
    # their buckets by signature hash, verified by estimated Jaccard.
    rows = np.flatnonzero((grp == arange) & has)
    cu, cv = _candidate_pairs(bands, rows, gkey[rows], cfg.bucket_window)
    del bands, gkey
    # Signatures only of the rows in candidate pairs (a few percent): hashed again rather
    # than kept for every row (112 x 4 bytes per row).
    need = _sorted_unique(np.concatenate([cu, cv]))
    sig = signatures(need)
    cu, cv = np.searchsorted(need, cu), np.searchsorted(need, cv)
    eu, ev, ej = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0)]
    step = max(1, (1 << 22) // nh)
    for i in range(0, cu.size, step):
        u, v = cu[i : i + step], cv[i : i + step]
        est = (sig[:, u] == sig[:, v]).sum(axis=0) / nh
        keep = est >= cfg.jaccard_threshold - 1e-12
        eu.append(need[u[keep]])
        ev.append(need[v[keep]])
        ej.append(est[keep])
    del sig
    eu_a, ev_a, ej_a = np.concatenate(eu), np.concatenate(ev), np.concatenate(ej)

    lab = connected_components(n, eu_a, ev_a)
    best = np.full(n, np.nan)
    np.fmax.at(best, eu_a, ej_a)
    np.fmax.at(best, ev_a, ej_a)

    # Exact groups (nested inside signature groups: same key -> same text -> same signature).
    ex = _first_of_equal(hi, lo)
    exact_size = np.bincount(ex, minlength=n)[ex]
    group_size = np.bincount(grp, minlength=n)[grp]
    # distinct exact keys per signature group, counted only where a group has > 1 row
    keys_per_group = np.ones(n, dtype=np.int64)
    multi = np.flatnonzero(group_size > 1)
    if multi.size:
        pairs = _sorted_unique(grp[multi] * np.int64(n) + ex[multi])  # (group, key) pairs
        keys_per_group[multi] = np.bincount(pairs // n, minlength=n)[grp[multi]]

    comp = lab[grp]
    cluster_size = np.bincount(comp, minlength=n)[comp]
    # cluster id: the smallest exact key among the members (a singleton's own key)
    smallest = arange
    shared = np.flatnonzero(cluster_size > 1)
    if shared.size:
        by = shared[np.lexsort((lo[shared], hi[shared], comp[shared]))]
        head = np.ones(by.size, dtype=bool)
        head[1:] = comp[by[1:]] != comp[by[:-1]]
        smallest[by] = by[head][np.cumsum(head) - 1]
    jaccard = np.where(group_size > 1, 1.0, best[grp])
    jaccard[cluster_size == 1] = np.nan
    is_near = (keys_per_group > 1) | ~np.isnan(best[grp])
    return {"hi": hi, "lo": lo, "exact_dup": exact_size > 1, "jaccard": jaccard,
            "near": is_near, "smallest": smallest, "cluster_size": cluster_size.astype(np.int64)}


def duplicates_frame(keys: pl.DataFrame, clusters: dict[str, np.ndarray],
                     rows: np.ndarray | None = None) -> pl.DataFrame:
    """The :data:`DEDUP_SCHEMA` frame of ``rows`` (all by default) of :func:`cluster_hashes`'
    result; ``keys`` holds those rows' ``source``/``example_id``, in the same order."""
    c = clusters
    if rows is None:
        hi, lo, small = c["hi"], c["lo"], c["smallest"]
        exact, jac, near, size = c["exact_dup"], c["jaccard"], c["near"], c["cluster_size"]
    else:
        hi, lo, small = c["hi"][rows], c["lo"][rows], c["smallest"][rows]
        exact, jac, near = c["exact_dup"][rows], c["jaccard"][rows], c["near"][rows]
        size = c["cluster_size"][rows]
    hex_keys = _hex_keys(hi, lo)
    # the cluster id is the exact key of row ``smallest`` (gathered when all rows are here)
    cluster_ids = (hex_keys.gather(small) if rows is None
                   else _hex_keys(c["hi"][small], c["lo"][small]))
    return pl.DataFrame(
        {
            "source": keys["source"],
            "example_id": keys["example_id"],
            "exact_key": hex_keys,
            "is_exact_duplicate": exact,
            "near_dup_jaccard": pl.Series(jac).fill_nan(None),
            "is_near_duplicate": near,
            "dup_cluster_id": cluster_ids.alias("dup_cluster_id"),
            "dup_cluster_size": size,
        },
        schema=DEDUP_SCHEMA,
    )


def find_duplicates(normalized: pl.DataFrame, cfg: DedupConfig | None = None) -> pl.DataFrame:
    """Flag exact and near duplicates and cluster them, within and across sources.

    Input: normalized examples (needs ``source``, ``example_id``, ``messages``; ``tools`` is
    used when present and ``cfg.key_includes_tools``). Output: one row per input row, in input
    order, with the columns of :data:`DEDUP_SCHEMA`:

    - ``exact_key``: 128-bit hex hash of the normalised conversation (see module doc).
    - ``is_exact_duplicate``: another row shares ``exact_key``.
    - ``near_dup_jaccard``: best estimated Jaccard to another member of the row's cluster over
      the links found (1.0 for identical MinHash text); null when the cluster is the row alone.
    - ``is_near_duplicate``: linked at estimated Jaccard >= threshold to a row with a
      *different* exact key (exact copies alone are not near duplicates).
    - ``dup_cluster_id``: smallest ``exact_key`` among the cluster's members (content-derived,
      independent of row order); a singleton's own key. ``dup_cluster_size``: members.

    Everything depends on content only: shuffling the input permutes the output rows.
    Composed of :func:`dedup_hashes` (row-local), :func:`cluster_hashes` (global) and
    :func:`duplicates_frame`, which a chunked caller runs separately (:func:`find_clusters`:
    the first two in one piece).
    """
    cfg = cfg or DedupConfig()
    if normalized.height == 0:
        return pl.DataFrame(schema=DEDUP_SCHEMA)
    return duplicates_frame(normalized, find_clusters(normalized, cfg))


def find_clusters(normalized: pl.DataFrame, cfg: DedupConfig) -> dict[str, np.ndarray]:
    """:func:`cluster_hashes` of the rows of ``normalized``, hashed in one piece: the arrays
    behind :func:`find_duplicates`, for a caller that builds its rows in another order."""
    return cluster_hashes(dedup_hashes(normalized, cfg), cfg,
                          lambda rows: signatures_of(normalized, cfg, rows))


def pick_representatives(dups: pl.DataFrame, scores: pl.DataFrame | None = None) -> pl.DataFrame:
    """Add ``is_dup_representative``: exactly one True per ``dup_cluster_id``.

    The representative is the member with the highest ``quality_score`` (from ``scores``,
    joined on ``(source, example_id)``; null/NaN/missing scores rank last), then the smallest
    ``(source, example_id)``: a total order on content keys, so the choice never depends on
    row order. Rows keep their order; ``scores`` must have one row per key.

    Only rows whose cluster id (by 64-bit hash: a collision only adds rows) occurs more than
    once are joined and ranked; every other row is its cluster's representative.
    """
    shared = dups.select(pl.col("dup_cluster_id").hash(seed=0).is_duplicated()).to_series()
    rows = np.flatnonzero(shared.to_numpy())
    frame = dups[rows].select("dup_cluster_id", "source", "example_id").with_columns(
        __row=pl.Series(rows, dtype=pl.Int64))
    by = ["dup_cluster_id"]
    descending = [False]
    if scores is not None:
        sc = scores.select(
            "source", "example_id", pl.col("quality_score").cast(pl.Float64).fill_nan(None)
        )
        # validates that ``scores`` has one row per key, over all of ``scores``
        frame = frame.join(sc, on=["source", "example_id"], how="left", validate="m:1")
        by.append("quality_score")
        descending.append(True)
    by += ["source", "example_id"]
    descending += [False, False]
    ranked = frame.sort(by, descending=descending, nulls_last=True).select(
        "__row", pl.col("dup_cluster_id").is_first_distinct().alias("rep"))
    flag = np.ones(dups.height, dtype=bool)
    flag[ranked["__row"].to_numpy()] = ranked["rep"].to_numpy()
    return dups.with_columns(is_dup_representative=pl.Series(flag))
