"""Content fingerprints of sources: the sensor's run keys and the assets' data versions.

A file's digest is the SHA-256 of its bytes (a stable fingerprint, not security), cached by
(size, mtime) so an unchanged file is never re-read. A source's fingerprint combines its
files' relative paths and digests, its ``sources.yaml`` settings and the parsing code
version: change any of them and the source is re-ingested; touch nothing and nothing runs.
"""

from __future__ import annotations

import hashlib
import json

from instruct_assets.lib.paths import DataPaths
from instruct_assets.lib.sources import SourceSpec, source_files

#: (size, mtime_ns, md5) per relative path, carried between sensor ticks in its cursor.
FileCache = dict[str, list]


def file_digest(path, chunk: int = 1 << 22) -> str:
    """SHA-256 of the file's bytes: with the CPU's SHA instructions it runs about three times
    faster than md5 here (0.6 s against 1.8 s for a 766 MB file)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def files_fingerprint(paths: DataPaths, files: list, cache: FileCache,
                      extra: dict[str, object]) -> str:
    """md5 of ``files``' relative paths and digests plus ``extra`` (settings, code version);
    digests are cached in ``cache`` by (size, mtime) so unchanged files are not re-read."""
    entries = []
    for path in files:
        rel = paths.relative(path)
        stat = path.stat()
        hit = cache.get(rel)
        if hit and hit[0] == stat.st_size and hit[1] == stat.st_mtime_ns:
            digest = hit[2]
        else:
            digest = file_digest(path)
            cache[rel] = [stat.st_size, stat.st_mtime_ns, digest]
        entries.append([rel, digest])
    payload = json.dumps({"files": entries, **extra}, sort_keys=True)
    return hashlib.md5(payload.encode(), usedforsecurity=False).hexdigest()[:16]


def source_fingerprint(paths: DataPaths, spec: SourceSpec, cache: FileCache,
                       code_version: str) -> str:
    """Fingerprint of ``spec``'s current content; updates ``cache`` in place."""
    return files_fingerprint(paths, source_files(paths, spec), cache,
                             {"spec": spec.fingerprint_fields(), "code": code_version})
