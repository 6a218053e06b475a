"""Model-API answers for the recording upstream, shaped like the real OpenAI and Anthropic
APIs: a test picks one with the request header ``x-test-answer``, e.g.

    x-test-answer: openai-sse;in=120;out=30;delay_ms=0

Kinds (the first item):

- ``openai-json``     chat completion, ``usage.prompt_tokens`` / ``completion_tokens`` and
                      ``prompt_tokens_details.cached_tokens``
- ``openai-sse``      chat completion chunks; the final ``{"choices": [], "usage": {...}}``
                      chunk only when the request body said ``stream_options.include_usage:
                      true`` (then every chunk carries ``"usage": null``, like the real API)
- ``responses-json``  OpenAI Responses API object, ``usage.input_tokens`` / ``output_tokens``
- ``responses-sse``   Responses stream, usage in ``event: response.completed``
- ``embeddings-json`` embeddings list, ``usage.prompt_tokens`` only
- ``anthropic-json``  Messages API object, ``usage.input_tokens`` / ``output_tokens``
- ``anthropic-sse``   ``message_start`` (``message.usage.input_tokens`` and an output count of
                      1), content deltas, ``message_delta`` with the cumulative
                      ``usage.output_tokens``, ``message_stop``
- ``gemini-json``     Gemini ``generateContent``: ``usageMetadata.promptTokenCount`` (``in``),
                      ``candidatesTokenCount`` (``out``), ``thoughtsTokenCount`` (``reasoning``,
                      billed beside ``out``), ``cachedContentTokenCount`` (``cached``), and
                      ``modelVersion``
- ``gemini-sse``      ``streamGenerateContent?alt=sse``: one answer per event, the prompt count in
                      each, the full ``usageMetadata`` in the last
- ``gemini-array``    ``streamGenerateContent`` without ``alt=sse``: the same answers as one JSON
                      array (``[{...}\r\n,{...}]``), written answer by answer
- ``bedrock-json``    Bedrock ``Converse``: ``usage.inputTokens`` (``in``), ``outputTokens``,
                      ``cacheReadInputTokens`` (``cached``), ``cacheWriteInputTokens``
                      (``written``)
- ``bedrock-stream``  ``ConverseStream``: an AWS event stream (``harness.eventstream``, CRCs
                      computed), ``contentBlockDelta`` events, usage in the ``metadata`` event
- ``bedrock-invoke-stream`` ``InvokeModelWithResponseStream`` of an Anthropic model: the events
                      of ``anthropic-sse``, base64 in ``chunk`` events
- ``error``           500 (``status=``) with an OpenAI error object, no usage
- ``text``            200 ``text/plain``, no usage
- ``big-json``        a chat completion padded by ``pad=`` bytes before its usage

Options: ``in``, ``out``, ``cached`` (prompt-cache reads), ``written`` (Anthropic prompt-cache
writes), ``reasoning`` (OpenAI reasoning tokens, part of ``out``) (token counts), ``model``, ``status``, ``chunks`` (content
events of a stream), ``delay_ms`` (before answering), ``split`` (write every stream event in
that many pieces), ``gap_ms`` (pause between stream writes, so Envoy reads them separately),
``hold`` (1: wait until the test releases the request before answering), ``hold_after=N`` (a
stream waits for the release after N events), ``cut_after=N`` (a stream's connection is cut
after N events), ``pad``, ``early`` (1: answer before reading the request body, then close
the connection, as servers do for early errors), ``trailers`` (1: send the body chunked and
end it with a trailer block), ``honour`` (1: the output is the request's output limit, the
largest of ``max_tokens``, ``max_completion_tokens`` and ``max_output_tokens``, times ``n``,
as a model that writes up to its limit; ``out`` when the body names none).

``reported`` of every event is the usage the upstream has reported once that event is out,
as the billing APIs mean it: (input tokens, output tokens) with OpenAI's input counts
including cached tokens and Anthropic's cache reads and writes added to its input. ``None``
until some usage was sent.
"""

import json
import time
import uuid
from dataclasses import dataclass, field

from . import eventstream

ANSWER_HEADER = "x-test-answer"

KINDS = ("openai-json", "openai-sse", "responses-json", "responses-sse", "embeddings-json",
         "anthropic-json", "anthropic-sse", "error", "text", "big-json", "object",
         "gemini-json", "gemini-sse", "gemini-array", "bedrock-json", "bedrock-stream",
         "bedrock-invoke-stream")

# Answers written event by event (the others are one body).
STREAMS = ("openai-sse", "responses-sse", "anthropic-sse", "gemini-sse", "gemini-array",
           "bedrock-stream", "bedrock-invoke-stream")

# The id prefixes the providers mint, by kind (``object`` takes ``prefix=``).
ID_PREFIXES = {"openai": "chatcmpl-", "big": "chatcmpl-", "responses": "resp_",
               "anthropic": "msg_", "gemini": "", "bedrock": "msg_bdrk_"}

DEFAULT_MODELS = {
    "openai": "gpt-4o",
    "responses": "gpt-4o",
    "embeddings": "text-embedding-3-small",
    "anthropic": "claude-sonnet-4",
    "gemini": "gemini-2.0-flash-001",
    "bedrock": "claude-3-5-haiku-20241022",
}

WORDS = ["Hello", " from", " the", " recording", " upstream", ".", " More", " words", " here"]


@dataclass
class AnswerSpec:
    kind: str
    input: int = 12
    output: int = 7
    cached: int = 0
    model: str = None
    status: int = None
    chunks: int = 3
    delay_ms: int = 0
    split: int = 1
    gap_ms: int = 0
    hold: bool = False
    hold_after: int = None
    cut_after: int = None
    pad: int = 0
    written: int = 0
    honour: bool = False
    reasoning: int = 0
    early: bool = False
    trailers: bool = False
    prefix: str = "obj_"
    id_field: str = "id"
    object_id: str = ""  # minted for the answer

    @property
    def stream(self) -> bool:
        return self.kind in STREAMS


_INT_OPTIONS = {"in": "input", "out": "output", "cached": "cached", "status": "status",
                "chunks": "chunks", "delay_ms": "delay_ms", "split": "split",
                "gap_ms": "gap_ms", "hold_after": "hold_after", "cut_after": "cut_after",
                "pad": "pad", "written": "written", "reasoning": "reasoning"}


def parse(value: str) -> AnswerSpec:
    """Parses an ``x-test-answer`` value; raises ValueError for anything unknown (a typo in a
    test must not silently become the default answer)."""
    kind, *options = [part.strip() for part in value.split(";") if part.strip()]
    if kind not in KINDS:
        raise ValueError(f"unknown answer kind {kind!r}")
    spec = AnswerSpec(kind)
    for option in options:
        name, sep, raw = option.partition("=")
        if not sep:
            raise ValueError(f"answer option {option!r} needs a value")
        if name in _INT_OPTIONS:
            setattr(spec, _INT_OPTIONS[name], int(raw))
        elif name in ("model", "prefix", "id_field"):
            setattr(spec, name, raw)
        elif name in ("hold", "early", "trailers", "honour"):
            setattr(spec, name, raw not in ("0", "false"))
        else:
            raise ValueError(f"unknown answer option {name!r}")
    return spec


def answer(kind: str, **options) -> dict:
    """The ``x-test-answer`` header for a request: ``answer("openai-sse", in_=120, out=30)``
    (``in_`` because ``in`` is a keyword)."""
    parts = [kind]
    for name, value in options.items():
        name = name.rstrip("_")
        if isinstance(value, bool):
            value = int(value)
        parts.append(f"{name}={value}")
    return {ANSWER_HEADER: ";".join(parts)}


@dataclass
class Event:
    data: bytes
    reported: tuple = None  # usage reported once this event is out, or None


@dataclass
class Plan:
    status: int
    content_type: str
    events: list  # one Event for a whole JSON body
    model: str
    stream: bool
    object_id: str  # the id of what the answer says it created


def request_wants_usage(body: bytes) -> bool:
    """Whether a chat request asks for the final usage chunk (``stream_options.include_usage``
    is ``true``), as the OpenAI API decides it."""
    try:
        request = json.loads(body)
    except ValueError:
        return False
    options = request.get("stream_options") if isinstance(request, dict) else None
    return isinstance(options, dict) and options.get("include_usage") is True


# Keys whose string values are generated text in stream deltas (as the filter counts them).
TEXT_KEYS = {"content", "text", "delta", "arguments", "refusal", "partial_json", "thinking",
             "reasoning_content"}


def delivered_tokens(stream: bytes) -> int:
    """The filter's lower estimate of the output an SSE stream delivered: at least one token
    per event carrying generated text, and one per 4 bytes of that text (JSON string bytes)."""
    events, text_bytes = 0, 0

    def walk(value):
        found = 0
        if isinstance(value, dict):
            for key, item in value.items():
                if key in TEXT_KEYS and isinstance(item, str):
                    found += len(json.dumps(item)) - 2
                else:
                    found += walk(item)
        elif isinstance(value, list):
            found += sum(walk(item) for item in value)
        return found

    for block in stream.replace(b"\r\n", b"\n").split(b"\n\n"):
        data = b"\n".join(line[5:].lstrip(b" ") if line.startswith(b"data:") else b""
                          for line in block.split(b"\n") if line.startswith(b"data"))
        try:
            found = walk(json.loads(data))
        except ValueError:
            continue
        if found:
            events += 1
            text_bytes += found
    return max(events, -(-text_bytes // 4))


def requested_model(body: bytes):
    """The request body's ``model``, when it names one (providers answer with it)."""
    try:
        request = json.loads(body)
    except ValueError:
        return None
    model = request.get("model") if isinstance(request, dict) else None
    return model if isinstance(model, str) and model else None


def requested_output(body: bytes):
    """The output a request allows: its largest output limit times ``n``; None without one."""
    try:
        request = json.loads(body)
    except ValueError:
        return None
    if not isinstance(request, dict):
        return None
    limits = [request[k] for k in ("max_tokens", "max_completion_tokens", "max_output_tokens")
              if isinstance(request.get(k), int)]
    choices = request.get("n") if isinstance(request.get("n"), int) else 1
    return max(limits) * max(choices, 1) if limits else None


def plan(spec: AnswerSpec, request_body: bytes) -> Plan:
    if spec.honour:
        allowed = requested_output(request_body)
        spec.output = spec.output if allowed is None else allowed
    family = spec.kind.split("-")[0]
    # Unique, like the providers': objects minted for one tenant never collide with another's.
    spec.object_id = ID_PREFIXES.get(family, spec.prefix) + uuid.uuid4().hex[:24]
    model = spec.model or requested_model(request_body) or DEFAULT_MODELS.get(family, "gpt-4o")
    build = _BUILDERS[spec.kind]
    status, content_type, events = build(spec, model, request_body)
    if spec.status is not None:
        status = spec.status
    return Plan(status, content_type, events, model, spec.stream, spec.object_id)


def _json(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _words(count):
    return [WORDS[i % len(WORDS)] for i in range(max(count, 0))]


def _openai_usage(spec):
    return {"prompt_tokens": spec.input, "completion_tokens": spec.output,
            "total_tokens": spec.input + spec.output,
            "prompt_tokens_details": {"cached_tokens": spec.cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": spec.reasoning, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0}}


def _chat_completion(spec, model, padding=None):
    body = {"id": spec.object_id, "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": "".join(_words(3)),
                                     "refusal": None}}]}
    if padding is not None:
        body["padding"] = padding  # before usage: a reader must get past it
    body["usage"] = _openai_usage(spec)
    body["system_fingerprint"] = "fp_rec"
    return body


def _openai_json(spec, model, _request):
    return 200, "application/json", [Event(_json(_chat_completion(spec, model)),
                                           (spec.input, spec.output))]


def _big_json(spec, model, _request):
    body = _json(_chat_completion(spec, model, padding="x" * max(spec.pad, 0)))
    return 200, "application/json", [Event(body, (spec.input, spec.output))]


def _sse(data: bytes, event: str = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + data + b"\n\n"


def _openai_sse(spec, model, request):
    with_usage = request_wants_usage(request)
    created = int(time.time())

    def chunk(delta, finish=None):
        value = {"id": spec.object_id, "object": "chat.completion.chunk", "created": created,
                 "model": model, "system_fingerprint": "fp_rec",
                 "choices": [{"index": 0, "delta": delta, "logprobs": None,
                              "finish_reason": finish}]}
        if with_usage:
            value["usage"] = None
        return Event(_sse(_json(value)))

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    events += [chunk({"content": word}) for word in _words(spec.chunks)]
    events.append(chunk({}, "stop"))
    if with_usage:
        final = {"id": spec.object_id, "object": "chat.completion.chunk", "created": created,
                 "model": model, "system_fingerprint": "fp_rec", "choices": [],
                 "usage": _openai_usage(spec)}
        events.append(Event(_sse(_json(final)), (spec.input, spec.output)))
    events.append(Event(b"data: [DONE]\n\n"))
    return 200, "text/event-stream; charset=utf-8", events


def _responses_object(spec, model, status, usage):
    return {"id": spec.object_id, "object": "response", "created_at": int(time.time()),
            "status": status, "model": model,
            "output": [] if status != "completed" else [{
                "type": "message", "id": "msg_rec", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": "".join(_words(spec.chunks)),
                             "annotations": []}]}],
            "usage": usage}


def _responses_usage(spec):
    return {"input_tokens": spec.input, "input_tokens_details": {"cached_tokens": spec.cached},
            "output_tokens": spec.output,
            "output_tokens_details": {"reasoning_tokens": spec.reasoning},
            "total_tokens": spec.input + spec.output}


def _responses_json(spec, model, _request):
    body = _responses_object(spec, model, "completed", _responses_usage(spec))
    return 200, "application/json", [Event(_json(body), (spec.input, spec.output))]


def _responses_sse(spec, model, _request):
    seq = iter(range(10_000))

    def event(name, value):
        return _sse(_json(dict({"type": name, "sequence_number": next(seq)}, **value)), name)

    events = [Event(event("response.created",
                          {"response": _responses_object(spec, model, "in_progress", None)}))]
    events += [Event(event("response.output_text.delta",
                           {"item_id": "msg_rec", "output_index": 0, "content_index": 0,
                            "delta": word}))
               for word in _words(spec.chunks)]
    done = _responses_object(spec, model, "completed", _responses_usage(spec))
    events.append(Event(event("response.completed", {"response": done}),
                        (spec.input, spec.output)))
    return 200, "text/event-stream; charset=utf-8", events


def _embeddings_json(spec, model, _request):
    body = {"object": "list", "model": model,
            "data": [{"object": "embedding", "index": 0,
                      "embedding": [0.0023, -0.0093, 0.0158, -0.0071]}],
            "usage": {"prompt_tokens": spec.input, "total_tokens": spec.input}}
    return 200, "application/json", [Event(_json(body), (spec.input, 0))]


def _anthropic_usage(spec, output):
    usage = {"input_tokens": spec.input, "output_tokens": output}
    if spec.cached or spec.written:
        usage["cache_read_input_tokens"] = spec.cached
        usage["cache_creation_input_tokens"] = spec.written
    return usage


def _anthropic_json(spec, model, _request):
    body = {"id": spec.object_id, "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": "".join(_words(3))}],
            "stop_reason": "end_turn", "stop_sequence": None,
            "usage": _anthropic_usage(spec, spec.output)}
    return 200, "application/json", [Event(_json(body),
                                           (spec.input + spec.cached + spec.written, spec.output))]


def _anthropic_sse(spec, model, _request):
    start_output = min(1, spec.output)
    message = {"id": spec.object_id, "type": "message", "role": "assistant", "model": model,
               "content": [], "stop_reason": None, "stop_sequence": None,
               "usage": _anthropic_usage(spec, start_output)}
    events = [Event(_sse(_json({"type": "message_start", "message": message}),
                         "message_start"), (spec.input + spec.cached + spec.written, start_output)),
              Event(_sse(_json({"type": "content_block_start", "index": 0,
                                "content_block": {"type": "text", "text": ""}}),
                         "content_block_start")),
              Event(_sse(b'{"type": "ping"}', "ping"))]
    events += [Event(_sse(_json({"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": word}}),
                          "content_block_delta"))
               for word in _words(spec.chunks)]
    events.append(Event(_sse(_json({"type": "content_block_stop", "index": 0}),
                             "content_block_stop")))
    events.append(Event(_sse(_json({"type": "message_delta",
                                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                    "usage": {"output_tokens": spec.output}}),
                             "message_delta"), (spec.input + spec.cached + spec.written, spec.output)))
    events.append(Event(_sse(_json({"type": "message_stop"}), "message_stop")))
    return 200, "text/event-stream; charset=utf-8", events


def _gemini_answer(spec, model, text, usage, finish=None):
    candidate = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model,
            "responseId": spec.object_id}


def _gemini_usage(spec):
    usage = {"promptTokenCount": spec.input, "candidatesTokenCount": spec.output,
             "totalTokenCount": spec.input + spec.output + spec.reasoning,
             "promptTokensDetails": [{"modality": "TEXT", "tokenCount": spec.input}]}
    if spec.reasoning:
        usage["thoughtsTokenCount"] = spec.reasoning
    if spec.cached:
        usage["cachedContentTokenCount"] = spec.cached
    return usage


def _gemini_json(spec, model, _request):
    body = _gemini_answer(spec, model, "".join(_words(3)), _gemini_usage(spec), "STOP")
    return 200, "application/json; charset=UTF-8", [
        Event(_json(body), (spec.input, spec.output + spec.reasoning))]


def _gemini_answers(spec, model):
    """(answer, reported) per streamed answer: the prompt count in each, everything in the
    last."""
    words = _words(spec.chunks)
    prompt = {"promptTokenCount": spec.input, "totalTokenCount": spec.input}
    out = [(_gemini_answer(spec, model, word, prompt), (spec.input, 0)) for word in words[:-1]]
    out.append((_gemini_answer(spec, model, words[-1] if words else "", _gemini_usage(spec),
                               "STOP"), (spec.input, spec.output + spec.reasoning)))
    return out


def _gemini_sse(spec, model, _request):
    events = [Event(b"data: " + _json(answer) + b"\r\n\r\n", reported)
              for answer, reported in _gemini_answers(spec, model)]
    return 200, "text/event-stream", events


def _gemini_array(spec, model, _request):
    answers = _gemini_answers(spec, model)
    events = [Event((b"[" if i == 0 else b"\r\n,") + _json(answer), reported)
              for i, (answer, reported) in enumerate(answers)]
    events.append(Event(b"]"))
    return 200, "application/json; charset=UTF-8", events


def _bedrock_usage(spec):
    return {"inputTokens": spec.input, "outputTokens": spec.output,
            "totalTokens": spec.input + spec.output + spec.cached + spec.written,
            "cacheReadInputTokens": spec.cached, "cacheWriteInputTokens": spec.written}


def _bedrock_json(spec, model, _request):
    body = {"output": {"message": {"role": "assistant",
                                   "content": [{"text": "".join(_words(3))}]}},
            "stopReason": "end_turn", "usage": _bedrock_usage(spec),
            "metrics": {"latencyMs": 120}}
    return 200, "application/json", [
        Event(_json(body), (spec.input + spec.cached + spec.written, spec.output))]


def _bedrock_stream(spec, model, _request):
    events = [Event(eventstream.event("messageStart", {"role": "assistant"}))]
    events += [Event(eventstream.event("contentBlockDelta",
                                       {"contentBlockIndex": 0, "delta": {"text": word}}))
               for word in _words(spec.chunks)]
    events.append(Event(eventstream.event("contentBlockStop", {"contentBlockIndex": 0})))
    events.append(Event(eventstream.event("messageStop", {"stopReason": "end_turn"})))
    events.append(Event(eventstream.event("metadata", {"usage": _bedrock_usage(spec),
                                                       "metrics": {"latencyMs": 90}}),
                        (spec.input + spec.cached + spec.written, spec.output)))
    return 200, "application/vnd.amazon.eventstream", events


def _bedrock_invoke_stream(spec, model, request):
    _, _, sse_events = _anthropic_sse(spec, model, request)
    events = []
    for sse_event in sse_events:
        data = next(line[6:] for line in sse_event.data.split(b"\n")
                    if line.startswith(b"data: "))
        events.append(Event(eventstream.chunk(json.loads(data)), sse_event.reported))
    return 200, "application/vnd.amazon.eventstream", events


def _error(spec, model, _request):
    body = {"error": {"message": "The server had an error while processing your request.",
                      "type": "server_error", "param": None, "code": None}}
    return 500, "application/json", [Event(_json(body))]


def _text(spec, model, _request):
    return 200, "text/plain; charset=utf-8", [Event(b"plain text, no usage here\n")]


def _object(spec, model, _request):
    """A created provider object: ``{"id": <prefix><hex>, ...}``, or for ``id_field=thread_id``
    a run whose ``thread_id`` is the new object, for ``id_field=file`` an upload whose
    ``file.id`` is."""
    if spec.id_field == "thread_id":
        body = {"id": "run_" + uuid.uuid4().hex[:24], "object": "thread.run",
                "thread_id": spec.object_id}
    elif spec.id_field == "file":
        body = {"id": "upload_" + uuid.uuid4().hex[:24], "object": "upload",
                "status": "completed", "file": {"id": spec.object_id, "object": "file"}}
    else:
        body = {"id": spec.object_id, "object": "object", "created_at": int(time.time())}
    return 200, "application/json", [Event(_json(body))]


_BUILDERS = {
    "object": _object,
    "openai-json": _openai_json,
    "openai-sse": _openai_sse,
    "responses-json": _responses_json,
    "responses-sse": _responses_sse,
    "embeddings-json": _embeddings_json,
    "anthropic-json": _anthropic_json,
    "anthropic-sse": _anthropic_sse,
    "error": _error,
    "text": _text,
    "big-json": _big_json,
    "gemini-json": _gemini_json,
    "gemini-sse": _gemini_sse,
    "gemini-array": _gemini_array,
    "bedrock-json": _bedrock_json,
    "bedrock-stream": _bedrock_stream,
    "bedrock-invoke-stream": _bedrock_invoke_stream,
}


def pieces(data: bytes, count: int) -> list:
    """``data`` cut into ``count`` pieces of about equal size (none empty)."""
    count = max(1, min(count, len(data)))
    size, extra = divmod(len(data), count)
    out, at = [], 0
    for i in range(count):
        step = size + (1 if i < extra else 0)
        out.append(data[at:at + step])
        at += step
    return out


@dataclass
class Answered:
    """What the upstream answered one request: updated while the answer is written."""

    kind: str
    status: int
    model: str
    stream: bool
    body: bytearray = field(default_factory=bytearray)  # body bytes written so far
    encoding: str = None  # "gzip" when the whole answer was compressed
    reported: tuple = None  # usage reported in what was written so far
    events_sent: int = 0
    holding: bool = False
    object_id: str = ""  # the id of what the answer says it created
    completed: bool = False  # the whole answer was written
    cut: bool = False  # the upstream cut the connection on purpose
    finished: bool = False  # the handler is done (completed, cut or the peer went away)

    @property
    def input_tokens(self) -> int:
        return self.reported[0] if self.reported else 0

    @property
    def output_tokens(self) -> int:
        return self.reported[1] if self.reported else 0
