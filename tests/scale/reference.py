"""The two real sources the scale-out tests run, and how their outputs are compared."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.support import real

#: Two small real sources of different formats (alpaca, sharegpt with tool calls).
SOURCES = {
    "alpaca": [real("hiyouga__LLaMA-Factory/alpaca_en_demo.json")],
    "glaive": [real("hiyouga__LLaMA-Factory/glaive_toolcall_en_demo.json")],
}

#: What the per-source stage publishes; the rest of the data dir is downstream of it.
PER_SOURCE = ("normalized", "rejects")


def digests(root: Path, under: tuple[str, ...] | None = None) -> dict[str, str]:
    """sha256 of every output file below ``root`` (optionally only the top folders ``under``).

    Left out: the raw inputs (links), ``staging/`` (a work area) and DuckDB files, which are
    a rebuildable view layer and not byte-stable.
    """
    out = {}
    for p in sorted(root.rglob("*")):
        top = p.relative_to(root).parts[0]
        if (not p.is_file() or p.is_symlink() or top in ("raw", "staging")
                or ".duckdb" in p.name or (under is not None and top not in under)):
            continue
        out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out
