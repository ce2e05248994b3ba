"""Fake model servers for the real agent CLIs, for the pilot and the tests (no model is reachable):
OpenAI's Responses API as the Codex CLI uses it (a custom `model_provider`, `wire_api =
"responses"`) and Anthropic's Messages API as Claude Code uses it (`ANTHROPIC_BASE_URL`). Both
stream Server-Sent Events as the real APIs do; a `Brain` (pilot.brains) scripts each turn of the
model from the conversation the CLI sends: call a tool, or answer in text.

    python -m pilot.fakemodel --api openai|anthropic --role executioner|reviewer [--port N] [--log F]

Every request the CLI sends is kept (`FakeModel.requests`, and `--log` as JSON lines), so a test
can assert what the model received. Standard library only: it runs beside the CLIs, not in Django.
"""
from __future__ import annotations

import argparse
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

# MCP tools reach Codex's model grouped in a namespace `mcp__<server>`, Claude's as `mcp__<server>__<tool>`.
MCP_SERVER = "orkiva"
_CONTEXT_PREFIXES = ("<environment_context>", "<user_instructions>", "# AGENTS.md", "<permissions instructions>")
TITLE_MARKERS = ("Generate a concise", "title for this")


@dataclass
class ToolResult:
    name: str  # the bare tool name: post_message
    args: dict[str, Any]
    output: Any  # the tool's JSON result when it parses, else its text
    is_error: bool = False


@dataclass
class Turn:
    """What a brain sees: the prompt of the turn, the tools offered, and the tool calls made since
    the prompt with their results (in order)."""

    prompt: str
    tools: set[str]
    results: list[ToolResult] = field(default_factory=list)

    def last(self, name: str) -> ToolResult | None:
        return next((r for r in reversed(self.results) if r.name == name), None)

    def called(self, name: str) -> list[ToolResult]:
        return [r for r in self.results if r.name == name]


@dataclass
class Call:
    name: str  # an Orkiva tool's bare name (post_message), or with mcp=False one of the CLI's own tools (Bash)
    args: dict[str, Any]
    mcp: bool = True


@dataclass
class Say:
    text: str


Brain = Callable[[Turn], "Call | Say"]


def parse_output(text: str) -> Any:
    """A tool's result as the CLI shows it to the model: JSON somewhere in the text (Codex prefixes
    `Wall time: ...\\nOutput:\\n`), else the text."""
    start = text.find("{")
    if start >= 0:
        try:
            return json.loads(text[start:])
        except ValueError:
            pass
    return text


def bare_tool_name(name: str, namespace: str | None = None) -> str:
    prefix = f"mcp__{MCP_SERVER}__"
    if name.startswith(prefix):
        return name[len(prefix):]
    return name


@dataclass
class Request:
    api: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    received_at: float
    turn: Turn | None  # None for the CLIs' side requests (titles) and anything not a turn
    reply: Any = None

    def texts(self) -> str:
        """Every user text of the request (to find a prompt wherever the CLI put it)."""
        return json.dumps(self.body)


class FakeModel:
    """One fake model API on 127.0.0.1, in a thread of this process. `api` is "openai" or "anthropic"."""

    def __init__(self, api: str, brain: Brain, *, port: int = 0, log_path: str | None = None):
        if api not in ("openai", "anthropic"):
            raise ValueError(f"unknown api {api!r}")
        self.api, self.brain, self.log_path = api, brain, log_path
        self.requests: list[Request] = []
        self._lock = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        """Codex: the provider's base_url (it POSTs {base_url}/responses). Claude: ANTHROPIC_BASE_URL."""
        return f"http://127.0.0.1:{self.port}" + ("/v1" if self.api == "openai" else "")

    def start(self) -> "FakeModel":
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"fake-{self.api}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "FakeModel":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def turns(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.turn is not None]

    def prompts(self) -> list[str]:
        """The prompt of every turn the model was asked to start (a tool result's follow-up is not one)."""
        return [r.turn.prompt for r in self.turns() if not r.turn.results]

    def wait_for(self, predicate: Callable[["FakeModel"], Any], *, timeout: float = 30, what: str = "the model") -> Any:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                value = predicate(self)
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}; prompts so far: {self.prompts()}")
                self._lock.wait(min(left, 0.2))

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)
            self._lock.notify_all()
        if self.log_path:
            with open(self.log_path, "a") as handle:
                handle.write(json.dumps({"api": request.api, "path": request.path, "at": request.received_at,
                                         "prompt": request.turn.prompt if request.turn else None,
                                         "results": len(request.turn.results) if request.turn else None,
                                         "reply": request.reply}) + "\n")


# --- OpenAI Responses (Codex CLI) ---------------------------------------------------------------


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and "text" in p)
    return ""


def openai_turn(body: dict[str, Any]) -> Turn | None:
    tools: set[str] = set()
    for tool in body.get("tools") or []:
        if tool.get("type") == "namespace":
            tools |= {t.get("name") for t in tool.get("tools", []) if t.get("name")}
        elif tool.get("name"):
            tools.add(tool["name"])
    items = body.get("input") or []
    start, prompt = None, ""
    for index, item in enumerate(items):
        if item.get("type", "message") == "message" and item.get("role") == "user":
            text = _text_of(item.get("content"))
            if not text.lstrip().startswith(_CONTEXT_PREFIXES):
                start, prompt = index, text
    if start is None or (not tools and any(m in prompt for m in TITLE_MARKERS)):
        return None
    turn = Turn(prompt=prompt, tools=tools)
    calls: dict[str, tuple[str, dict]] = {}
    for item in items[start + 1:]:
        kind = item.get("type")
        if kind == "function_call":
            try:
                args = json.loads(item.get("arguments") or "{}")
            except ValueError:
                args = {}
            calls[item.get("call_id", "")] = (bare_tool_name(item.get("name", "")), args)
        elif kind == "function_call_output":
            name, args = calls.get(item.get("call_id", ""), ("?", {}))
            output = item.get("output")
            text = output if isinstance(output, str) else json.dumps(output)
            parsed = parse_output(text)
            turn.results.append(ToolResult(name, args, parsed, is_error=_is_error(parsed)))
    return turn


def _is_error(output: Any) -> bool:
    return isinstance(output, dict) and isinstance(output.get("error"), dict)


def _namespace_of(body: dict[str, Any], name: str) -> str | None:
    for tool in body.get("tools") or []:
        if tool.get("type") == "namespace" and any(t.get("name") == name for t in tool.get("tools", [])):
            return tool.get("name")
    return None


def _sse(handler: BaseHTTPRequestHandler, event: str, data: dict[str, Any]) -> None:
    handler.wfile.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
    handler.wfile.flush()


def openai_stream(handler: BaseHTTPRequestHandler, body: dict[str, Any], reply: Call | Say) -> None:
    rid = f"resp_{uuid.uuid4().hex[:16]}"
    _sse(handler, "response.created", {"type": "response.created", "response": {"id": rid}})
    if isinstance(reply, Call):
        item = {"type": "function_call", "id": f"fc_{uuid.uuid4().hex[:12]}", "call_id": f"call_{uuid.uuid4().hex[:12]}",
                "name": reply.name, "arguments": json.dumps(reply.args)}
        namespace = _namespace_of(body, reply.name) if reply.mcp else None
        if namespace:
            item["namespace"] = namespace
        _sse(handler, "response.output_item.added", {"type": "response.output_item.added", "output_index": 0, "item": item})
        _sse(handler, "response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": item})
    else:
        mid = f"msg_{uuid.uuid4().hex[:12]}"
        started = {"type": "message", "id": mid, "role": "assistant", "status": "in_progress", "content": []}
        _sse(handler, "response.output_item.added", {"type": "response.output_item.added", "output_index": 0, "item": started})
        for piece in _pieces(reply.text):
            _sse(handler, "response.output_text.delta", {"type": "response.output_text.delta", "item_id": mid,
                                                         "output_index": 0, "content_index": 0, "delta": piece})
        done = {**started, "status": "completed", "content": [{"type": "output_text", "text": reply.text, "annotations": []}]}
        _sse(handler, "response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": done})
    usage = {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 5,
             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 15}
    _sse(handler, "response.completed", {"type": "response.completed", "response": {"id": rid, "usage": usage}})


def _pieces(text: str) -> list[str]:
    """Stream text in a few deltas, as a model does."""
    size = max(1, len(text) // 3)
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


# --- Anthropic Messages (Claude Code) ---------------------------------------------------------------


def anthropic_turn(body: dict[str, Any]) -> Turn | None:
    tools = {bare_tool_name(t.get("name", "")) for t in body.get("tools") or [] if t.get("name")}
    # Claude Code may interleave role "system" notes (queued input, agent lists): not the user's.
    messages = [m for m in body.get("messages") or [] if m.get("role") in ("user", "assistant")]
    start, prompt = None, ""
    for index, message in enumerate(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        text = "\n".join(b.get("text", "") for b in blocks if b.get("type") == "text")
        text = re.sub(r"<system-reminder>.*?</system-reminder>", "", text, flags=re.S).strip()
        if text and not any(b.get("type") == "tool_result" for b in blocks):
            start, prompt = index, text
    if start is None or not tools:
        return None  # title generation and other side requests offer no tools
    turn = Turn(prompt=prompt, tools=tools)
    calls: dict[str, tuple[str, dict]] = {}
    for message in messages[start + 1:]:
        content = message.get("content")
        for block in content if isinstance(content, list) else []:
            if block.get("type") == "tool_use":
                calls[block.get("id", "")] = (bare_tool_name(block.get("name", "")), block.get("input") or {})
            elif block.get("type") == "tool_result":
                name, args = calls.get(block.get("tool_use_id", ""), ("?", {}))
                raw = block.get("content")
                text = raw if isinstance(raw, str) else _text_of(raw)
                parsed = parse_output(text)
                turn.results.append(ToolResult(name, args, parsed, is_error=bool(block.get("is_error")) or _is_error(parsed)))
    return turn


def anthropic_stream(handler: BaseHTTPRequestHandler, body: dict[str, Any], reply: Call | Say) -> None:
    mid = f"msg_{uuid.uuid4().hex[:24]}"
    model = body.get("model", "claude-fake")
    usage = {"input_tokens": 10, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}

    def event(name: str, data: dict[str, Any]) -> None:
        _sse(handler, name, {"type": name, **data})

    event("message_start", {"message": {"id": mid, "type": "message", "role": "assistant", "model": model,
                                        "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}})
    if isinstance(reply, Call):
        name = f"mcp__{MCP_SERVER}__{reply.name}" if reply.mcp else reply.name
        tool = {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:20]}", "name": name, "input": {}}
        event("content_block_start", {"index": 0, "content_block": tool})
        event("content_block_delta", {"index": 0, "delta": {"type": "input_json_delta",
                                                            "partial_json": json.dumps(reply.args)}})
        event("content_block_stop", {"index": 0})
        stop = "tool_use"
    else:
        event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
        for piece in _pieces(reply.text):
            event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}})
        event("content_block_stop", {"index": 0})
        stop = "end_turn"
    event("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": 5}})
    event("message_stop", {})


def _anthropic_side_reply(body: dict[str, Any]) -> dict[str, Any]:
    """A non-streaming answer (Claude Code's side requests may ask for one)."""
    return {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
            "model": body.get("model", "claude-fake"), "content": [{"type": "text", "text": "Fake title"}],
            "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 2, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0}}


# --- the HTTP server ------------------------------------------------------------------------------------


def _handler_for(model: FakeModel) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet: the requests are kept instead
            pass

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_HEAD(self) -> None:  # Claude Code checks the base URL first
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            if self.path.split("?")[0].endswith("/models"):
                return self._json(200, {"data": [], "models": [], "has_more": False})
            self._json(404, {"error": {"type": "not_found_error", "message": "not served by the fake model"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                return self._json(400, {"error": {"type": "invalid_request_error", "message": "not JSON"}})
            path = self.path.split("?")[0]
            wanted = "/responses" if model.api == "openai" else "/v1/messages"
            if path.endswith("/count_tokens"):
                return self._json(200, {"input_tokens": 100})
            if not path.endswith(wanted):
                return self._json(404, {"error": {"type": "not_found_error", "message": f"no {path} here"}})
            turn = openai_turn(body) if model.api == "openai" else anthropic_turn(body)
            request = Request(api=model.api, path=path, headers=dict(self.headers), body=body,
                              received_at=time.time(), turn=turn)
            reply: Call | Say = model.brain(turn) if turn is not None else Say("Fake title")
            request.reply = {"call": reply.name, "args": reply.args} if isinstance(reply, Call) else {"say": reply.text}
            model.record(request)
            if model.api == "anthropic" and not body.get("stream"):
                return self._json(200, _anthropic_side_reply(body))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            (openai_stream if model.api == "openai" else anthropic_stream)(self, body, reply)

    return Handler


def main() -> None:
    # Run as `python -m pilot.fakemodel`, this file is __main__: take the classes from pilot.fakemodel,
    # the module the brains import them from.
    from pilot import brains, fakemodel

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api", choices=("openai", "anthropic"), required=True)
    parser.add_argument("--role", choices=sorted(brains.ROLES), required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log", default=None)
    args = parser.parse_args()
    model = fakemodel.FakeModel(args.api, brains.ROLES[args.role], port=args.port, log_path=args.log).start()
    print(f"fake {args.api} model for the {args.role} on {model.base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        model.stop()


if __name__ == "__main__":
    main()
