"""On-disk cache of paid completions, keyed by (seed id, prompt, model).

Why: generation costs money and time; a re-run (after a crash, a code change downstream, a
new seed) must not pay again for a row it already has. Only successful completions are
stored (a failure is retried on the next run). One small JSON file per key under
``synthetic_cache/<key[:2]>/<key>.json``, written atomically, so concurrent workers and
interrupted runs never leave a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

from instruct_assets.lib.parquet_io import atomic_path
from instruct_assets.lib.synthetic.client import Messages


def cache_key(seed_id: str, messages: Messages, model: str) -> str:
    """sha256 of the canonical JSON of (seed id, prompt messages, model)."""
    payload = json.dumps({"seed": seed_id, "messages": messages, "model": model},
                         sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class CompletionCache:
    """get/put completions by key; counts hits and writes (thread-safe)."""

    def __init__(self, root: Path):
        self.root = root
        self.hits = 0
        self.writes = 0
        self._lock = threading.Lock()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        path = self._path(key)
        if not path.exists():
            return None
        try:
            content = json.loads(path.read_text(encoding="utf-8"))["content"]
        except (OSError, ValueError, KeyError, TypeError):
            return None  # unreadable entry: treated as a miss, overwritten on success
        with self._lock:
            self.hits += 1
        return content if isinstance(content, str) else None

    def put(self, key: str, seed_id: str, messages: Messages, model: str, content: str) -> None:
        entry = {"seed": seed_id, "model": model, "messages": messages, "content": content}
        with atomic_path(self._path(key)) as tmp:
            tmp.write_text(json.dumps(entry, ensure_ascii=False, sort_keys=True),
                           encoding="utf-8")
        with self._lock:
            self.writes += 1
