"""The recording upstream's scripted answers, talked to directly (no Envoy): each answers like
the real API it stands for, records what it sent and the usage it reported, and reads chunked
request bodies. A failure here is about the harness, not the filter."""

import gzip
import json
import socket
import time

import pytest

from harness.answers import answer, parse, pieces
from harness.client import Client
from harness.servers import RecordingUpstream
from harness.wait import wait_for


@pytest.fixture(scope="module")
def model_upstream():
    with RecordingUpstream() as server:
        yield server


@pytest.fixture
def direct(model_upstream):
    return Client(model_upstream.port)


def sse_data(body: bytes) -> list:
    """The JSON of every ``data:`` line ([DONE] left out), in order."""
    return [json.loads(line[len(b"data: "):]) for line in body.split(b"\n")
            if line.startswith(b"data: ") and line != b"data: [DONE]"]


def sse_event_names(body: bytes) -> list:
    return [line[len(b"event: "):].decode() for line in body.split(b"\n")
            if line.startswith(b"event: ")]


CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def test_openai_json_reports_prompt_completion_and_cached_tokens(direct, model_upstream):
    resp = direct.chat(body=CHAT, headers=answer("openai-json", in_=120, out=30, cached=100))
    assert resp.status == 200
    usage = resp.json()["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (120, 30)
    assert usage["total_tokens"] == 150
    assert usage["prompt_tokens_details"]["cached_tokens"] == 100
    answered = model_upstream.answered(resp.request_id)
    assert answered.reported == (120, 30) and answered.completed
    assert bytes(answered.body) == resp.body


def test_openai_sse_sends_usage_only_when_the_request_asks_for_it(direct, model_upstream):
    stream = dict(CHAT, stream=True)
    plain = direct.chat(body=stream, headers=answer("openai-sse", in_=5, out=3))
    assert plain.header("content-type").startswith("text/event-stream")
    assert plain.body.endswith(b"data: [DONE]\n\n")
    chunks = sse_data(plain.body)
    assert all("usage" not in c for c in chunks)
    assert model_upstream.answered(plain.request_id).reported is None

    asked = direct.chat(body=dict(stream, stream_options={"include_usage": True}),
                        headers=answer("openai-sse", in_=5, out=3))
    chunks = sse_data(asked.body)
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 5
    assert chunks[-1]["usage"]["completion_tokens"] == 3
    assert model_upstream.answered(asked.request_id).reported == (5, 3)


def test_responses_json_and_sse(direct, model_upstream):
    body = {"model": "gpt-4o", "input": "hi"}
    whole = direct.post("/v1/responses", body=body,
                        headers=answer("responses-json", in_=40, out=9))
    assert whole.json()["object"] == "response"
    assert whole.json()["usage"]["input_tokens"] == 40
    assert whole.json()["usage"]["output_tokens"] == 9
    streamed = direct.post("/v1/responses", body=dict(body, stream=True),
                           headers=answer("responses-sse", in_=40, out=9))
    names = sse_event_names(streamed.body)
    assert names[0] == "response.created" and names[-1] == "response.completed"
    last = sse_data(streamed.body)[-1]
    assert last["response"]["usage"]["input_tokens"] == 40
    assert sse_data(streamed.body)[0]["response"]["usage"] is None
    assert model_upstream.answered(streamed.request_id).reported == (40, 9)


def test_embeddings_report_prompt_tokens_only(direct, model_upstream):
    resp = direct.post("/v1/embeddings", body={"model": "text-embedding-3-small",
                                                "input": "hello"},
                       headers=answer("embeddings-json", in_=8))
    assert resp.json()["usage"] == {"prompt_tokens": 8, "total_tokens": 8}
    assert model_upstream.answered(resp.request_id).reported == (8, 0)


def test_anthropic_json_and_sse(direct, model_upstream):
    body = {"model": "claude-sonnet-4", "max_tokens": 100,
            "messages": [{"role": "user", "content": "hi"}]}
    whole = direct.post("/v1/messages", body=body,
                        headers=answer("anthropic-json", in_=25, out=15))
    assert whole.json()["type"] == "message"
    assert whole.json()["usage"] == {"input_tokens": 25, "output_tokens": 15}
    streamed = direct.post("/v1/messages", body=dict(body, stream=True),
                           headers=answer("anthropic-sse", in_=25, out=15))
    names = sse_event_names(streamed.body)
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    data = sse_data(streamed.body)
    assert data[0]["message"]["usage"] == {"input_tokens": 25, "output_tokens": 1}
    assert data[-2]["usage"] == {"output_tokens": 15}
    assert model_upstream.answered(streamed.request_id).reported == (25, 15)


def test_error_and_text_answers_report_no_usage(direct, model_upstream):
    error = direct.chat(body=CHAT, headers=answer("error"))
    assert error.status == 500 and "usage" not in error.json()
    assert error.json()["error"]["type"] == "server_error"
    text = direct.chat(body=CHAT, headers=answer("text"))
    assert text.status == 200 and text.header("content-type").startswith("text/plain")
    for resp in (error, text):
        assert model_upstream.answered(resp.request_id).reported is None


def test_big_json_is_padded_before_its_usage(direct):
    resp = direct.chat(body=CHAT, headers=answer("big-json", pad=5000, in_=3, out=4))
    assert len(resp.body) > 5000
    assert resp.body.index(b'"padding"') < resp.body.index(b'"usage"')
    assert resp.json()["usage"]["prompt_tokens"] == 3


def test_stream_written_in_pieces_arrives_whole(direct, model_upstream):
    resp = direct.post("/v1/messages", body={"model": "claude-sonnet-4", "stream": True},
                       headers=answer("anthropic-sse", split=3, chunks=5))
    assert bytes(model_upstream.answered(resp.request_id).body) == resp.body
    assert pieces(b"abcdefg", 3) == [b"abc", b"de", b"fg"]


def test_held_answer_waits_for_release(direct, model_upstream):
    stream = direct.open_stream(body=dict(CHAT, stream=True),
                                headers=answer("anthropic-sse", hold_after=1, in_=9))
    try:
        stream.read_until(lambda body: b"message_start" in body)
        answered = model_upstream.answered(stream.request_id)
        wait_for(lambda: answered.holding, message="the answer to hold")
        assert answered.reported == (9, 1)
        assert model_upstream.holding() == [stream.request_id]
        model_upstream.release(stream.request_id)
        stream.read_until(lambda _: stream.ended)
    finally:
        stream.close()
    assert model_upstream.wait_finished(stream.request_id).completed


def test_held_answer_ends_when_the_client_goes_away(direct, model_upstream):
    stream = direct.open_stream(body=dict(CHAT, stream=True),
                                headers=answer("openai-sse", hold_after=2))
    stream.read_until(lambda body: body.count(b"data: ") >= 2)
    stream.close()
    answered = model_upstream.wait_finished(stream.request_id)
    assert not answered.completed and answered.events_sent == 2


def test_cut_stream_ends_without_the_final_chunk(direct, model_upstream):
    stream = direct.open_stream(body=dict(CHAT, stream=True),
                                headers=answer("openai-sse", cut_after=2))
    stream.read_until(lambda _: stream.ended)
    assert stream.broken
    answered = model_upstream.wait_finished(stream.request_id)
    assert answered.cut and not answered.completed


def test_chunked_request_body_is_read(model_upstream):
    body = json.dumps(CHAT).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: up\r\nx-request-id: chunked-1\r\n"
            f"transfer-encoding: chunked\r\ncontent-type: application/json\r\n"
            f"connection: close\r\n\r\n").encode()
    framed = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces(body, 3)) + b"0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", model_upstream.port), timeout=10) as sock:
        sock.sendall(head + framed)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200")
    assert model_upstream.received("chunked-1").body == body


def test_unknown_answer_is_an_error_not_a_default(direct):
    assert direct.chat(headers={"x-test-answer": "openai-jsn"}).status == 400
    with pytest.raises(ValueError):
        parse("openai-json;inn=3")


def test_canned_reply_for_one_request(direct, model_upstream):
    model_upstream.reply_for("canned-1", {"result": {"collections": []}})
    resp = direct.get("/qdrant/collections", request_id="canned-1")
    assert resp.json() == {"result": {"collections": []}}


def test_slow_answer_is_delayed(direct, model_upstream):
    started = time.monotonic()
    resp = direct.chat(body=CHAT, headers=answer("openai-json", delay_ms=300))
    assert resp.status == 200
    assert time.monotonic() - started >= 0.3
    assert model_upstream.answered(resp.request_id).completed


def test_whole_answer_is_compressed_when_the_client_accepts_gzip(direct, model_upstream):
    resp = direct.chat(body=CHAT, headers=dict(answer("openai-json", in_=3, out=4),
                                               **{"accept-encoding": "gzip, deflate"}))
    assert resp.header("content-encoding") == "gzip"
    assert json.loads(gzip.decompress(resp.body))["usage"]["prompt_tokens"] == 3
    assert model_upstream.answered(resp.request_id).encoding == "gzip"
