"""Exact and near-duplicate detection over normalized conversations, vectorised and deterministic.

Why this shape: duplicates inflate some behaviours in training and leak between train and eval
splits, so every example gets an exact key, a near-duplicate estimate and a cluster id. The work
must scale to millions of rows on a small machine, so nothing here calls Python per row: text is
lowercased, tokenised, hashed and MinHashed with numpy over the raw UTF-8 bytes of the message
contents, in document-aligned chunks (~2 MB of text) that keep every array small; two threads
hash chunks in parallel (numpy releases the GIL), which never changes a result.

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
    AND near links (vectorised min-label hooking with pointer jumping).
"""

from __future__ import annotations

import functools
import math
import os
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
    "find_duplicates",
    "pick_representatives",
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
    chunk_bytes: text bytes hashed per batch; a memory/speed knob, never changes results.
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
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)

_NON_WORD_BOUNDS = np.array([b for r in NON_WORD_RANGES for b in r], dtype=np.int64)


def _fmix64(x: np.ndarray) -> np.ndarray:
    """murmur3's 64-bit finaliser, in place (uint64 wraps): a fixed, well-mixing bijection."""
    x ^= x >> _S33
    x *= _M1
    x ^= x >> _S33
    x *= _M2
    x ^= x >> _S33
    return x


def _segment_sums(x: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Wrapping uint64 sum of ``x[bounds[i]:bounds[i+1]]`` for each i (empty segments -> 0)."""
    cs = np.zeros(x.size + 1, dtype=np.uint64)
    np.cumsum(x, out=cs[1:])
    return cs[bounds[1:]] - cs[bounds[:-1]]


def _string_buffers(strings: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Int64 offsets and raw UTF-8 bytes of a string Series (nulls read as empty).

    Each string gets a trailing NUL (a non-word byte), so no token can run from one
    message into the next. Casting to binary is the cheapest way out of polars' string
    views into one contiguous Arrow buffer; lowercasing happens later, per chunk, in numpy.
    """
    arr = (
        (strings.fill_null("") + "\x00")
        .cast(pl.Binary)
        .rechunk()
        .to_arrow(compat_level=pl.CompatLevel.oldest())
    )
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.large_binary())
    _, off_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(off_buf, dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    return offsets, data


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
    a fixed index of its own); ``offsets``/``data`` are the raw UTF-8 contents.
    """

    doc_msg: np.ndarray
    msg_code: np.ndarray
    msg_index: np.ndarray
    offsets: np.ndarray
    data: np.ndarray


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
    offsets, data = _string_buffers(flat.struct.field("content"))
    msg_doc = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    index = (np.arange(doc_msg[-1], dtype=np.int64) - doc_msg[msg_doc]).astype(np.uint64)
    return _Stream(doc_msg, codes, index, offsets, data)


def _tools_stream(normalized: pl.DataFrame) -> _Stream:
    """One pseudo-message per doc holding the ``tools`` JSON (null -> empty)."""
    n = normalized.height
    offsets, data = _string_buffers(normalized["tools"].cast(pl.String))
    return _Stream(
        np.arange(n + 1, dtype=np.int64),
        np.full(n, _TOOLS_CODE, dtype=np.int8),
        np.full(n, _TOOLS_INDEX, dtype=np.uint64),
        offsets,
        data,
    )


def _lowercase_word_mask(buf: np.ndarray, n: int) -> np.ndarray:
    """Lowercase ``buf[:n]`` in place and return its word-byte mask (``buf`` has 8 pad bytes).

    ASCII is handled by arithmetic on all bytes (faster than a lookup table in numpy);
    non-ASCII characters are decoded only where a lead byte occurs, lowercased through
    :func:`_lower_bmp` and tested against :data:`NON_WORD_RANGES`.
    """
    x = buf[:n]
    tmp = x - np.uint8(65)
    np.add(x, np.uint8(32), out=x, where=tmp < 26)  # A-Z -> a-z
    np.subtract(x, np.uint8(48), out=tmp)
    word = tmp < 10
    np.subtract(x, np.uint8(97), out=tmp)
    word |= tmp < 26
    word |= x == 95
    word |= x >= 0x80
    leads = np.flatnonzero(x >= 0xC0)
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
    return word


def _tokenize(st: _Stream, m0: int, m1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token hashes of messages ``m0:m1``, each token's message (local) and per-message bounds.

    Tokens never cross message boundaries. A token of at most 8 bytes hashes as
    ``fmix64(bytes as a zero-padded little-endian word + K)``; a longer one as below.
    """
    b0, b1 = int(st.offsets[m0]), int(st.offsets[m1])
    n = b1 - b0
    buf = np.zeros(n + 8, dtype=np.uint8)
    buf[:n] = st.data[b0:b1]
    msg_off = st.offsets[m0 : m1 + 1] - b0
    word = np.zeros(n + 2, dtype=bool)  # padded with a non-word byte on both sides
    word[1:-1] = _lowercase_word_mask(buf, n)
    # Runs of word bytes: transitions alternate start, end (positions shifted by the pad).
    # Every message ends with a NUL byte, so runs never cross messages.
    edges = np.flatnonzero(word[1:] != word[:-1])
    starts = edges[0::2]
    lens = edges[1::2] - starts
    win = np.ndarray((n + 1,), dtype="<u8", buffer=buf, strides=(1,))  # 8-byte windows
    h = win[starts]
    h &= _LEN_MASK[np.minimum(lens, 8)]
    h += _K_TOKEN
    _fmix64(h)
    longer = np.flatnonzero(lens > 8)
    if longer.size:
        # Longer tokens: sum of fmix64(word + index * K) over all their 8-byte words, plus
        # the length, through fmix64 again. A flat, loop-free computation, so even a
        # megabyte-long token (base64 blobs) costs one vector pass.
        nwords = (lens[longer] + 7) // 8
        first_word = np.zeros(longer.size, dtype=np.int64)
        np.cumsum(nwords[:-1], out=first_word[1:])
        owner = np.repeat(np.arange(longer.size), nwords)
        k = np.arange(owner.size, dtype=np.int64) - first_word[owner]
        rest = np.minimum(lens[longer][owner] - 8 * k, 8)
        w = win[starts[longer][owner] + 8 * k] & _LEN_MASK[rest]
        w += k.astype(np.uint64) * _K_CHUNK
        _fmix64(w)
        x = np.add.reduceat(w, first_word)
        x += lens[longer].astype(np.uint64) * _K_LEN
        h[longer] = _fmix64(x)
    msg_tok0 = np.searchsorted(starts, msg_off)
    tok_msg = np.repeat(np.arange(m1 - m0, dtype=np.int64), np.diff(msg_tok0))
    return h, tok_msg, msg_tok0


def _key_sums(
    st: _Stream, d0: int, d1: int, h: np.ndarray, tok_msg: np.ndarray, msg_tok0: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-doc (hi, lo) sums of the exact-key terms of docs ``d0:d1``.

    A token's term mixes its hash, its position in its message and the message's index; a
    message's term mixes its role, index and token count. Sums are order-free, positions
    make them order-sensitive; two differently seeded halves give 128 bits.
    """
    m0, m1 = int(st.doc_msg[d0]), int(st.doc_msg[d1])
    idx = st.msg_index[m0:m1]
    pos = (np.arange(h.size, dtype=np.int64) - msg_tok0[tok_msg]).astype(np.uint64)
    t = idx[tok_msg] * _K_MSGI
    t += pos * _K_POS
    t += h
    _fmix64(t)
    ntok = np.diff(msg_tok0).astype(np.uint64)
    m = st.msg_code[m0:m1].astype(np.uint64) * _K_ROLE + idx * _K_MSGI + ntok * _K_NTOK
    _fmix64(m)
    doc_msg = st.doc_msg[d0 : d1 + 1] - m0
    doc_tok = msg_tok0[doc_msg]
    hi = _segment_sums(t, doc_tok) + _segment_sums(m, doc_msg)
    t ^= _K_LO
    m ^= _K_LO
    lo = _segment_sums(_fmix64(t), doc_tok) + _segment_sums(_fmix64(m), doc_msg)
    return hi, lo


def _shingle_hashes(
    cfg: DedupConfig, t: np.ndarray, td: np.ndarray, nd: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shingle hashes and their docs from doc-sorted text tokens; also tokens per doc.

    A shingle is ``fmix64`` of the polynomial over ``shingle_words`` consecutive token hashes;
    a text shorter than that is one shingle (its tokens, zero-padded).
    """
    sw = cfg.shingle_words
    n_text = np.bincount(td, minlength=nd)
    first = np.zeros(nd + 1, dtype=np.int64)
    np.cumsum(n_text, out=first[1:])
    nt = t.size
    parts_s, parts_d = [], []
    if nt >= sw:
        span = nt - sw + 1
        s = t[:span].copy()
        for k in range(1, sw):
            s *= _K_SHINGLE
            s += t[k : k + span]
        valid = td[sw - 1 :] == td[:span]
        if cfg.max_shingles_per_doc is not None:
            valid &= np.arange(span) - first[td[:span]] < cfg.max_shingles_per_doc
        parts_s.append(s[valid])
        parts_d.append(td[:span][valid])
    short = np.flatnonzero((n_text > 0) & (n_text < sw))
    if short.size:
        s = np.zeros(short.size, dtype=np.uint64)
        for k in range(sw):
            s *= _K_SHINGLE
            ok = k < n_text[short]
            s[ok] += t[first[short[ok]] + k]
        parts_s.append(s)
        parts_d.append(short)
    if not parts_s:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64), n_text
    return _fmix64(np.concatenate(parts_s)), np.concatenate(parts_d), n_text


def _densify(sig: np.ndarray, has: np.ndarray) -> None:
    """Fill the empty bins of a (bins x docs) signature block in place, for docs with text.

    Rotation densification (Shrivastava & Li 2014), borrowing from the left: an empty bin
    takes the nearest non-empty bin to its left (circularly) plus ``distance * C`` (mod
    2**32), so two texts agree on a filled bin only when they agree on the donor at the same
    distance. Walking the bins as rows keeps every operation a contiguous vector op.
    """
    full = sig != _EMPTY
    carry = np.zeros(sig.shape[1], dtype=np.uint32)
    for j in range(sig.shape[0]):  # docs without text get garbage here; nobody reads it
        carry += _C_DENSE
        np.copyto(carry, sig[j], where=full[j])
        sig[j] = carry
    # Leading empty bins take the donor from the end of the row: a second lap, only over
    # the docs that start with an empty bin.
    cols = np.flatnonzero(has & ~full[0])
    if not cols.size:
        return
    sub, sub_full, carry = sig[:, cols], full[:, cols], carry[cols]
    pending = np.ones(cols.size, dtype=bool)
    for j in range(sig.shape[0]):
        pending &= ~sub_full[j]
        if not pending.any():
            break
        carry += _C_DENSE
        np.copyto(sub[j], carry, where=pending)
    sig[:, cols] = sub


def _signatures(
    cfg: DedupConfig, st: _Stream, text_lut: np.ndarray, d0: int, d1: int, out: dict
) -> None:
    """Exact-key sums, MinHash signature and band hashes of docs ``d0:d1``, into ``out``.

    Signatures and band hashes are stored bins-major (``sig[bin, doc]``) so that per-bin
    work is contiguous.
    """
    nd = d1 - d0
    nh = cfg.num_hashes
    m0, m1 = int(st.doc_msg[d0]), int(st.doc_msg[d1])
    h, tok_msg, msg_tok0 = _tokenize(st, m0, m1)
    hi, lo = _key_sums(st, d0, d1, h, tok_msg, msg_tok0)
    out["hi"][d0:d1] += hi
    out["lo"][d0:d1] += lo

    msg_doc = np.repeat(np.arange(nd, dtype=np.int64), np.diff(st.doc_msg[d0 : d1 + 1]))
    sel = text_lut[st.msg_code[m0:m1]][tok_msg]
    if sel.all():
        t, td = h, msg_doc[tok_msg]
    else:
        t, td = h[sel], msg_doc[tok_msg[sel]]
    s, sd, n_text = _shingle_hashes(cfg, t, td, nd)
    bins = ((s >> _U64(32)) * _U64(nh)) >> _U64(32)
    bins = bins.astype(np.int64)
    bins *= nd
    bins += sd
    sig = np.full(nh * nd, _EMPTY, dtype=np.uint32)
    np.minimum.at(sig, bins, (s & _MASK32).astype(np.uint32))
    sig = sig.reshape(nh, nd)
    has = n_text > 0
    _densify(sig, has)
    out["sig"][:, d0:d1] = sig
    out["has"][d0:d1] = has

    # Band b holds bins b, b + num_bands, b + 2 * num_bands, ...: strided, not consecutive,
    # so a run of empty bins densified from one donor never fills a whole band (which would
    # make tiny texts sharing a single shingle collide).
    sig3 = sig.reshape(cfg.rows_per_band, cfg.num_bands, nd)
    bh = np.zeros((cfg.num_bands, nd), dtype=np.uint64)
    for r in range(cfg.rows_per_band):
        bh *= _K_SHINGLE
        bh += sig3[r]
    bh += (np.arange(1, cfg.num_bands + 1, dtype=np.uint64) * _K_BAND)[:, None]
    out["bands"][:, d0:d1] = _fmix64(bh)


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


def _candidate_pairs(
    bands: np.ndarray, rows: np.ndarray, rank: np.ndarray, window: int
) -> tuple[np.ndarray, np.ndarray]:
    """Unique pairs (u < v) of ``rank`` values whose ``rows`` share a band hash.

    ``rows`` (ascending, for cache-friendly reads) are the docs to bucket and ``rank`` their
    content-ordered ids: inside a bucket members are ordered by rank, never by row, and
    each is paired with the next ``window`` members and with the bucket's first member.
    Per band, a counting prefilter on the top hash bits drops most unique keys before the
    remaining ones are sorted.
    """
    bits = int(min(26, max(10, math.ceil(math.log2(max(rows.size, 2))) + 2)))
    shift = _U64(64 - bits)
    us: list[np.ndarray] = []
    vs: list[np.ndarray] = []
    for band in bands:
        keys = band[rows]
        slot = (keys >> shift).astype(np.intp)
        cand = np.flatnonzero(np.bincount(slot, minlength=1 << bits)[slot] > 1)
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
        kr, members = ks[pos], rank[cand[o[pos]]]
        by_rank = np.lexsort((members, kr))  # deterministic order inside each bucket
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
    u = np.concatenate(us).astype(np.int64)
    v = np.concatenate(vs).astype(np.int64)
    g = np.int64(rank.max()) + 1
    code = _sorted_unique(u * g + v)
    return code // g, code % g


def _key_order(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Row order sorted by (hi, lo); only rows whose ``hi`` repeats pay for the second key."""
    order = np.argsort(hi, kind="stable")
    hs = hi[order]
    eq = hs[1:] == hs[:-1]
    if eq.any():
        in_run = np.zeros(hs.size, dtype=bool)
        in_run[1:] |= eq
        in_run[:-1] |= eq
        sub = np.flatnonzero(in_run)
        rows = order[sub]
        order[sub] = rows[np.lexsort((lo[rows], hs[sub]))]
    return order


def _hex_keys(hi: np.ndarray, lo: np.ndarray) -> pl.Series:
    """32-char lowercase hex of (hi, lo), big-endian, so string order equals numeric order."""
    n = hi.size
    be = np.empty((n, 2), dtype=">u8")
    be[:, 0] = hi
    be[:, 1] = lo
    b = be.view(np.uint8).reshape(n, 16)
    txt = np.empty((n, 32), dtype=np.uint8)
    txt[:, 0::2] = _HEX[b >> 4]
    txt[:, 1::2] = _HEX[b & 15]
    offsets = np.arange(0, 32 * (n + 1), 32, dtype=np.int64)
    arr = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(txt))
    return pl.Series("exact_key", arr, dtype=pl.String)


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
    """
    cfg = cfg or DedupConfig()
    n = normalized.height
    if n == 0:
        return pl.DataFrame(schema=DEDUP_SCHEMA)
    nh = cfg.num_hashes
    text_lut = np.zeros(8, dtype=bool)
    text_lut[[_ROLE_CODES[r] for r in cfg.text_roles]] = True
    out = {
        "hi": np.zeros(n, dtype=np.uint64),
        "lo": np.zeros(n, dtype=np.uint64),
        "sig": np.empty((nh, n), dtype=np.uint32),
        "has": np.empty(n, dtype=bool),
        "bands": np.empty((cfg.num_bands, n), dtype=np.uint64),
    }
    st = _message_stream(normalized)
    chunks = _doc_chunks(st.offsets[st.doc_msg], cfg.chunk_bytes)
    # Chunks write disjoint slices, and numpy releases the GIL in its loops: threads give
    # the second core work without changing any result.
    work = functools.partial(_signatures, cfg, st, text_lut, out=out)
    with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
        list(pool.map(work, [c[0] for c in chunks], [c[1] for c in chunks]))
    del st
    hi, lo, sig, has, bands = out["hi"], out["lo"], out["sig"], out["has"], out["bands"]
    if cfg.key_includes_tools and "tools" in normalized.columns:
        tools = _tools_stream(normalized)
        for d0, d1 in _doc_chunks(tools.offsets, cfg.chunk_bytes):
            h, tok_msg, msg_tok0 = _tokenize(tools, d0, d1)
            t_hi, t_lo = _key_sums(tools, d0, d1, h, tok_msg, msg_tok0)
            hi[d0:d1] += t_hi
            lo[d0:d1] += t_lo
        del tools
    _fmix64(hi)
    lo ^= _K_LO
    _fmix64(lo)

    # Groups of identical MinHash signatures (rows without text tokens group by exact key).
    sig_hash = np.zeros(n, dtype=np.uint64)
    for b in range(cfg.num_bands):
        sig_hash *= _K_SHINGLE
        sig_hash += bands[b]
    _fmix64(sig_hash)
    gkey = np.where(has, sig_hash, _fmix64(hi ^ _K_NOSHINGLE))
    by_key = np.argsort(gkey, kind="stable")
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = gkey[by_key[1:]] != gkey[by_key[:-1]]
    rep = by_key[new_group]  # first row of each group, groups in gkey order
    inv = np.empty(n, dtype=np.int64)
    inv[by_key] = np.cumsum(new_group) - 1
    g = rep.size

    # LSH candidates among distinct signatures (one row per group with text), verified by
    # estimated Jaccard. Pairs are group ids.
    is_rep = np.zeros(n, dtype=bool)
    is_rep[rep] = True
    rows = np.flatnonzero(is_rep & has)
    gu, gv = _candidate_pairs(bands, rows, inv[rows], cfg.bucket_window)
    del bands
    eu, ev, ej = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0)]
    step = max(1, (1 << 22) // nh)
    for i in range(0, gu.size, step):
        u, v = gu[i : i + step], gv[i : i + step]
        est = (sig[:, rep[u]] == sig[:, rep[v]]).sum(axis=0) / nh
        keep = est >= cfg.jaccard_threshold - 1e-12
        eu.append(u[keep])
        ev.append(v[keep])
        ej.append(est[keep])
    del sig
    eu_a, ev_a, ej_a = np.concatenate(eu), np.concatenate(ev), np.concatenate(ej)

    lab = connected_components(g, eu_a, ev_a)
    best = np.full(g, np.nan)
    np.fmax.at(best, eu_a, ej_a)
    np.fmax.at(best, ev_a, ej_a)

    # Exact groups (nested inside signature groups: same key -> same text -> same signature).
    order = _key_order(hi, lo)
    new_key = np.ones(n, dtype=bool)
    new_key[1:] = (hi[order[1:]] != hi[order[:-1]]) | (lo[order[1:]] != lo[order[:-1]])
    key_id = np.cumsum(new_key) - 1
    exact_size = np.empty(n, dtype=np.int64)
    exact_size[order] = np.bincount(key_id)[key_id]
    keys_per_group = np.bincount(inv[order[new_key]], minlength=g)
    group_size = np.bincount(inv, minlength=g)

    comp = lab[inv]
    cluster_size = np.bincount(comp, minlength=g)[comp]
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    min_rank = np.full(g, n, dtype=np.int64)
    np.minimum.at(min_rank, comp, rank)
    jaccard = np.where(group_size[inv] > 1, 1.0, best[inv])
    jaccard[cluster_size == 1] = np.nan
    is_near = (keys_per_group[inv] > 1) | ~np.isnan(best[inv])

    keys = _hex_keys(hi, lo)
    return pl.DataFrame(
        {
            "source": normalized["source"],
            "example_id": normalized["example_id"],
            "exact_key": keys,
            "is_exact_duplicate": exact_size > 1,
            "near_dup_jaccard": pl.Series(jaccard).fill_nan(None),
            "is_near_duplicate": is_near,
            "dup_cluster_id": keys.gather(order[min_rank[comp]]),
            "dup_cluster_size": cluster_size.astype(np.int64),
        },
        schema=DEDUP_SCHEMA,
    )


def pick_representatives(dups: pl.DataFrame, scores: pl.DataFrame | None = None) -> pl.DataFrame:
    """Add ``is_dup_representative``: exactly one True per ``dup_cluster_id``.

    The representative is the member with the highest ``quality_score`` (from ``scores``,
    joined on ``(source, example_id)``; null/NaN/missing scores rank last), then the smallest
    ``(source, example_id)``: a total order on content keys, so the choice never depends on
    row order. Rows keep their order; ``scores`` must have one row per key.
    """
    frame = dups.with_row_index("__row")
    by = ["dup_cluster_id"]
    descending = [False]
    if scores is not None:
        sc = scores.select(
            "source", "example_id", pl.col("quality_score").cast(pl.Float64).fill_nan(None)
        )
        frame = frame.join(sc, on=["source", "example_id"], how="left", validate="m:1")
        by.append("quality_score")
        descending.append(True)
    by += ["source", "example_id"]
    descending += [False, False]
    ranked = frame.sort(by, descending=descending, nulls_last=True).with_columns(
        pl.col("dup_cluster_id").is_first_distinct().alias("is_dup_representative")
    )
    return ranked.sort("__row").select(*dups.columns, "is_dup_representative")
