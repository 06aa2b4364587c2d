import pytest

from helix.mock import MockProcess
from tests.helpers import HelixProcess, free_port

UPSTREAM_KEY = "sk-upstream-secret-1234"


def gateway_config(mock_url: str) -> str:
    """One mock, several providers in front of it, each with a behaviour header."""
    down = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there

    def provider(name, headers="{}", extra="", base=f"{mock_url}/v1"):
        return f"""
  - name: {name}
    type: openai_compatible
    base_url: {base}
    api_key: {UPSTREAM_KEY}
    headers: {headers}
    {extra}"""

    return (
        "providers:"
        + "".join(
            [
                provider(
                    "mock",
                    extra="models: [gpt-4o-mini, text-embedding-3-small, "
                    "{name: alias-fast, id: real-model-id}]",
                ),
                provider("slow", '{x-mock-latency-ms: "5000"}', "timeout: 1s"),
                provider("limited", '{x-mock-status: "429"}'),
                provider("broken", "{x-mock-fail: reset-mid-stream}"),
                provider("streamy", '{x-mock-chunks: "6", x-mock-chunk-interval-ms: "250"}'),
            provider("hang", "{x-mock-fail: hang}"),  # never answers; no timeout configured
                provider("down", base=down),
            ]
        )
        + "\nserver:\n  max_body_bytes: 200000\n"
    )


@pytest.fixture(scope="module")
def mock():
    with MockProcess("--chunks", "5", "--require-key", UPSTREAM_KEY) as proc:
        yield proc


@pytest.fixture(scope="module")
def helix(mock):
    with HelixProcess(gateway_config(mock.url), workers=2) as proc:
        yield proc


@pytest.fixture
def client(helix, mock):
    openai = pytest.importorskip("openai")
    mock.clear()
    with openai.OpenAI(
        base_url=helix.base_url, api_key="client-own-key-must-not-leak", max_retries=0, timeout=15
    ) as c:
        yield c
