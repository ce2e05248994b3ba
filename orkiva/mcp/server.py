"""The MCP server: every bridge operation as a tool, each a thin call of the same service or
selector as its REST twin, returning the same presenter's JSON as structured content.

`build_server()` makes a fresh `MCPServer` (one per HTTP adapter, one per stdio process). The
caller's identity never comes from arguments: the HTTP view or the stdio command binds it
(orkiva.mcp.calls), and arguments naming another agent or workspace are refused and audited
exactly as REST refuses them (`claim_mismatch`).
"""
from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

from django.conf import settings
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, METHOD_NOT_FOUND, CallToolResult, ToolAnnotations
from pydantic import Field, ValidationError

from messaging import kinds
from messaging.presenters import cursor_json, message_json, page_json
from messaging.selectors import message_page, message_pages
from messaging.services import cursor_ack, message_post
from orkiva.api_base import MAX_BIGINT
from orkiva.context import current_call, current_request_id
from orkiva.errors import RateLimited
from orkiva.mcp import schemas
from orkiva.mcp.arguments import (
    IDEMPOTENCY_KEY_PATTERN, IDENTIFIER_PATTERN, NO_NUL, NOT_BLANK, TYPE_PATTERN, UUID_TEXT, StrictValidator,
    argument_problems, pattern, strict_schema,
)
from orkiva.mcp.calls import (
    holds_a_thread, internal_error, invalid_arguments, pooled, run_steps, run_tool, schema_problems, unknown_tool,
    unstorable_arguments,
)
from orkiva.mcp.waiting import Together, watcher, with_db_slot
from orkiva.versioning import SCHEMA_VERSION
from policy.identity import IDENTIFIER_HELP, Actor
from policy.roles import Op
from sessions.presenters import session_json
from sessions.services import session_heartbeat
from supervisor.presenters import wake_json
from supervisor.services import ACK_CURSOR, ACK_READ, wake_trigger, wakes_acknowledge
from threads import transitions
from threads.presenters import thread_json
from threads.selectors import thread_get
from threads.services import TITLE_MAX, thread_create, thread_transition
from threads.summary import thread_summary

INSTRUCTIONS = (
    "Orkiva threads let coding agents work together without a human relaying messages. "
    "Your identity (agent, workspace, role) comes from your token; never pass it unless a tool asks. "
    "Typical loop: read_messages (after your read cursor), act, post_message (reply with in_reply_to, "
    "use kind finding/fix/question/answer/resolution for review work), ack_read up to what you handled, "
    "then wait_for_messages instead of polling. A refused call is a result with isError whose text is "
    'JSON {"error": {"code", "message", "details"}, "request_id"}; the code is stable: act on it.'
)

ThreadId = Annotated[str, Field(json_schema_extra=pattern(UUID_TEXT), description="The thread's id.")]
AgentId = Annotated[
    str, Field(json_schema_extra=pattern(IDENTIFIER_PATTERN), description=f"An agent id: {IDENTIFIER_HELP}.")
]
Seq = Annotated[int, Field(ge=0, le=MAX_BIGINT)]
AfterSeq = Annotated[
    int | None, Field(ge=0, le=MAX_BIGINT, description="Only messages with seq > this (default: your read cursor).")
]
ReadLimit = Annotated[
    int | None,
    Field(ge=1, le=settings.ORKIVA_READ_LIMIT_MAX,
          description=f"Most messages to return (default {settings.ORKIVA_READ_LIMIT_DEFAULT})."),
]
IdempotencyKey = Annotated[
    str | None,
    Field(json_schema_extra=pattern(IDEMPOTENCY_KEY_PATTERN),
          description="Your key (no control characters): a retry with it returns the first result, not a second."),
]
OwnIdentity = Annotated[
    str | None,
    Field(json_schema_extra=pattern(IDENTIFIER_PATTERN),
          description="Leave out: your token names you (if given, it must match)."),
]


def _out(model: type) -> Any:
    """`-> Annotated[CallToolResult, model]`: the tool returns the presenter's dict unchanged, and
    the SDK publishes `model` as its output schema and checks the dict against it."""
    return Annotated[CallToolResult, model]


ThreadResult = _out(schemas.ThreadOut)
MessageResult = _out(schemas.MessageOut)
PageResult = _out(schemas.MessagePageOut)
CursorResult = _out(schemas.CursorOut)
SummaryResult = _out(schemas.SummaryOut)
SessionResult = _out(schemas.SessionOut)
WakeResult = _out(schemas.WakeOut)


def _read_page(actor: Actor, thread_id: str, after_seq: int | None, limit: int | None) -> dict[str, Any]:
    page = message_page(
        actor=actor, thread_id=thread_id, after_seq=after_seq, limit=limit or settings.ORKIVA_READ_LIMIT_DEFAULT
    )
    wakes_acknowledge(actor=actor, thread_id=page.thread.pk, signal=ACK_READ)
    return page_json(page)


def _read_pages(thread_id: uuid.UUID, reads: list[tuple[Actor, int, int]]) -> list[dict[str, Any] | None]:
    """`_read_page` for several readers of one thread at once (message_pages): the waiters one post
    woke. Each reader's wakes are acknowledged as its own read would; None: read that one alone."""
    pages = message_pages(thread_id=thread_id, reads=reads)
    readers = {(actor.workspace_id, actor.agent_id): actor for (actor, _, _), page in zip(reads, pages) if page}
    for actor in readers.values():
        wakes_acknowledge(actor=actor, thread_id=thread_id, signal=ACK_READ)
    shown: dict[int, dict[str, Any]] = {}  # one rendering of each distinct window of messages
    answers: list[dict[str, Any] | None] = []
    for page in pages:
        if page is None:
            answers.append(None)
            continue
        if id(page.messages) not in shown:
            shown[id(page.messages)] = page_json(page)
        answers.append({**shown[id(page.messages)], "last_read_seq": page.last_read_seq,
                        "unread_count": page.unread_count, "next_after_seq": page.next_after_seq})
    return answers


async def _read_woken(thread_id: uuid.UUID, reads: list[tuple[Actor, int, int]]) -> list[dict[str, Any] | None]:
    return await pooled(lambda: _read_pages(thread_id, reads))


# The reads of the waiters one wake resumed, on a pool thread once per thread (ASGI).
_woken_reads = Together(_read_woken)


def _ack(actor: Actor, thread_id: str, seq: int) -> dict[str, Any]:
    state = cursor_ack(actor=actor, thread_id=thread_id, seq=seq)
    wakes_acknowledge(actor=actor, thread_id=state.thread.pk, signal=ACK_CURSOR)
    return cursor_json(state)


class OrkivaMCPServer(MCPServer):
    """The SDK's server, with every failure it raises itself answered in our error contract: bad
    arguments as a `validation_error` result, an unknown tool as the JSON-RPC error -32602 (its data's
    code `unknown_tool`), a crash as internal_error."""

    def _argument_validator(self, name: str) -> StrictValidator:
        validators = self.__dict__.setdefault("_orkiva_validators", {})
        if name not in validators:
            validators[name] = StrictValidator(self._tool_manager.get_tool(name).parameters)
        return validators[name]

    def publish_lean_schemas(self) -> None:
        """What tools/list says of each tool: its input schema compact and refusing arguments it does
        not name (the schema call_tool checks), its output schema outlined (orkiva.mcp.schemas)."""
        for tool in self._tool_manager.list_tools():
            tool.parameters = strict_schema(schemas.compact_schema(tool.parameters))
            if tool.fn_metadata.output_schema is not None:
                tool.fn_metadata.output_schema = schemas.outline_schema(tool.fn_metadata.output_schema)

    async def call_tool(self, name: str, arguments: dict[str, Any], context=None):
        if self._tool_manager.get_tool(name) is None:
            raise unknown_tool(name)
        problems = argument_problems(self._argument_validator(name), arguments) or unstorable_arguments(arguments)
        if problems:
            return invalid_arguments(name, problems)
        try:
            return await super().call_tool(name, arguments, context)
        except UnexpectedToolError as exc:
            raise internal_error(name) from exc
        except ToolError as exc:
            if not isinstance(exc.__cause__, ValidationError):
                raise
            return invalid_arguments(name, schema_problems(exc.__cause__))


# What the SDK's MCPServer registers and the bridge does not serve: prompts and resources (it has
# none), completions and logging, and subscriptions. `subscriptions/listen` would hold its request
# open for good as a server-sent event stream, and the bridge has no notifications to send on it.
_UNSERVED_METHODS = frozenset({
    "subscriptions/listen", "prompts/list", "prompts/get", "resources/list", "resources/read",
    "resources/templates/list", "resources/subscribe", "resources/unsubscribe", "completion/complete",
    "logging/setLevel",
})
# Advertised by initialize and server/discover: the tools, a fixed list.
CAPABILITIES = {"tools": {"listChanged": False}}


async def tools_only(ctx, call_next):
    """Server middleware: the unserved methods answer 'method not found' (as an unknown method does),
    and the handshake and discovery advertise only what is served."""
    if ctx.method in _UNSERVED_METHODS:
        raise MCPError(code=METHOD_NOT_FOUND, message="Method not found", data=ctx.method)
    try:
        result = await call_next(ctx)
    except ValidationError as exc:  # the SDK's own check of a method's params: -32602, saying what
        raise invalid_params(ctx.method, exc) from None
    if ctx.method in ("initialize", "server/discover") and isinstance(result, dict) and "capabilities" in result:
        result = {**result, "capabilities": CAPABILITIES}
    return result


def invalid_params(method: str, exc: ValidationError) -> MCPError:
    """-32602 with a short message naming the wrong fields (the SDK sends a bare "Invalid request
    parameters"), and in its data our code and the request id."""
    problems = [f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}" for e in exc.errors()[:3]]
    current_call().error_code = "invalid_params"
    return MCPError(code=INVALID_PARAMS, message=f"Invalid params for {method[:60]}: {'; '.join(problems)}.",
                    data={"code": "invalid_params", "request_id": current_request_id()})


def build_server() -> MCPServer:
    mcp = OrkivaMCPServer(
        "orkiva",
        title="Orkiva bridge",
        instructions=INSTRUCTIONS,
        version=str(SCHEMA_VERSION),
        # The SDK's own logging setup would reconfigure the root logger; ours (structlog) stays.
        log_level="WARNING",
        subscriptions=False,
        middleware=[tools_only],
    )
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)
    write = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
    idempotent_write = write.model_copy(update={"idempotent_hint": True})

    @mcp.tool(
        name="create_thread",
        description="Create a thread (coordinators only) with a title, a type and the agents taking part. "
        "Every participant starts with its read cursor at 0. Returns the thread; keep its `id`. Pass an "
        "idempotency_key to make retries safe (a replay says idempotent_replay: true).",
        annotations=write,
    )
    async def create_thread(
        title: Annotated[
            str,
            Field(max_length=TITLE_MAX, json_schema_extra=pattern(NOT_BLANK), description="What the thread is about."),
        ],
        type: Annotated[
            str,
            Field(json_schema_extra=pattern(TYPE_PATTERN), description="A lowercase slug such as `review` or `task`."),
        ],
        participants: Annotated[
            list[AgentId], Field(min_length=1, max_length=settings.ORKIVA_MAX_PARTICIPANTS,
                                 description="Agent ids taking part; duplicates dropped.")
        ],
        idempotency_key: IdempotencyKey = None,
        workspace_id: OwnIdentity = None,
    ) -> ThreadResult:
        def work(actor: Actor) -> dict[str, Any]:
            thread = thread_create(actor=actor, title=title, type=type, participants=participants,
                                   idempotency_key=idempotency_key)
            return thread_json(thread, replay=thread.idempotent_replay)

        return await run_tool("create_thread", work, claims={"workspace_id": workspace_id},
                              claim_action="thread.create")

    @mcp.tool(
        name="get_thread",
        description="A thread's status, participants and last_seq (the newest message's seq).",
        annotations=read_only,
    )
    async def get_thread(thread_id: ThreadId) -> ThreadResult:
        return await run_tool(
            "get_thread", lambda actor: thread_json(thread_get(actor=actor, thread_id=thread_id, op=Op.THREAD_READ))
        )

    @mcp.tool(
        name="post_message",
        description="Post a message to a thread as yourself. Messages get gapless seqs 1, 2, 3... "
        "Pass an idempotency_key to make retries safe: the same key and content returns the original "
        "message (idempotent_replay: true); the same key with different content is idempotency_conflict.",
        annotations=write,
    )
    async def post_message(
        thread_id: ThreadId,
        body: Annotated[str, Field(max_length=settings.ORKIVA_MAX_MESSAGE_BODY_CHARS,
                                   json_schema_extra=pattern(NOT_BLANK),
                                   description="The message text (Markdown is fine).")],
        kind: Annotated[
            schemas.PostableKind,
            Field(description="message (default); finding, question: open items; fix (addresses a finding), "
                  "resolution (resolves it), answer (answers a question): reply with in_reply_to."),
        ] = kinds.MESSAGE,
        in_reply_to: Annotated[
            int | None, Field(ge=1, le=MAX_BIGINT, description="Seq of the message this replies to (same thread).")
        ] = None,
        idempotency_key: IdempotencyKey = None,
        sender: OwnIdentity = None,
    ) -> MessageResult:
        def work(actor: Actor) -> dict[str, Any]:
            result = message_post(
                actor=actor, thread_id=thread_id, body=body, kind=kind, in_reply_to=in_reply_to,
                idempotency_key=idempotency_key,
            )
            return message_json(result.message, replay=result.replay)

        return await run_tool("post_message", work, claims={"sender": sender}, claim_action="message.post")

    @mcp.tool(
        name="read_messages",
        description="Messages of a thread in seq order after `after_seq` (default: your read cursor, i.e. "
        "your unread messages), with your cursor and unread count. Reading never moves the cursor: call "
        "ack_read when you have handled them. Page on with after_seq = next_after_seq.",
        annotations=read_only,
    )
    async def read_messages(
        thread_id: ThreadId,
        after_seq: AfterSeq = None,
        limit: ReadLimit = None,
    ) -> PageResult:
        return await run_tool("read_messages", lambda actor: _read_page(actor, thread_id, after_seq, limit))

    @mcp.tool(
        name="wait_for_messages",
        description="Block until the thread has a message after `after_seq` (default: your read cursor), "
        "then return like read_messages; after `timeout_seconds` with nothing new, return an empty "
        "`messages` list. Use it instead of polling read_messages. Pass after_seq = the seq you last saw "
        "(e.g. your own post's seq) so your own messages do not wake you.",
        annotations=read_only,
    )
    async def wait_for_messages(
        thread_id: ThreadId,
        after_seq: AfterSeq = None,
        timeout_seconds: Annotated[
            float,
            Field(ge=0, description="How long to wait at most; capped by the server "
                  f"(ORKIVA_MCP_WAIT_MAX_SECONDS, now {settings.ORKIVA_MCP_WAIT_MAX_SECONDS:g})."),
        ] = 30,
        limit: ReadLimit = None,
    ) -> PageResult:
        timeout = min(timeout_seconds, settings.ORKIVA_MCP_WAIT_MAX_SECONDS)

        # Where a wait keeps its thread (WSGI, stdio), both reads go through the process's few wait
        # slots and give their connection back: nothing of the database is held while waiting, and
        # a mass wake needs few connections. Under ASGI the pool bounds them already.
        together = not holds_a_thread()
        read = _read_page if together else with_db_slot(_read_page)
        reader: list[Actor] = []

        def first_read(actor: Actor) -> dict[str, Any]:
            reader.append(actor)
            return read(actor, thread_id, after_seq, limit)

        async def steps(run) -> dict[str, Any]:
            ticket = watcher().ticket()  # before each read: see ThreadWatcher.wait's `since`
            page = await run(first_read)
            if page["messages"] or timeout <= 0:
                return page
            cap = settings.ORKIVA_MCP_MAX_WAITERS
            if cap and watcher().waiting >= cap:
                # Checked and registered on the one event loop: no other call runs between.
                raise RateLimited(
                    f"This bridge process already has {cap} calls waiting; call read_messages now, or "
                    "wait_for_messages again in a few seconds.", code="too_many_waiters",
                    details={"max_waiters": cap, "retry_after_seconds": 5}, headers={"Retry-After": "5"},
                )
            start, watched = page["next_after_seq"], uuid.UUID(page["thread_id"])
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                woke = await watcher().wait(thread_id=watched, after_seq=start, timeout=deadline - loop.time(),
                                            since=ticket)
                ticket, page = watcher().ticket(), None
                if together and woke:
                    page = await _woken_reads.run(watched, (reader[0], start, limit or settings.ORKIVA_READ_LIMIT_DEFAULT))
                if page is None:
                    page = await run(lambda actor: read(actor, thread_id, start, limit))
                # An early wake with nothing to read (a failed check, a database restart) waits on:
                # a waiter is told "nothing new" only once its time is up.
                if page["messages"] or not woke or loop.time() >= deadline:
                    return page

        return await run_steps("wait_for_messages", steps)

    @mcp.tool(
        name="ack_read",
        description="Move your read cursor forward to `seq` (you have handled everything up to it). "
        "Never moves backwards: an older seq returns the current cursor. Returns cursor and unread count.",
        annotations=idempotent_write,
    )
    async def ack_read(
        thread_id: ThreadId,
        seq: Annotated[Seq, Field(description="The seq you have read up to (at most the thread's last_seq).")],
    ) -> CursorResult:
        return await run_tool("ack_read", lambda actor: _ack(actor, thread_id, seq))

    @mcp.tool(
        name="update_thread_status",
        description="Change a thread's status. Allowed moves: "
        + "; ".join(f"{k} -> {', '.join(v) or '(none: final)'}" for k, v in transitions.ALLOWED.items())
        + ". Leaving blocked and closing a disputed thread need a coordinator and a reason; a participant "
        "may close only a resolved thread.",
        annotations=write,
    )
    async def update_thread_status(
        thread_id: ThreadId,
        status: Annotated[schemas.ThreadStatus, Field(description="The new status.")],
        reason: Annotated[str, Field(max_length=2000, json_schema_extra=pattern(NO_NUL),
                                     description="Why; required for moves needing authority.")] = "",
    ) -> ThreadResult:
        return await run_tool(
            "update_thread_status",
            lambda actor: thread_json(thread_transition(actor=actor, thread_id=thread_id, status=status, reason=reason)),
        )

    @mcp.tool(
        name="summarize_thread",
        description="A deterministic summary: status and its reason, each participant's cursor, unread count "
        "and last message, the open items (unresolved findings, unanswered questions) and counts by kind.",
        annotations=read_only,
    )
    async def summarize_thread(thread_id: ThreadId) -> SummaryResult:
        return await run_tool("summarize_thread", lambda actor: thread_summary(actor=actor, thread_id=thread_id))

    @mcp.tool(
        name="heartbeat_session",
        description="Say your runtime session is alive and resumable, so a dormant you can be resumed "
        "(codex exec resume, claude --resume) when a message waits. Call it at start and now and then.",
        annotations=idempotent_write,
    )
    async def heartbeat_session(
        session_id: Annotated[
            str, Field(json_schema_extra=pattern(IDENTIFIER_PATTERN), description="Your runtime's resumable session id "
                       "(Codex's thread id, Claude Code's session id).")
        ],
        runtime_type: Annotated[schemas.RuntimeType, Field(description="Which agent runtime you are.")] = "codex",
        resumable: Annotated[bool, Field(description="Whether the session can be resumed.")] = True,
        agent_id: OwnIdentity = None,
        workspace_id: OwnIdentity = None,
    ) -> SessionResult:
        return await run_tool(
            "heartbeat_session",
            lambda actor: session_json(session_heartbeat(actor=actor, session_id=session_id,
                                                         runtime_type=runtime_type, resumable=resumable)),
            claims={"agent_id": agent_id, "workspace_id": workspace_id}, claim_action="session.heartbeat",
        )

    @mcp.tool(
        name="trigger_participant",
        description="Ask the supervisor to wake another participant of the thread about it (e.g. a dormant "
        "reviewer). Answers at once with the wake's id, status and trace; the wake runs in the background "
        "(type into its terminal, else resume its session, else spawn one). Triggers in a burst collapse "
        "onto one wake (deduped: true).",
        annotations=write,
    )
    async def trigger_participant(
        thread_id: ThreadId,
        agent_id: Annotated[AgentId, Field(description="The participant to wake (not yourself).")],
        reason: Annotated[
            str, Field(max_length=1000, json_schema_extra=pattern(NO_NUL), description="Why, shown to the woken agent.")
        ] = "",
        workspace_id: OwnIdentity = None,
    ) -> WakeResult:
        # `agent_id` names the agent to wake, not the caller: only the workspace is checked.
        return await run_tool(
            "trigger_participant",
            lambda actor: wake_json(wake_trigger(actor=actor, thread_id=thread_id, agent_id=agent_id, reason=reason)),
            claims={"workspace_id": workspace_id}, claim_action="wake.trigger",
        )

    mcp.publish_lean_schemas()
    return mcp
