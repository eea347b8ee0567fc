"""Every threshold and weight of the per-example quality signals, in one frozen place.

Why one dataclass: a threshold that lives inside a regex or a function body cannot be
reviewed, overridden from ``quality.yaml`` or reported next to the numbers it produced.
Each default carries the reason it was chosen; change a default only with a new reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

#: Flags in the fixed order they appear in ``quality_flags`` (most damaging first).
FLAG_ORDER: tuple[str, ...] = (
    "no_trainable_content",
    "empty_or_trivial_response",
    "special_token_leak",
    "template_placeholder",
    "truncated_response",
    "repetition",
    "refusal_boilerplate",
    "output_misalignment",
    "too_long_for_context",
    "missing_context",
    "vague_instruction",
    "noisy_response",
    "shape_outlier",
    "overlong_system_prompt",
)

#: Flags the lead adds from the duplicate tables (see ``signals.apply_duplicate_penalty``).
DUPLICATE_FLAGS: tuple[str, ...] = ("exact_duplicate", "near_duplicate")


def _default_weights() -> dict[str, float]:
    # Penalty subtracted from 1.0 when a flag is raised (score clipped to [0, 1]).
    # 1.0: nothing to learn from the row at all. 0.5-0.6: the row teaches a visible defect
    # (leaked tokens, unrendered templates, cut-off or looping text) and should normally be
    # dropped. 0.3-0.4: the row teaches a wrong habit (boilerplate refusals, ignoring the
    # requested format, answering a question about absent text). <= 0.2: style or
    # distribution issues a curator may accept.
    return {
        "no_trainable_content": 1.0,
        "empty_or_trivial_response": 1.0,
        "special_token_leak": 0.6,
        "template_placeholder": 0.6,
        "truncated_response": 0.5,
        "repetition": 0.5,
        "refusal_boilerplate": 0.4,
        "output_misalignment": 0.4,
        "too_long_for_context": 0.3,
        "missing_context": 0.3,
        "vague_instruction": 0.2,
        "noisy_response": 0.2,
        "shape_outlier": 0.15,
        "overlong_system_prompt": 0.1,
        # Only non-representative members of a duplicate cluster are penalised: the
        # representative keeps its score, so dropping by score keeps one copy.
        "exact_duplicate": 1.0,
        "near_duplicate": 0.5,
    }


@dataclass(frozen=True)
class QualityThresholds:
    """Thresholds, weights and severities for ``signals.score_examples``.

    Frozen so a run's configuration cannot drift while it scores; build a variant with
    ``dataclasses.replace`` or :meth:`from_mapping`.
    """

    # --- lengths -----------------------------------------------------------------------
    # Smallest context window still common in fine-tuning recipes (Llama-2 era models,
    # many LoRA configs use max_seq_length 4096); rows above it get cut by the trainer.
    context_window_tokens: int = 4096
    # approx_tokens = chars / 4: OpenAI's rule of thumb for English BPE vocabularies.
    # It undercounts CJK text (about 1-1.5 tokens per character), so CJK-heavy rows are
    # estimated low; exact counts need the target tokenizer, which this library avoids.
    chars_per_token: float = 4.0
    # Each turn costs a few template tokens (role header, end-of-turn); ChatML spends 4.
    tokens_per_message: int = 4
    # A system prompt above 512 tokens eats 1/8 of a 4k window on every row and usually
    # means a document was pasted into the system slot instead of the user turn.
    max_system_prompt_tokens: int = 512

    # --- empty / trivial responses -----------------------------------------------------
    # Responses shorter than 2 non-space characters are trivial unless they are a digit
    # or letter (a one-character answer such as "4" or "B" is legitimate for maths and
    # multiple-choice prompts).
    trivial_min_chars: int = 2

    # --- truncation ----------------------------------------------------------------------
    # Below ~200 characters a missing final period is normal (labels, short answers,
    # list items); above it, prose that stops on a letter or comma was usually cut off.
    truncation_min_chars: int = 200
    # ... and its last line must be prose of at least this length: shorter last lines are
    # signatures ("Sincerely,\nJohn"), list items or labels that end without a period.
    truncation_min_last_line_chars: int = 60
    # More '{' + '[' than '}' + ']' by at least this much: a JSON or code body was cut.
    bracket_imbalance_min: int = 1

    # --- repetition (Gopher, Rae et al. 2021, table A1; FineWeb keeps the same values) ---
    # Fraction of lines (of at least repetition_min_line_chars) that repeat an earlier line.
    max_dup_line_frac: float = 0.30
    # Fraction of the characters of those lines that sit in lines repeating an earlier one.
    max_dup_line_char_frac: float = 0.20
    # Characters covered by the most frequent word 2-gram (times its count) / all word chars.
    max_top_2gram_char_frac: float = 0.20
    # Word characters covered by a repeated occurrence of a word 5-gram / all word chars.
    max_dup_5gram_char_frac: float = 0.15
    # Gopher applies these to documents of >= 50 words; on shorter texts one 2-gram is a
    # large share by construction ("The answer is 4": "The answer" = 9/13 of the chars).
    repetition_min_words: int = 50
    # n-gram statistics cost a tokenisation per row; they are computed only for responses
    # that show a cheap sign of looping: a repeated line, or a line this long (a runaway
    # generation rarely keeps emitting newlines). 4x a typical paragraph (~250 chars).
    repetition_screen_runaway_chars: int = 1000
    # ... and "a repeated line" means repeated lines holding at least this share of the line
    # characters: one repeated heading or closing line is normal; a loop repeats far more.
    repetition_screen_min_dup_line_char_frac: float = 0.05
    # Lines shorter than this are structure, not content: speaker names in a screenplay
    # ("JENNY"), "}", "---", "\\hline", short labels. Gopher counts every line; on
    # instruction data such lines repeat legitimately, so duplicate-line ratios skip them.
    repetition_min_line_chars: int = 10

    # --- noise ---------------------------------------------------------------------------
    # Share of characters that are HTML tags/entities, control characters, U+FFFD or long
    # symbol runs. Web-scraped boilerplate sits well above 0.3; markdown prose and code in
    # fences stay near 0 (fenced code is excluded from the measure).
    max_noise_ratio: float = 0.30
    # Below this length a couple of tags ("<br>") make a large ratio for no real harm.
    noise_min_chars: int = 40

    # --- alignment -------------------------------------------------------------------------
    # "In one sentence": allow one extra sentence, since abbreviations ("e.g.", "Dr.")
    # and a trailing clause end with periods that are not sentence ends.
    one_sentence_max_sentences: int = 2
    # "In N words": the response may be this much above N (proportion) plus a fixed slack
    # of a few words, before it counts as ignoring the limit; "in N words" (not "at most")
    # also fails below N * word_limit_under_ratio.
    word_limit_over_ratio: float = 0.5
    word_limit_slack_words: int = 5
    word_limit_under_ratio: float = 0.5
    # Latin-script target language: the response must have at least this share of
    # target-language stopwords among (target + English) stopwords ...
    min_target_stopword_share: float = 0.25
    # ... once it has this many English stopwords (below that there is no evidence).
    language_min_english_stopwords: int = 3
    # Non-Latin target (CJK, Cyrillic, Arabic, ...): share of letters in the target script.
    min_target_script_share: float = 0.10
    # Minimum letters in a response before its script is judged.
    language_min_letters: int = 10

    # --- instructions ------------------------------------------------------------------------
    # A "see the following text" prompt is judged only when it is one line of at most this
    # many characters: a longer line usually carries its content inline (and the text after
    # the reference must also hold no ':', quote, bracket or digit).
    missing_context_max_prompt_chars: int = 300
    # A system prompt this long may hold the referenced passage; do not flag then.
    missing_context_system_holds_chars: int = 200

    # --- consistency ----------------------------------------------------------------------
    # Words of the masked first user turn that make the template key: 7 words keep
    # "Transform this data from TOML to CSV:" apart from "... from JSON to YAML:" and still
    # group rows that differ only in their payload.
    template_words: int = 7
    # Tokens at least this long (ids, hashes, URLs, long names) are masked in the key.
    template_mask_min_chars: int = 15
    # A template group needs this many rows before "the usual shape" means anything.
    shape_min_group_rows: int = 20
    # ... and one shape must cover this share of it; 0.8 leaves room for a few legitimate
    # variants while catching the odd row out.
    shape_dominant_share: float = 0.80
    # Responses with at most this many words and one line are a "short" shape (labels).
    short_answer_max_words: int = 4

    # --- scoring ---------------------------------------------------------------------------
    weights: dict[str, float] = field(default_factory=_default_weights)
    # Flags that make a row unusable as is: the default curation drops rows with any of them.
    severe_flags: tuple[str, ...] = (
        "no_trainable_content",
        "empty_or_trivial_response",
        "special_token_leak",
        "template_placeholder",
        "truncated_response",
        "repetition",
    )

    def weight(self, flag: str) -> float:
        """Penalty for ``flag`` (0.0 for an unknown flag, so new flags never crash scoring)."""
        return float(self.weights.get(flag, 0.0))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for logging into asset metadata."""
        out = asdict(self)
        out["severe_flags"] = list(self.severe_flags)
        return out

    @classmethod
    def from_mapping(cls, values: dict[str, Any] | None) -> QualityThresholds:
        """Build from a YAML mapping; unknown keys raise so typos are caught early.

        ``weights`` is merged over the defaults so a config can change one weight.
        """
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown quality thresholds {unknown}; known: {sorted(known)}")
        if "weights" in values:
            merged = _default_weights()
            merged.update({str(k): float(v) for k, v in dict(values["weights"]).items()})
            values["weights"] = merged
        if "severe_flags" in values:
            values["severe_flags"] = tuple(values["severe_flags"])
        return cls(**values)
