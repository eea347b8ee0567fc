"""Synthetic variations of seed instructions from an OpenAI-compatible chat endpoint.

seed -> generate -> validate -> filter: :mod:`.generate` picks seed examples, asks the
endpoint (:mod:`.client`, standard library only) for variations of each seed instruction
and a response to each variation, caches every paid completion on disk (:mod:`.cache`),
validates the rows (:mod:`.validate`) and writes the survivors as a raw source.
"""
