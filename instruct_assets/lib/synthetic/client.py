"""A minimal OpenAI-compatible chat-completions client (standard library only).

``POST {base_url}/chat/completions`` with ``model``/``messages``/``temperature``; the answer
is ``choices[0].message.content``. Transient failures (a timeout, a dropped connection, HTTP
429 or 5xx, a body that is not the protocol's JSON) are retried ``max_retries`` times with
exponential backoff (``backoff * 2**attempt`` seconds, capped; a 429's ``Retry-After`` is
honoured up to the cap). Anything else (400, 401, 404) fails at once: retrying cannot fix
it. A failure is returned, never raised, so one bad request never stops a run.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class EndpointConfig:
    """Where and how to call the endpoint."""

    base_url: str
    model: str
    api_key: str | None = None
    timeout: float = 60.0
    max_retries: int = 3
    backoff: float = 1.0
    #: Upper bound on one wait (also caps a server's Retry-After).
    max_backoff: float = 30.0
    temperature: float = 0.7


@dataclass
class ChatResult:
    """One completion: ``content`` on success, else ``error`` (its kind) and ``detail``."""

    content: str | None
    error: str | None = None
    detail: str | None = None
    attempts: int = 0
    #: Kinds of the failures that were retried before the final outcome.
    retried: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


class _Failure(Exception):
    def __init__(self, kind: str, detail: str, retryable: bool, wait: float | None = None):
        super().__init__(detail)
        self.kind, self.detail, self.retryable, self.wait = kind, detail, retryable, wait


class ChatClient:
    """Thread-safe: holds no connection state between calls."""

    def __init__(self, cfg: EndpointConfig, sleep: Callable[[float], None] = time.sleep):
        self.cfg = cfg
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"
        self._sleep = sleep

    def _request(self, messages: Messages) -> str:
        body = json.dumps({"model": self.cfg.model, "messages": messages,
                           "temperature": self.cfg.temperature}).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.cfg.api_key:
            headers["Authorization"] = f"Bearer {self.cfg.api_key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.cfg.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            status = exc.code
            text = exc.read(500).decode("utf-8", "replace") if exc.fp else ""
            retryable = status == 429 or status >= 500
            wait = _retry_after(exc.headers.get("Retry-After")) if status == 429 else None
            raise _Failure(f"http_{status}", f"HTTP {status}: {text[:200]}", retryable,
                           wait) from exc
        except TimeoutError as exc:
            raise _Failure("timeout", f"no answer within {self.cfg.timeout}s", True) from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise _Failure("timeout", f"no answer within {self.cfg.timeout}s",
                               True) from exc
            raise _Failure("connection", f"connection failed: {exc.reason}", True) from exc
        except (ConnectionError, OSError) as exc:
            raise _Failure("connection", f"connection failed: {exc}", True) from exc
        return _content(raw)

    def complete(self, messages: Messages) -> ChatResult:
        """One chat completion, with retries; never raises for endpoint trouble."""
        retried: list[str] = []
        for attempt in range(self.cfg.max_retries + 1):
            try:
                content = self._request(messages)
                return ChatResult(content, attempts=attempt + 1, retried=retried)
            except _Failure as fail:
                last = fail
                if not fail.retryable or attempt == self.cfg.max_retries:
                    break
                retried.append(fail.kind)
                wait = self.cfg.backoff * 2 ** attempt if fail.wait is None else fail.wait
                self._sleep(min(self.cfg.max_backoff, max(0.0, wait)))
        return ChatResult(None, error=last.kind, detail=last.detail, attempts=attempt + 1,
                          retried=retried)


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _content(raw: bytes) -> str:
    """``choices[0].message.content`` of a response body, else a retryable failure."""
    try:
        doc: Any = json.loads(raw.decode("utf-8"))
        content = doc["choices"][0]["message"]["content"]
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Failure("malformed_json", f"response is not JSON: {raw[:120]!r}", True) from exc
    except (KeyError, IndexError, TypeError) as exc:
        raise _Failure("malformed_json", "response lacks choices[0].message.content",
                       True) from exc
    if not isinstance(content, str):
        raise _Failure("malformed_json", "choices[0].message.content is not text", True)
    return content
