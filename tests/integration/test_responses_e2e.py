"""The official openai SDK's Responses API -> a multi-worker helix -> every provider's mock.

OpenAI is native (body as sent, model resolved; the stream relayed as sent; stored
responses live at the provider and Helix routes GET/DELETE/continuations back to it).
Anthropic, Gemini and Bedrock are translated through the chat hub, with conversation
state kept by Helix: SQLite shared by the workers of an instance, Redis across
instances; tenant-scoped; an unknown id is a 404.
"""

from __future__ import annotations

import base64
import json

import openai
import pytest

from helix.mock import MockProcess
from tests.helpers import HelixProcess
from tests.limit.redis_server import RedisServer

KEY = "sk-upstream-responses-99"
PNG = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8"
       "z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
WEATHER = {
    "type": "function", "name": "get_weather", "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"], "additionalProperties": False},
    "strict": True,
}
TRANSLATED = ["claude-sonnet-4-5", "gemini-2.5-flash", "bedrock-llama"]


def providers(mock_url: str) -> str:
    return f"""
providers:
  - name: oai
    type: openai
    base_url: {mock_url}/v1
    api_key: {KEY}
    models: [gpt-4o-mini, {{name: gpt-alias, id: gpt-4.1-mini}}]
  - name: anthropic
    type: anthropic
    base_url: {mock_url}
    api_key: {KEY}
    models: [claude-sonnet-4-5]
  - name: gem
    type: gemini
    base_url: {mock_url}
    api_key: {KEY}
    models: [gemini-2.5-flash]
  - name: aws
    type: bedrock
    region: us-east-1
    base_url: {mock_url}
    aws_access_key_id: AKIDEXAMPLE
    aws_secret_access_key: {KEY}
    models: [{{name: bedrock-llama, id: meta.llama3-70b-instruct-v1:0}}]
"""


@pytest.fixture(scope="module")
def mock():
    with MockProcess("--chunks", "3") as proc:
        yield proc


@pytest.fixture(scope="module")
def helix(mock, tmp_path_factory):
    state = tmp_path_factory.mktemp("state")
    cfg = providers(mock.url) + f"responses: {{state_dir: {state}}}\n"
    with HelixProcess(cfg, workers=2) as proc:
        yield proc


def client(helix, key: str = "tenant-a-key") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{helix.port}/v1", api_key=key,
                         max_retries=0, timeout=20)


@pytest.fixture
def c(helix, mock):
    mock.clear()
    with client(helix) as cl:
        yield cl


def upstream(mock) -> list[dict]:
    return mock.requests()


# --- native: OpenAI ------------------------------------------------------------------------


def test_openai_pass_through_body_as_sent(c, mock):
    r = c.responses.create(
        model="gpt-alias", input="Hello native", instructions="be brief",
        tools=[{"type": "web_search"}], include=["reasoning.encrypted_content"],
        reasoning={"effort": "low"}, extra_body={"future_field": {"x": 1}},
    )
    assert r.output_text == "mock reply to: Hello native"
    (req,) = upstream(mock)
    assert req["path"] == "/v1/responses"
    sent = json.loads(base64.b64decode(req["body_b64"]))
    assert sent["model"] == "gpt-4.1-mini"
    assert sent["tools"] == [{"type": "web_search"}] and sent["future_field"] == {"x": 1}
    assert sent["include"] == ["reasoning.encrypted_content"]
    assert req["headers"]["authorization"] == f"Bearer {KEY}"


def test_openai_stream_relayed_and_state_at_the_provider(c, mock):
    with c.responses.stream(model="gpt-4o-mini", input="Hello stream") as s:
        kinds = [e.type for e in s]
        final = s.get_final_response()
    assert final.output_text == "mock reply to: Hello stream"
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    # Continuation, retrieval, input items and deletion reach the provider that holds it.
    nxt = c.responses.create(model="gpt-4o-mini", input="and then", previous_response_id=final.id)
    assert nxt.previous_response_id == final.id
    got = c.responses.retrieve(final.id)
    assert got.id == final.id and got.output_text == final.output_text
    items = c.responses.input_items.list(final.id)
    assert [i.type for i in items.data] == ["message"]
    c.responses.delete(final.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(final.id)
    paths = [(r["method"], r["path"]) for r in upstream(mock)]
    assert ("GET", f"/v1/responses/{final.id}") in paths
    assert ("DELETE", f"/v1/responses/{final.id}") in paths


# --- translated ----------------------------------------------------------------------------


@pytest.mark.parametrize("model", TRANSLATED)
def test_translated_text_instructions_and_image(c, mock, model):
    r = c.responses.create(model=model, instructions="be brief", input=[
        {"role": "user", "content": [{"type": "input_text", "text": "Describe this"},
                                     {"type": "input_image", "image_url": PNG}]}])
    assert r.object == "response" and r.status == "completed"
    assert r.output_text.startswith("mock reply to:") and "Describe this" in r.output_text
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    assert r.instructions == "be brief" and r.model == model
    assert all("tenant-a-key" not in json.dumps(q["headers"]) for q in upstream(mock))


@pytest.mark.parametrize("model", TRANSLATED)
def test_translated_stream_event_sequence(c, model):
    events = []
    with c.responses.stream(model=model, input="Hello events") as s:
        for e in s:
            events.append(e)
        final = s.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    for k in ("response.output_item.added", "response.content_part.added",
              "response.output_text.delta", "response.output_text.done",
              "response.content_part.done", "response.output_item.done"):
        assert k in kinds, kinds
    seqs = [e.sequence_number for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert final.output_text == "mock reply to: Hello events"


@pytest.mark.parametrize("model", TRANSLATED)
def test_function_call_round_trip_with_streamed_arguments(c, model):
    with c.responses.stream(model=model, tools=[WEATHER], input="call tool please") as s:
        deltas = [e for e in s if e.type == "response.function_call_arguments.delta"]
        first = s.get_final_response()
    (call,) = [o for o in first.output if o.type == "function_call"]
    assert call.name == "get_weather" and "city" in json.loads(call.arguments)
    assert deltas and "".join(d.delta for d in deltas) == call.arguments
    second = c.responses.create(model=model, tools=[WEATHER], previous_response_id=first.id,
                                input=[{"type": "function_call_output", "call_id": call.call_id,
                                        "output": "sunny"}])
    assert second.status == "completed" and second.output_text
    assert not [o for o in second.output if o.type == "function_call"]


def test_history_reaches_the_provider_and_survives_workers(c, mock):
    r = c.responses.create(model="claude-sonnet-4-5", input="my name is Ada")
    last = r
    for i in range(4):  # two workers: some turns land on the other one
        last = c.responses.create(model="claude-sonnet-4-5", input=f"turn {i}",
                                  previous_response_id=last.id)
    sent = [q["body"] for q in upstream(mock) if q["path"] == "/v1/messages"][-1]
    texts = json.dumps(sent["messages"])
    assert "my name is Ada" in texts and "turn 3" in texts and "mock reply to" in texts
    assert len(sent["messages"]) == 9  # 5 user turns, 4 assistant answers between them


def test_max_output_tokens_is_incomplete(c):
    r = c.responses.create(model="claude-sonnet-4-5", input="a long reply please",
                           max_output_tokens=2)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"


def test_json_schema_format_reaches_gemini(c, mock):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}},
              "required": ["answer"], "additionalProperties": False}
    c.responses.create(model="gemini-2.5-flash", input="json please", text={
        "format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}})
    (req,) = [q for q in upstream(mock) if "generateContent" in q["path"]]
    gen = req["body"]["generationConfig"]
    assert gen["responseMimeType"] == "application/json"
    assert "responseSchema" in gen or "responseJsonSchema" in gen


def test_built_in_tool_to_non_openai_is_a_clear_400(c):
    with pytest.raises(openai.BadRequestError) as ei:
        c.responses.create(model="claude-sonnet-4-5", input="search",
                           tools=[{"type": "web_search"}])
    assert ei.value.body["param"] == "tools[0].type"
    assert "web_search" in ei.value.body["message"]


def test_unknown_previous_response_is_404(c):
    with pytest.raises(openai.NotFoundError) as ei:
        c.responses.create(model="claude-sonnet-4-5", input="hi",
                           previous_response_id="resp_does_not_exist")
    assert ei.value.body["code"] == "previous_response_not_found"


def test_stored_responses_are_tenant_scoped(helix, c):
    r = c.responses.create(model="gemini-2.5-flash", input="secret of tenant a")
    assert c.responses.retrieve(r.id).output_text == r.output_text
    items = c.responses.input_items.list(r.id)
    assert items.data[0].content[0].text == "secret of tenant a"
    with client(helix, "tenant-b-key") as other:
        with pytest.raises(openai.NotFoundError):
            other.responses.retrieve(r.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.create(model="gemini-2.5-flash", input="x", previous_response_id=r.id)
    c.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(r.id)


def test_store_false_keeps_nothing(c):
    r = c.responses.create(model="claude-sonnet-4-5", input="forget me", store=False)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(r.id)


# --- two instances sharing Redis -------------------------------------------------------------


def test_conversation_continues_on_another_instance_through_redis(mock):
    with RedisServer() as redis:
        cfg = providers(mock.url) + f"responses: {{store: redis, redis_url: {redis.url}}}\n"
        with HelixProcess(cfg, workers=1) as a, HelixProcess(cfg, workers=1) as b, \
                client(a) as ca, client(b) as cb:
            first = ca.responses.create(model="bedrock-llama", input="remember Grace")
            nxt = cb.responses.create(model="bedrock-llama", input="who?",
                                      previous_response_id=first.id)
            assert nxt.status == "completed"
            assert cb.responses.retrieve(first.id).output_text == first.output_text
            with client(b, "someone-else") as stranger, pytest.raises(openai.NotFoundError):
                stranger.responses.retrieve(first.id)
