"""helix.providers.anthropic, sans-IO, with the official SDKs as oracles of the wire shapes.

The anthropic SDK validates what Helix sends to and reads from Anthropic
(``MessageCreateParams``, ``Message``, ``RawMessageStreamEvent``); the openai SDK
validates what Helix gives the client (``ChatCompletion``, ``ChatCompletionChunk``).
"""

from __future__ import annotations

import json
import pathlib
import typing

import msgspec
import pydantic
import pytest
from anthropic.types import Message as SDKMessage
from anthropic.types import RawMessageStreamEvent
from anthropic.types import message_create_params as mcp
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from helix.api.chat import OpenAIChunkSink
from helix.config import load_env, load_file
from helix.errors import ErrorKind, HelixError, Retry
from helix.mock.anthropic_routes import messages_create
from helix.mock.base import Controls, MockRequest
from helix.providers import anthropic as A
from helix.providers import catalog
from helix.providers.features import OUTPUT_TOOL, Capabilities
from helix.routing.registry import ModelRegistry
from helix.schema.anthropic import message_decoder
from helix.schema.openai import chat_request_decoder, decode_request

FIX = pathlib.Path(__file__).parent / "fixtures" / "anthropic"
CREATE = pydantic.TypeAdapter(mcp.MessageCreateParamsNonStreaming)
CREATE_STREAM = pydantic.TypeAdapter(mcp.MessageCreateParamsStreaming)
EVENT = pydantic.TypeAdapter(RawMessageStreamEvent)
# Sampling keys Anthropic accepts on the models Helix targets that this SDK
# version no longer lists (it was generated for models that dropped them).
LEGACY_KEYS = {"temperature", "top_p", "top_k", "stream"}
CREATE_KEYS = set(typing.get_type_hints(mcp.MessageCreateParamsBase)) | LEGACY_KEYS


def _force(obj):
    """Pydantic validates Iterable fields lazily: walk everything so all of it is checked."""
    if isinstance(obj, dict):
        return {k: _force(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_force(v) for v in obj]
    if hasattr(obj, "__next__"):
        return [_force(v) for v in obj]
    return obj


def translate(doc: dict, model: str | None = "claude-x", default: int = 4096) -> dict:
    out = A.openai_to_anthropic_request(doc, model, default)
    assert set(out) <= CREATE_KEYS, set(out) - CREATE_KEYS
    if model is not None:
        _force((CREATE_STREAM if out.get("stream") else CREATE).validate_python(out))
    return out


def user(text):
    return {"role": "user", "content": text}


# --- request translation ----------------------------------------------------------------


def test_minimal_request_and_default_max_tokens():
    out = translate({"model": "m", "messages": [user("hi")]}, default=777)
    assert out == {"model": "claude-x", "max_tokens": 777, "messages": [user("hi")]}


def test_max_completion_tokens_wins_over_max_tokens():
    doc = {"messages": [user("hi")], "max_tokens": 10}
    assert translate(doc)["max_tokens"] == 10
    assert translate({**doc, "max_completion_tokens": 20})["max_tokens"] == 20


def test_system_and_developer_are_hoisted_and_joined_in_order():
    doc = {
        "messages": [
            {"role": "system", "content": "be brief"},
            user("a"),
            {"role": "developer", "content": [{"type": "text", "text": "use French"}]},
            user("b"),
        ]
    }
    out = translate(doc)
    assert out["system"] == "be brief\n\nuse French"
    # the two user turns are now adjacent: merged into one
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]


def test_system_cache_control_keeps_blocks():
    cc = {"type": "ephemeral"}
    doc = {
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "big", "cache_control": cc}]},
            user("q"),
        ]
    }
    assert translate(doc)["system"] == [{"type": "text", "text": "big", "cache_control": cc}]


def test_consecutive_same_role_messages_merge():
    doc = {
        "messages": [
            user("1"),
            user([{"type": "text", "text": "2"}]),
            {"role": "assistant", "content": "x"},
            {"role": "assistant", "content": [{"type": "text", "text": "y"}]},
            {"role": "assistant", "content": ""},  # empty turns are dropped
            user("3"),
        ]
    }
    msgs = translate(doc)["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert [b["text"] for b in msgs[0]["content"]] == ["1", "2"]
    assert [b["text"] for b in msgs[1]["content"]] == ["x", "y"]
    assert msgs[2]["content"] == "3"


TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": True,
    },
}


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (None, None, None),
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            None,
            {"type": "tool", "name": "get_weather"},
        ),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
        ("auto", True, {"type": "auto"}),
    ],
)
def test_tools_and_tool_choice(choice, parallel, expected):
    doc = {"messages": [user("q")], "tools": [TOOL]}
    if choice is not None:
        doc["tool_choice"] = choice
    if parallel is not None:
        doc["parallel_tool_calls"] = parallel
    out = translate(doc)
    assert out["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather",
            "input_schema": TOOL["function"]["parameters"],
        }
    ]
    assert out.get("tool_choice") == expected


def test_tool_without_parameters_gets_an_empty_object_schema():
    doc = {"messages": [user("q")], "tools": [{"type": "function", "function": {"name": "now"}}]}
    assert translate(doc)["tools"] == [
        {"name": "now", "input_schema": {"type": "object", "properties": {}}}
    ]


def test_tool_choice_without_tools_is_dropped():
    assert "tool_choice" not in translate({"messages": [user("q")], "tool_choice": "auto"})


@pytest.mark.parametrize(
    ("doc", "param"),
    [
        ({"tools": [{"type": "code_interpreter"}]}, "tools[0].type"),
        ({"tools": [TOOL], "tool_choice": "sometimes"}, "tool_choice"),
        ({"response_format": {"type": "yaml"}}, "response_format.type"),
        ({"stop": 5}, "stop"),
    ],
)
def test_untranslatable_values_are_400_naming_the_param(doc, param):
    with pytest.raises(HelixError) as ei:
        translate({"messages": [user("q")], **doc})
    assert ei.value.kind is ErrorKind.INVALID_REQUEST and ei.value.param == param


def test_tool_round_trip_messages():
    doc = {
        "messages": [
            user("weather in Paris and Rome?"),
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {
                "role": "tool",
                "tool_call_id": "call_2",
                "content": [{"type": "text", "text": "rainy"}],
            },
            user("thanks"),
        ],
        "tools": [TOOL],
    }
    msgs = translate(doc)["messages"]
    assert msgs[1] == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}},
        ],
    }
    # both tool results and the following user text form one user turn, results first
    assert msgs[2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
            {
                "type": "tool_result",
                "tool_use_id": "call_2",
                "content": [{"type": "text", "text": "rainy"}],
            },
            {"type": "text", "text": "thanks"},
        ],
    }
    assert len(msgs) == 3


@pytest.mark.parametrize(
    ("message", "param"),
    [
        (
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{bad"}}],
            },
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}],
            },
            "messages[1].tool_calls[0].function.arguments",
        ),
        ({"role": "tool", "content": "x"}, "messages[1].tool_call_id"),
        ({"role": "function", "content": "x", "name": "f"}, "messages[1].role"),
        (user([{"type": "input_audio", "input_audio": {}}]), "messages[1].content[0].type"),
        (
            user([{"type": "image_url", "image_url": {"url": "ftp://x"}}]),
            "messages[1].content[0].image_url.url",
        ),
        (
            user([{"type": "image_url", "image_url": {"url": "data:image/png,raw"}}]),
            "messages[1].content[0].image_url.url",
        ),
        (user([{"type": "file", "file": {"file_id": "file-1"}}]), "messages[1].content[0].file"),
    ],
)
def test_bad_messages_are_400_naming_the_param(message, param):
    with pytest.raises(HelixError) as ei:
        translate({"messages": [user("q"), message]})
    assert ei.value.param == param and ei.value.status == 400


def test_images_data_url_and_http_url():
    content = [
        {"type": "text", "text": "what?"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/AAAA"}},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "high"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBER"}},
    ]
    out = translate({"messages": [user(content)]})
    assert out["messages"][0]["content"][1:] == [
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/AAAA"},
        },
        {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"},
        },
    ]


@pytest.mark.parametrize(
    ("stop", "expected"), [("END", ["END"]), (["a", "b"], ["a", "b"]), ([], None), (None, None)]
)
def test_stop_sequences(stop, expected):
    assert translate({"messages": [user("q")], "stop": stop}).get("stop_sequences") == expected


def test_sampling_user_stream_and_passthrough_extensions():
    out = translate(
        {
            "messages": [user("q")],
            "temperature": 0.2,
            "top_p": 0.9,
            "user": "user-7",
            "stream": True,
            "stream_options": {"include_usage": True},
            "top_k": 40,  # Anthropic-native, via extra_body
        }
    )
    assert (out["temperature"], out["top_p"], out["top_k"]) == (0.2, 0.9, 40)
    assert out["metadata"] == {"user_id": "user-7"}
    assert out["stream"] is True and "stream_options" not in out


SCHEMA = {"type": "object", "properties": {"a": {"type": "integer", "minimum": 1},
                                           "tags": {"type": ["array", "null"],
                                                    "items": {"type": "string"}}},
          "required": ["a", "tags"]}


def json_schema(schema=SCHEMA, name="answer"):
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


def test_json_schema_is_native_structured_output_on_models_that_have_it():
    out = translate({"messages": [user("q")], "response_format": json_schema()},
                    model="claude-sonnet-4-5")
    assert "tools" not in out and "system" not in out
    assert out["output_config"]["format"] == {"type": "json_schema", "schema": {
        "type": "object",
        "properties": {
            "a": {"type": "integer", "description": "{minimum: 1}"},
            "tags": {"anyOf": [{"type": "array", "items": {"type": "string"}},
                               {"type": "null"}]},
        },
        "additionalProperties": False,
        "required": ["a", "tags"],
    }}


@pytest.mark.parametrize("model", ["claude-3-5-sonnet-20241022", "claude-sonnet-4-0"])
def test_json_schema_is_the_forced_output_tool_on_older_models(model):
    out = translate({"messages": [{"role": "system", "content": "S"}, user("q")],
                     "response_format": json_schema()}, model=model)
    assert "output_config" not in out and out["system"] == "S"
    [tool] = out["tools"]
    assert tool["name"] == OUTPUT_TOOL and tool["input_schema"] == SCHEMA
    assert "`answer`" in tool["description"]
    assert out["tool_choice"] == {"type": "tool", "name": OUTPUT_TOOL}


def test_json_object_is_the_output_tool_even_on_native_models():
    out = translate({"messages": [user("q")], "response_format": {"type": "json_object"}},
                    model="claude-sonnet-4-6")
    assert out["tools"][0]["input_schema"] == {"type": "object"}
    assert out["tool_choice"]["type"] == "tool"
    assert "system" not in translate({"messages": [user("q")],
                                      "response_format": {"type": "text"}})


def test_output_tool_next_to_client_tools_is_chosen_among_them():
    weather = {"type": "function", "function": {"name": "weather", "parameters": {
        "type": "object", "properties": {}}}}
    out = translate({"messages": [user("q")], "tools": [weather], "parallel_tool_calls": False,
                     "response_format": {"type": "json_object"}}, model="claude-3-5-haiku")
    assert [t["name"] for t in out["tools"]] == ["weather", OUTPUT_TOOL]
    assert out["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert OUTPUT_TOOL in out["system"]
    forced = translate({"messages": [user("q")], "tools": [weather],
                        "tool_choice": {"type": "function", "function": {"name": "weather"}},
                        "response_format": {"type": "json_object"}}, model="claude-3-5-haiku")
    assert forced["tool_choice"] == {"type": "tool", "name": "weather"}


def test_client_tool_may_not_take_the_reserved_name():
    tool = {"type": "function", "function": {"name": OUTPUT_TOOL}}
    with pytest.raises(HelixError) as ei:
        translate({"messages": [user("q")], "tools": [tool]})
    assert ei.value.status == 400 and ei.value.param == "tools[0].function.name"


@pytest.mark.parametrize(("fmt", "param"), [
    ({"type": "json_schema"}, "response_format.json_schema"),
    ({"type": "json_schema", "json_schema": {"schema": SCHEMA}},
     "response_format.json_schema.name"),
    (json_schema({"type": "array"}), "response_format.json_schema.schema"),
])
def test_bad_response_formats_are_400s(fmt, param):
    with pytest.raises(HelixError) as ei:
        translate({"messages": [user("q")], "response_format": fmt})
    assert ei.value.status == 400 and ei.value.param == param


def test_prompt_technique_is_a_system_instruction():
    caps = Capabilities("prompt", "none")
    out = A.openai_to_anthropic_request(
        {"messages": [{"role": "system", "content": "S"}, user("q")],
         "response_format": json_schema()}, "claude-x", 4096, caps)
    assert out["system"].startswith("S\n\n") and "JSON object" in out["system"]
    assert json.dumps(SCHEMA, separators=(",", ":")) in out["system"]


@pytest.mark.parametrize("param", sorted(A.DROPPED_PARAMS))
def test_dropped_params_are_not_sent(param):
    assert param not in translate({"messages": [user("q")], param: 1})


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("n", 2),
        ("logprobs", True),
        ("top_logprobs", 3),
        ("logit_bias", {"50256": -100}),
        ("audio", {"voice": "alloy", "format": "wav"}),
        ("modalities", ["text", "audio"]),
        ("functions", [{"name": "f"}]),
        ("function_call", "auto"),
        ("web_search_options", {}),
    ],
)
def test_rejected_params_are_400_naming_the_param(param, value):
    with pytest.raises(HelixError) as ei:
        translate({"messages": [user("q")], param: value})
    assert ei.value.param == param and ei.value.code == "unsupported_parameter"
    assert ei.value.status == 400


def test_harmless_defaults_of_rejected_params_are_accepted():
    out = translate(
        {
            "messages": [user("q")],
            "n": 1,
            "logprobs": False,
            "logit_bias": {},
            "modalities": ["text"],
        }
    )
    assert not {"n", "logprobs", "logit_bias", "modalities"} & set(out)


def test_model_none_leaves_model_out_for_vertex():
    out = A.openai_to_anthropic_request({"messages": [user("q")]}, None, 100)
    assert "model" not in out and out["max_tokens"] == 100


def test_default_max_tokens_falls_back_to_4096_for_unknown_models():
    assert A.default_max_tokens("no-such-model-anywhere") == A.DEFAULT_MAX_TOKENS == 4096
    assert A.default_max_tokens("claude-3-5-sonnet-latest") > 0


# --- adapter, config, headers -----------------------------------------------------------


def registry(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return ModelRegistry(load_file(str(p), {}))


def test_env_only_mode_and_spec():
    spec = catalog.spec("anthropic")
    assert spec.default_base_url == "https://api.anthropic.com"
    cfg = load_env({"ANTHROPIC_API_KEY": "sk-ant-1234567890"})
    [p] = cfg.providers
    assert p.type == "anthropic" and "claude-sonnet-4-0" in [m.name for m in p.model_entries()]
    dep = ModelRegistry(cfg).resolve("claude-3-5-haiku-latest")[0]
    body = b'{"model":"claude-3-5-haiku-latest","messages":[{"role":"user","content":"hi"}]}'
    up = dep.adapter.chat_request(dep, decode_request(chat_request_decoder, body), body)
    assert (up.method, up.target) == (b"POST", b"/v1/messages")
    assert (b"x-api-key", b"sk-ant-1234567890") in up.headers
    assert (b"anthropic-version", b"2023-06-01") in up.headers
    assert (b"content-type", b"application/json") in up.headers
    assert not any(k == b"authorization" for k, _ in up.headers)
    doc = msgspec.json.decode(up.body)
    assert doc["model"] == "claude-3-5-haiku-latest" and doc["messages"] == [user("hi")]


def test_configured_version_base_path_and_alias(tmp_path):
    reg = registry(
        tmp_path,
        """
providers:
  - {name: a, type: anthropic, api_key: k, base_url: "http://127.0.0.1:9/proxy/",
     anthropic_version: "2024-10-22", models: [{name: fast, id: claude-3-5-haiku-20241022}]}
""",
    )
    dep = reg.resolve("fast")[0]
    body = b'{"model":"fast","messages":[{"role":"user","content":"hi"}]}'
    up = dep.adapter.chat_request(dep, decode_request(chat_request_decoder, body), body)
    assert up.target == b"/proxy/v1/messages"
    assert (b"anthropic-version", b"2024-10-22") in up.headers
    assert msgspec.json.decode(up.body)["model"] == "claude-3-5-haiku-20241022"


def test_embeddings_are_refused_with_param_model():
    dep = ModelRegistry(load_env({"ANTHROPIC_API_KEY": "k"})).resolve("claude-opus-4-0")[0]
    with pytest.raises(HelixError) as ei:
        dep.adapter.embeddings_request(dep, None, b'{"model":"claude-opus-4-0","input":"x"}')
    assert ei.value.kind is ErrorKind.INVALID_REQUEST and ei.value.param == "model"
    assert "embeddings" in ei.value.message


# --- errors -----------------------------------------------------------------------------


def _dep():
    return ModelRegistry(load_env({"ANTHROPIC_API_KEY": "k"})).resolve("claude-opus-4-0")[0]


@pytest.mark.parametrize(
    ("status", "etype", "otype", "retry", "kind"),
    [
        (
            400,
            "invalid_request_error",
            "invalid_request_error",
            Retry.NO,
            ErrorKind.UPSTREAM_STATUS,
        ),
        (401, "authentication_error", "authentication_error", Retry.NO, ErrorKind.UPSTREAM_STATUS),
        (403, "permission_error", "permission_error", Retry.NO, ErrorKind.UPSTREAM_STATUS),
        (404, "not_found_error", "invalid_request_error", Retry.NO, ErrorKind.UPSTREAM_STATUS),
        (429, "rate_limit_error", "rate_limit_error", Retry.YES, ErrorKind.RATE_LIMITED),
        (500, "api_error", "server_error", Retry.YES, ErrorKind.UPSTREAM_STATUS),
        (529, "overloaded_error", "server_error", Retry.YES, ErrorKind.UPSTREAM_STATUS),
    ],
)
def test_http_errors_keep_status_and_message(status, etype, otype, retry, kind):
    body = json.dumps({"type": "error", "error": {"type": etype, "message": f"m {status}"}})
    headers = [
        (b"retry-after", b"3"),
        (b"anthropic-ratelimit-requests-limit", b"50"),
        (b"set-cookie", b"x"),
    ]
    err = _dep().adapter.error(_dep(), status, headers, body.encode())
    assert (err.status, err.type, err.code, err.retry, err.kind) == (
        status,
        otype,
        etype,
        retry,
        kind,
    )
    assert json.loads(err.to_json()) == {
        "error": {"message": f"m {status}", "type": otype, "param": None, "code": etype}
    }
    assert (b"retry-after", b"3") in err.headers and (b"set-cookie", b"x") not in err.headers


def test_non_anthropic_error_body_is_wrapped():
    err = _dep().adapter.error(_dep(), 502, [], b"<html>bad gateway</html>")
    assert err.status == 502 and "bad gateway" in err.message and err.retry is Retry.YES


def test_mock_error_replies_decode_as_anthropic_errors():
    from helix.mock.anthropic_routes import error_reply

    for status in (400, 401, 429, 500, 529):
        reply = error_reply(status)
        err = _dep().adapter.error(_dep(), status, [], reply.body)
        assert err.status == status and err.code == json.loads(reply.body)["error"]["type"]
    assert json.loads(error_reply(529).body)["error"]["type"] == "overloaded_error"


# --- response translation ---------------------------------------------------------------


def _fixture_message(name):
    raw = (FIX / name).read_bytes()
    SDKMessage.model_validate_json(raw)  # the fixture is a real Message shape
    return raw


def test_text_response_with_cache_usage():
    raw = _fixture_message("message_text.json")
    out = A.anthropic_to_openai_response(json.loads(raw), "claude-3-5-sonnet", 1700000000)[0]
    ChatCompletion.model_validate(out)
    assert out["id"] == "chatcmpl-msg_013Zva2CMHLNnXjNJJKqJ2EF"
    assert out["object"] == "chat.completion" and out["created"] == 1700000000
    assert out["model"] == "claude-3-5-sonnet"
    choice = out["choices"][0]
    assert choice["message"]["content"] == "Hi! My name is Claude. How can I help?"
    assert choice["finish_reason"] == "stop" and "tool_calls" not in choice["message"]
    assert out["usage"] == {
        "prompt_tokens": 2095 + 2051 + 1000,
        "completion_tokens": 503,
        "total_tokens": 2095 + 2051 + 1000 + 503,
        "prompt_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 2051},
    }


def test_tool_use_response_via_adapter_bytes():
    raw = _fixture_message("message_tool_use.json")
    dep = _dep()
    out = json.loads(dep.adapter.chat_response(dep, raw))
    cc = ChatCompletion.model_validate(out)
    msg = cc.choices[0].message
    assert cc.choices[0].finish_reason == "tool_calls"
    assert msg.content == "I'll check the weather."
    assert [(c.id, c.function.name) for c in msg.tool_calls] == [
        ("toolu_01A09q90qw90lq917835lq9", "get_weather"),
        ("toolu_02NoInput", "ping_server"),
    ]
    assert json.loads(msg.tool_calls[0].function.arguments) == {
        "location": "San Francisco, CA",
        "unit": "celsius",
        "days": [1, 2],
    }
    assert msg.tool_calls[1].function.arguments == "{}"
    assert out["choices"][0]["message"]["reasoning_content"] == "The user wants the weather."
    assert out["model"] == "claude-opus-4-0" and out["created"] > 1700000000


def test_tool_only_response_has_null_content():
    doc = {
        "id": "msg_1",
        "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    out = A.anthropic_to_openai_response(doc, "m", 0)[0]
    assert out["choices"][0]["message"]["content"] is None


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
        (None, "stop"),
    ],
)
def test_stop_reasons(stop_reason, finish):
    doc = {"id": "msg_1", "content": [{"type": "text", "text": "x"}], "stop_reason": stop_reason}
    out = A.anthropic_to_openai_response(doc, "m", 0)[0]
    assert out["choices"][0]["finish_reason"] == finish
    ChatCompletion.model_validate(out)


def test_unreadable_response_is_upstream_protocol_error():
    dep = _dep()
    with pytest.raises(HelixError) as ei:
        dep.adapter.chat_response(dep, b'{"content": []}')
    assert ei.value.kind is ErrorKind.UPSTREAM_PROTOCOL


# --- stream translation -----------------------------------------------------------------


def sse_events(raw: bytes) -> list[dict]:
    out = []
    for block in raw.decode().split("\n\n"):
        data = [ln[6:] for ln in block.splitlines() if ln.startswith("data: ")]
        if data:
            out.append(json.loads("\n".join(data)))
    return out


def _validate_upstream_events(raw: bytes) -> None:
    for ev in sse_events(raw):
        if ev["type"] not in ("ping", "error"):  # not members of RawMessageStreamEvent
            EVENT.validate_python(ev)


def run_relay(raw: bytes, pieces: list[int] | None = None, include_usage=True):
    """Feed ``raw`` split at ``pieces`` offsets; (output bytes, error or None, relay)."""
    relay = A.AnthropicStreamRelay("claude-pub", 1700000000, OpenAIChunkSink(include_usage))
    cuts = sorted(set(pieces or []))
    out = []
    err = None
    prev = 0
    try:
        for cut in [*cuts, len(raw)]:
            out.append(relay.feed(raw[prev:cut]))
            prev = cut
        out.append(relay.close())
    except HelixError as exc:
        err = exc
    return b"".join(out), err, relay


def chunks_of(out: bytes) -> list[dict]:
    assert out.endswith(b"\n\n")
    events = [e for e in out.split(b"\n\n") if e]
    assert all(e.startswith(b"data: ") for e in events)
    docs = []
    for e in events:
        payload = e[6:]
        if payload == b"[DONE]":
            docs.append("[DONE]")
        else:
            doc = json.loads(payload)
            ChatCompletionChunk.model_validate(doc)
            docs.append(doc)
    return docs


def test_text_stream():
    raw = (FIX / "text.sse").read_bytes()
    _validate_upstream_events(raw)
    out, err, relay = run_relay(raw)
    assert err is None and relay.passthrough is False
    chunks = chunks_of(out)
    assert chunks[-1] == "[DONE]"
    body = chunks[:-1]
    assert {c["id"] for c in body} == {"chatcmpl-msg_01XFDUDYJgAACzvnptvVoYEL"}
    assert {(c["model"], c["created"], c["object"]) for c in body} == {
        ("claude-pub", 1700000000, "chat.completion.chunk")
    }
    assert body[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in body if c["choices"])
    assert text == "Hello, wörld! ✨ Bye."
    assert body[-2]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    usage = {
        "prompt_tokens": 135,
        "completion_tokens": 15,
        "total_tokens": 150,
        "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 10},
    }
    assert body[-1]["choices"] == [] and body[-1]["usage"] == usage
    assert relay.usage.to_openai() == usage


def test_stream_without_include_usage_still_records_usage():
    out, err, relay = run_relay((FIX / "text.sse").read_bytes(), include_usage=False)
    chunks = chunks_of(out)
    assert err is None and all(c == "[DONE]" or c["choices"] for c in chunks)
    assert relay.usage.tokens == 150


def test_tool_use_stream_indexes_calls_in_order():
    raw = (FIX / "tool_use.sse").read_bytes()
    _validate_upstream_events(raw)
    out, err, _ = run_relay(raw)
    assert err is None
    body = [c for c in chunks_of(out) if c != "[DONE]" and c["choices"]]
    deltas = [c["choices"][0]["delta"] for c in body]
    text = "".join(d.get("content") or "" for d in deltas)
    assert text == "Okay, let me check the weather."
    calls = [tc for d in deltas for tc in d.get("tool_calls", [])]
    firsts = [tc for tc in calls if "id" in tc]
    assert firsts == [
        {
            "index": 0,
            "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        },
        {
            "index": 1,
            "id": "toolu_02AbCdEf",
            "type": "function",
            "function": {"name": "get_time", "arguments": ""},
        },
    ]
    args = {
        i: "".join(tc["function"]["arguments"] for tc in calls if tc["index"] == i) for i in (0, 1)
    }
    assert json.loads(args[0]) == {"location": "San Francisco, CA", "unit": "fahrenheit"}
    assert json.loads(args[1]) == {"tz": "PST"}
    assert all(tc["function"]["arguments"] for tc in calls if "id" not in tc)  # no empty deltas
    assert body[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_thinking_stream_exposes_reasoning_content():
    raw = (FIX / "thinking.sse").read_bytes()
    _validate_upstream_events(raw)
    out, err, _ = run_relay(raw)
    assert err is None
    deltas = [c["choices"][0]["delta"] for c in chunks_of(out) if c != "[DONE]" and c["choices"]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == (
        "Let me work through this: 27 * 453 = 12231."
    )
    assert "".join(d.get("content") or "" for d in deltas) == "27 * 453 = 12,231"
    assert [c for c in chunks_of(out) if c != "[DONE]" and c["choices"]][-1]["choices"][0][
        "finish_reason"
    ] == "length"


def test_error_event_raises_retryable_helix_error():
    raw = (FIX / "error.sse").read_bytes()
    out, err, _ = run_relay(raw)
    assert err is not None and err.kind is ErrorKind.UPSTREAM_STATUS
    assert (err.status, err.code, err.retry) == (529, "overloaded_error", Retry.YES)
    assert json.loads(err.to_json())["error"]["message"] == "Overloaded"
    text = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks_of(out) if c["choices"]
    )
    assert text == "Partial answ"  # what came before the error was relayed, in one read too


def test_stream_cut_before_message_stop_is_a_protocol_error():
    raw = (FIX / "text.sse").read_bytes()
    cut = raw.index(b"event: message_delta")
    out, err, _ = run_relay(raw[:cut])
    assert err is not None and err.kind is ErrorKind.UPSTREAM_PROTOCOL
    assert b"[DONE]" not in out


def test_garbage_event_is_a_protocol_error():
    _, err, _ = run_relay(b"event: message_start\ndata: {not json\n\n")
    assert err is not None and err.kind is ErrorKind.UPSTREAM_PROTOCOL


@pytest.mark.parametrize("name", ["text.sse", "tool_use.sse", "thinking.sse", "error.sse"])
def test_crlf_line_endings_give_the_same_output(name):
    raw = (FIX / name).read_bytes()
    a = run_relay(raw)
    b = run_relay(raw.replace(b"\n", b"\r\n"))
    assert a[0] == b[0] and (a[1] is None) == (b[1] is None)


STREAMS = {
    name: (FIX / name).read_bytes()
    for name in ("text.sse", "tool_use.sse", "thinking.sse", "error.sse")
}
WHOLE = {name: run_relay(raw) for name, raw in STREAMS.items()}


@settings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from(sorted(STREAMS)),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=40),
)
def test_any_split_gives_identical_chunks(name, cuts):
    raw = STREAMS[name]
    out, err, relay = run_relay(raw, [c % (len(raw) + 1) for c in cuts])
    whole_out, whole_err, whole_relay = WHOLE[name]
    assert out == whole_out
    assert (err is None) == (whole_err is None)
    if err is not None:
        assert err.to_json() == whole_err.to_json() and err.status == whole_err.status
    assert relay.usage == whole_relay.usage


def test_byte_at_a_time_is_identical():
    raw = STREAMS["tool_use.sse"]
    assert run_relay(raw, list(range(len(raw))))[0] == WHOLE["tool_use.sse"][0]


# --- the mock speaks Anthropic's wire format (checked with the SDK) ----------------------


def _mock(body: dict, chunks: int = 3):
    return messages_create(
        MockRequest("POST", "/v1/messages", "", {}, b"", body), Controls(chunks=chunks)
    )


def test_mock_answers_translated_requests_in_sdk_valid_shapes():
    doc = {"model": "m", "messages": [user("please call tool now")], "tools": [TOOL]}
    req = translate(doc, "claude-x")
    reply = _mock(req)
    SDKMessage.model_validate_json(reply.body)
    out = A.anthropic_to_openai_response(message_decoder.decode(reply.body), "pub", 0)[0]
    assert json.loads(out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]) == {
        "city": "mock"
    }
    stream = _mock({**req, "stream": True})
    raw = b"".join(stream.events)
    _validate_upstream_events(raw)
    assert all(e.startswith(b"event: ") for e in stream.events)
    text_reply = _mock(translate({"messages": [user("hello there")], "stream": True}))
    out, err, _ = run_relay(b"".join(text_reply.events))
    assert err is None
    text = "".join(
        c["choices"][0]["delta"].get("content") or ""
        for c in chunks_of(out)
        if c != "[DONE]" and c["choices"]
    )
    assert text == "mock reply to: hello there"
