"""The chat client against a real HTTP server on 127.0.0.1: success, retries, failures."""

from __future__ import annotations

import socket

import pytest

from instruct_assets.lib.synthetic.client import ChatClient, EndpointConfig
from tests.synthetic.chat_server import ChatServer


def client(base_url: str, **kw) -> ChatClient:
    cfg = EndpointConfig(base_url=base_url, model="test-model",
                         **{"timeout": 5.0, "max_retries": 2, "backoff": 0.01, **kw})
    return ChatClient(cfg)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.fixture
def server():
    with ChatServer(timeout_sleep=1.0) as s:
        yield s


def test_success_returns_the_message_content_and_sends_the_key(server):
    result = client(server.base_url, api_key="sk-test").complete(user("hello"))
    assert result.ok and result.content == "Answer to: hello"
    assert result.attempts == 1 and result.retried == []
    assert server.calls == 1
    assert server.headers["Authorization"] == "Bearer sk-test"


def test_429_is_retried_then_succeeds(server):
    result = client(server.base_url).complete(user("rate me [429-once]"))
    assert result.ok and result.content == "Answer to: rate me [429-once]"
    assert result.retried == ["http_429"] and result.attempts == 2
    assert server.calls == 2


def test_500s_are_retried_then_reported_not_raised(server):
    result = client(server.base_url, max_retries=3).complete(user("[500-always]"))
    assert not result.ok and result.error == "http_500" and result.content is None
    assert result.attempts == 4 and result.retried == ["http_500"] * 3
    assert server.calls == 4


def test_a_timeout_is_retried(server):
    result = client(server.base_url, timeout=0.3).complete(user("slow [timeout-once]"))
    assert result.ok and result.retried == ["timeout"]
    assert result.content == "Answer to: slow [timeout-once]"


def test_a_malformed_json_body_is_retried(server):
    result = client(server.base_url).complete(user("x [badjson-once]"))
    assert result.ok and result.retried == ["malformed_json"] and server.calls == 2


def test_a_client_error_is_not_retried(server):
    result = client(server.base_url, max_retries=5).complete(user("[401]"))
    assert result.error == "http_401" and result.attempts == 1 and server.calls == 1


def test_an_unreachable_endpoint_is_a_connection_failure():
    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = client(f"http://127.0.0.1:{port}/v1", max_retries=1).complete(user("hi"))
    assert result.error == "connection" and result.attempts == 2
