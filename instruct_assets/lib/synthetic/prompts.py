"""The prompts that turn a seed instruction into variations, and a variation into a row.

Two requests per generated row: one per seed asks for ``n`` variations as a JSON array of
strings; one per variation asks for its response, as a plain chat turn (the seed's system
prompt, if any, then the variation as the user turn), so the answer is what a model would
say to that instruction, not an answer about the generation task.
"""

from __future__ import annotations

from instruct_assets.lib.synthetic.client import Messages

#: Version of the prompt text: part of the cache key through the prompt itself.
VARIATION_SYSTEM = (
    "You write variations of a user instruction for an instruction-tuning dataset. Each "
    "variation asks for a different but related task of similar difficulty, is "
    "self-contained, and is not a copy or a paraphrase-in-place of the original. Reply with "
    "a JSON array of strings and nothing else."
)

VARIATION_USER = (
    "Write {n} variations of the instruction between the markers.\n\n"
    "<instruction>\n{instruction}\n</instruction>"
)


def variation_messages(instruction: str, n: int) -> Messages:
    """The request for ``n`` variations of ``instruction``."""
    return [{"role": "system", "content": VARIATION_SYSTEM},
            {"role": "user", "content": VARIATION_USER.format(n=n, instruction=instruction)}]


def response_messages(instruction: str, system: str | None) -> Messages:
    """The request for the response to a generated instruction."""
    messages = [{"role": "system", "content": system}] if system else []
    return [*messages, {"role": "user", "content": instruction}]
