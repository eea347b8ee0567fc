"""A tiny OpenAI-compatible chat-completions server on 127.0.0.1, for tests.

It speaks ``POST /v1/chat/completions`` and answers ``choices[0].message.content``. What it
answers is driven by markers in the request's text, so a test states the behaviour it wants
in its data:

* transport: ``[429-once]`` (429 with ``Retry-After: 0`` the first time a prompt is seen),
  ``[500-always]``, ``[timeout-once]`` (sleeps past the client's timeout the first time),
  ``[badjson-once]`` (a 200 whose body is not JSON the first time), ``[401]``.
* content, for a variations request (the generator's system prompt): ``[malformed]`` (not a
  JSON array), ``[identical]`` (returns the seed itself), ``[empty]`` (an empty variation),
  ``[dup]`` (the same variation twice); otherwise ``["Variant i of: <seed>", ...]``. A
  response request answers ``Answer to: <instruction>``, or a refusal when the instruction
  contains ``[refuse]``, or blanks for ``[blank]``.

``calls`` counts every request (``per_prompt`` by prompt text), so a test can prove what
the cache saved; ``headers`` keeps the last request's headers.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from instruct_assets.lib.synthetic.prompts import VARIATION_SYSTEM

SEED_RE = re.compile(r"<instruction>\n(.*)\n</instruction>", re.DOTALL)
N_RE = re.compile(r"Write (\d+) variations")


class ChatServer:
    """Start with ``with ChatServer() as server: server.base_url``."""

    def __init__(self, timeout_sleep: float = 1.0):
        self.calls = 0
        self.per_prompt: Counter[str] = Counter()
        self.headers: dict[str, str] = {}
        self.timeout_sleep = timeout_sleep
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                server._handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _send(self, handler, status: int, body: bytes, headers: dict | None = None) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            handler.wfile.write(body)  # fails when the client gave up (a timeout test)

    def _handle(self, handler) -> None:
        if handler.path != "/v1/chat/completions":
            self._send(handler, 404, b'{"error": "not found"}')
            return
        length = int(handler.headers.get("Content-Length", 0))
        request = json.loads(handler.rfile.read(length))
        messages = request["messages"]
        prompt = "\n".join(m["content"] for m in messages)
        with self._lock:
            self.calls += 1
            self.per_prompt[prompt] += 1
            seen = self.per_prompt[prompt]
            self.headers = dict(handler.headers.items())
        if "[401]" in prompt:
            self._send(handler, 401, b'{"error": "bad key"}')
            return
        if "[500-always]" in prompt:
            self._send(handler, 500, b'{"error": "boom"}')
            return
        if "[429-once]" in prompt and seen == 1:
            self._send(handler, 429, b'{"error": "slow down"}', {"Retry-After": "0"})
            return
        if "[timeout-once]" in prompt and seen == 1:
            time.sleep(self.timeout_sleep)
            self._send(handler, 200, _completion("too late", request["model"]))
            return
        if "[badjson-once]" in prompt and seen == 1:
            self._send(handler, 200, b'{"choices": [{"message": ')
            return
        self._send(handler, 200, _completion(_answer(messages), request["model"]))


def _completion(content: str, model: str) -> bytes:
    return json.dumps({
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }).encode("utf-8")


def _answer(messages: list[dict]) -> str:
    if messages[0]["role"] == "system" and messages[0]["content"] == VARIATION_SYSTEM:
        user = messages[-1]["content"]
        seed = SEED_RE.search(user).group(1)
        n = int(N_RE.search(user).group(1))
        if "[malformed]" in seed:
            return "Sure! Here are some variations: first, second"
        variations = [f"Variant {i} of: {seed}" for i in range(1, n + 1)]
        if "[identical]" in seed:
            variations[0] = seed
        if "[empty]" in seed:
            variations[0] = "   "
        if "[dup]" in seed and n > 1:
            variations[1] = variations[0].upper() + "."
        return "```json\n" + json.dumps(variations) + "\n```"
    instruction = messages[-1]["content"]
    if "[refuse]" in instruction:
        return "I'm sorry, but I can't help with that request."
    if "[blank]" in instruction:
        return "  \n "
    return f"Answer to: {instruction}"
