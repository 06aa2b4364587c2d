import msgspec
import pytest

from helix.config import load_env, load_file
from helix.errors import ErrorKind, HelixError, Retry
from helix.providers.openai import upstream_error
from helix.routing.registry import ModelRegistry
from helix.schema.openai import chat_request_decoder, decode_request


def registry(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return ModelRegistry(load_file(str(p), {}))


def test_passthrough_keeps_body_bytes_when_model_matches():
    reg = ModelRegistry(load_env({"OPENAI_API_KEY": "sk-123456789"}))
    dep = reg.resolve("gpt-4o")[0]
    body = b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"x_vendor":{"a":1}}'
    view = decode_request(chat_request_decoder, body)
    up = dep.adapter.chat_request(dep, view, body)
    assert up.body is body
    assert up.target == b"/v1/chat/completions"
    assert (b"authorization", b"Bearer sk-123456789") in up.headers


def test_provider_prefix_rewrites_model_and_keeps_unknown_fields():
    reg = ModelRegistry(load_env({"OPENAI_API_KEY": "sk-123456789"}))
    dep = reg.resolve("openai/gpt-5-preview")[0]
    assert dep.model_id == "gpt-5-preview" and dep.provider == "openai"
    body = b'{"model":"openai/gpt-5-preview","messages":[{"role":"user","content":"hi"}],"seed":7}'
    up = dep.adapter.chat_request(dep, decode_request(chat_request_decoder, body), body)
    doc = msgspec.json.decode(up.body)
    assert doc == {
        "model": "gpt-5-preview",
        "messages": [{"role": "user", "content": "hi"}],
        "seed": 7,
    }


def test_alias_maps_to_provider_id(tmp_path):
    reg = registry(
        tmp_path,
        """
providers:
  - {name: local, type: openai_compatible, base_url: "http://127.0.0.1:9/v1",
     models: [{name: fast, id: llama-3}]}
""",
    )
    dep = reg.resolve("fast")[0]
    assert (dep.model_id, dep.origin.port, dep.base_path) == ("llama-3", 9, "/v1")
    assert not any(k == b"authorization" for k, _ in dep.static_headers)  # no key, no header


def test_azure_url_and_header(tmp_path):
    reg = registry(
        tmp_path,
        """
providers:
  - {name: az, type: azure, base_url: "https://res.openai.azure.com", api_key: azkey,
     api_version: "2024-06-01", models: [{name: gpt-4o, id: my-deploy}]}
""",
    )
    dep = reg.resolve("gpt-4o")[0]
    body = b'{"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}'
    up = dep.adapter.chat_request(dep, decode_request(chat_request_decoder, body), body)
    assert up.target == b"/openai/deployments/my-deploy/chat/completions?api-version=2024-06-01"
    assert (b"api-key", b"azkey") in up.headers
    assert not any(k == b"authorization" for k, _ in up.headers)


def test_unknown_model_is_404_model_not_found():
    reg = ModelRegistry(load_env({"OPENAI_API_KEY": "sk-1"}))
    with pytest.raises(HelixError) as ei:
        reg.resolve("no-such-model")
    assert ei.value.status == 404 and ei.value.code == "model_not_found"
    assert ei.value.param == "model"


def test_no_providers_is_a_clear_503():
    with pytest.raises(HelixError) as ei:
        ModelRegistry(load_env({})).resolve("gpt-4o")
    assert ei.value.status == 503 and "OPENAI_API_KEY" in ei.value.message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (b"not json", "could not parse the JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"messages": []}', "Missing required parameter: 'model'"),
        (b'{"model": 5, "messages": []}', "Invalid value for 'model'"),
    ],
)
def test_bad_bodies_are_400_in_openai_shape(body, message):
    with pytest.raises(HelixError) as ei:
        decode_request(chat_request_decoder, body)
    err = ei.value
    assert err.status == 400 and message in err.message
    doc = msgspec.json.decode(err.to_json())
    assert set(doc["error"]) == {"message", "type", "param", "code"}


def test_provider_error_passes_through_with_status_and_message():
    body = (
        b'{"error":{"message":"Rate limit reached","type":"requests",'
        b'"param":null,"code":"rate_limit_exceeded"}}'
    )
    err = upstream_error("openai", 429, [(b"retry-after", b"2")], body)
    assert err.status == 429 and err.retry is Retry.YES and err.kind is ErrorKind.RATE_LIMITED
    assert msgspec.json.decode(err.to_json())["error"]["message"] == "Rate limit reached"
    assert (b"retry-after", b"2") in err.headers
    odd = upstream_error("vllm", 400, [], b'{"detail":"bad things"}')
    assert odd.status == 400 and odd.retry is Retry.NO and "bad things" in odd.message
    html = upstream_error("x", 502, [], b"<html>Bad gateway</html>")
    assert html.status == 502 and "Bad gateway" in html.message


def test_embeddings_as_base64_matches_openai_encoding():
    import base64
    import struct

    from helix.schema.openai import embeddings_as_base64

    body = msgspec.json.encode(
        {"object": "list", "data": [{"index": 0, "embedding": [0.5, -1.25]},
                                    {"index": 1, "embedding": "already"}]}
    )
    doc = msgspec.json.decode(embeddings_as_base64(body))
    raw = base64.b64decode(doc["data"][0]["embedding"])
    assert struct.unpack("<2f", raw) == (0.5, -1.25)
    assert doc["data"][1]["embedding"] == "already"
