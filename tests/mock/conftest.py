import pytest

from helix.mock import MockProcess


@pytest.fixture(scope="module")
def mock():
    with MockProcess("--chunks", "4") as proc:
        yield proc


@pytest.fixture
def client(mock):
    openai = pytest.importorskip("openai")
    mock.clear()
    with openai.OpenAI(base_url=mock.base_url, api_key="k", max_retries=0, timeout=10) as c:
        yield c
