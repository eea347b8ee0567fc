"""The OpenAI-compatible chat endpoint synthetic generation talks to.

Unconfigured by default (``base_url`` empty): the ``synthetic_variations`` asset then logs
one line and skips. The API key is never part of the config: ``api_key_env`` names the
environment variable that holds it, read when the client is built.
"""

import os

import dagster as dg

from instruct_assets.lib.synthetic.client import ChatClient, EndpointConfig

#: Environment variables ``synthetic_endpoint_from_env`` reads (all optional).
BASE_URL_ENV = "INSTRUCT_ASSETS_SYNTHETIC_BASE_URL"
MODEL_ENV = "INSTRUCT_ASSETS_SYNTHETIC_MODEL"
API_KEY_ENV_ENV = "INSTRUCT_ASSETS_SYNTHETIC_API_KEY_ENV"


class SyntheticEndpoint(dg.ConfigurableResource):
    """An OpenAI-compatible ``/chat/completions`` endpoint.

    ``base_url`` includes the API prefix (``http://127.0.0.1:8000/v1``,
    ``https://api.openai.com/v1``); ``api_key_env`` is the *name* of the environment
    variable holding the key (empty: no Authorization header, e.g. a local vLLM/Ollama).
    ``concurrency`` requests run at once; each waits ``timeout`` seconds and is retried
    ``max_retries`` times on timeouts, 429 and 5xx, after ``backoff * 2**attempt`` s.
    """

    base_url: str = ""
    model: str = ""
    api_key_env: str = ""
    concurrency: int = 4
    timeout: float = 60.0
    max_retries: int = 3
    backoff: float = 1.0
    temperature: float = 0.7

    @property
    def configured(self) -> bool:
        return bool(self.base_url.strip())

    def client(self) -> ChatClient:
        """A client for this endpoint; fails clearly when the named key variable is unset."""
        if not self.model.strip():
            raise dg.Failure(f"SyntheticEndpoint.model is empty (base_url {self.base_url})")
        key = None
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise dg.Failure(f"SyntheticEndpoint.api_key_env names {self.api_key_env!r}, "
                                 "but that environment variable is empty or unset")
        return ChatClient(EndpointConfig(
            base_url=self.base_url, model=self.model, api_key=key, timeout=self.timeout,
            max_retries=self.max_retries, backoff=self.backoff,
            temperature=self.temperature))


def synthetic_endpoint_from_env() -> SyntheticEndpoint:
    """The endpoint from ``INSTRUCT_ASSETS_SYNTHETIC_*`` (unconfigured when unset)."""
    return SyntheticEndpoint(base_url=os.environ.get(BASE_URL_ENV, ""),
                             model=os.environ.get(MODEL_ENV, ""),
                             api_key_env=os.environ.get(API_KEY_ENV_ENV, ""))
