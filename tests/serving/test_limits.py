"""No single client can starve production's server (`gunicorn -c infra/gunicorn.conf.py`): slow
request bodies, heads that never end, bodies past the limit and readers that stop reading are each
bounded by the server's own limits, while everyone else is answered. Real sockets, a real server;
the figures (p99 under 200 slow bodies, say) are bench/limits.py's."""
from __future__ import annotations

import json
import re
import select
import socket
import time

import httpx
import pytest

from messaging.services import message_post
from tests.conftest import RELAXED_POLICY, token_for
from tests.live import bridge_server, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)


def _connect(port: int, *, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    return sock


def _read_all(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (or `timeout` passes)."""
    sock.settimeout(timeout)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (TimeoutError, ConnectionResetError):
        pass
    return b"".join(chunks)


def _port(base_url: str) -> int:
    return int(base_url.rsplit(":", 1)[1])


def test_slow_bodies_cost_no_thread_and_are_cut_at_their_deadline(tmp_path, thread, executioner):
    """Forty connections send a valid token and then trickle their body. With one worker of one
    pool thread, /healthz and real posts are answered meanwhile; after ORKIVA_BODY_TIMEOUT_SECONDS
    each slow one gets 408 request_timeout in the error contract, its request id, and is closed."""
    env = subprocess_env(ORKIVA_THREADS="1", ORKIVA_BODY_TIMEOUT_SECONDS="3", **RELAXED_POLICY)
    headers = {"Authorization": f"Bearer {token_for(executioner)}"}
    with bridge_server(tmp_path, server="gunicorn", workers=1, env=env) as bridge:
        port, slow = _port(bridge.base_url), []
        for i in range(40):
            sock = _connect(port)
            sock.sendall(
                f"POST /v1/threads/{thread.pk}/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {token_for(executioner)}\r\nContent-Type: application/json\r\n"
                f"X-Request-ID: slow-{i}\r\nContent-Length: 100\r\n\r\n{{\"body\": ".encode())
            slow.append(sock)
        with httpx.Client(base_url=bridge.base_url, headers=headers, timeout=10) as client:
            probes = [client.get("/healthz").status_code for _ in range(5)]
            posts = [client.post(f"/v1/threads/{thread.pk}/messages", json={"body": f"meanwhile {i}"}).status_code
                     for i in range(5)]
        for sock in slow:
            sock.sendall(b"\"x")  # still trickling
        answers = [_read_all(sock, timeout=15) for sock in slow]
        alive = httpx.get(f"{bridge.base_url}/healthz", timeout=10).status_code
    assert probes == [200] * 5 and posts == [201] * 5 and alive == 200
    for i, answer in enumerate(answers):
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"connection: close" in head.lower()
        error = json.loads(body)
        assert error["error"]["code"] == "request_timeout" and error["request_id"] == f"slow-{i}"
    assert [m.body for m in thread.messages.order_by("seq")] == [f"meanwhile {i}" for i in range(5)]


def test_a_head_that_never_ends_is_closed_and_an_oversized_one_refused(tmp_path):
    """A connection that sends nothing, one that trickles its headers, and one whose headers pass
    ORKIVA_MAX_HEADER_BYTES: each is closed by the server (the last with 431); others are served."""
    env = subprocess_env(ORKIVA_HEADER_TIMEOUT_SECONDS="2", ORKIVA_MAX_HEADER_BYTES="8192")
    with bridge_server(tmp_path, server="gunicorn", workers=1, env=env) as bridge:
        port = _port(bridge.base_url)
        silent = _connect(port)
        trickling = _connect(port)
        trickling.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        started = time.monotonic()
        for _ in range(3):
            time.sleep(0.5)
            trickling.sendall(b"X-Slow: 1\r\n")
        oversized = _connect(port)
        oversized.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Big: " + b"a" * 10_000 + b"\r\n\r\n")
        served = httpx.get(f"{bridge.base_url}/healthz", timeout=10).status_code
        silent_answer, trickling_answer = _read_all(silent, timeout=15), _read_all(trickling, timeout=15)
        closed_after = time.monotonic() - started
        oversized_answer = _read_all(oversized, timeout=15)
    assert served == 200
    assert silent_answer == b"" and trickling_answer == b""  # closed, never answered
    assert closed_after < 14  # by the server (the reads allow 15 s)
    head, _, body = oversized_answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431") and b"connection: close" in head.lower()
    error = json.loads(body)  # the error contract, not an empty or HTML page
    assert error["error"]["code"] == "headers_too_large" and error["error"]["details"] == {"max_header_bytes": 8192}
    assert error["request_id"].encode() in head


def test_a_body_past_the_limit_is_refused_before_it_is_sent(tmp_path, thread, executioner):
    """Content-Length past ORKIVA_MAX_REQUEST_BYTES: 413 request_too_large at once, in the error
    contract, without the server waiting for (or buffering) the body."""
    with bridge_server(tmp_path, server="gunicorn", workers=1) as bridge:
        sock = _connect(_port(bridge.base_url))
        sock.sendall(
            f"POST /v1/threads/{thread.pk}/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token_for(executioner)}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {50 * 1024 * 1024}\r\n\r\n".encode())
        answer = _read_all(sock, timeout=15)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"connection: close" in head.lower()  # the connection closes, and says so
    error = json.loads(body)
    assert error["error"]["code"] == "request_too_large" and error["request_id"]


@pytest.mark.usefixtures("relaxed_policy")
def test_a_reader_that_stops_reading_is_dropped_and_others_are_served(tmp_path, thread, executioner, reviewer):
    """A client asks for a large page (12 MB, more than the sockets' buffers hold) and never reads
    it: after ORKIVA_SEND_TIMEOUT_SECONDS the server drops the connection (its buffered response
    freed); the server answers meanwhile."""
    for i in range(60):
        message_post(actor=executioner, thread_id=str(thread.pk), body=f"{i} " + "€" * 65_000)
    env = subprocess_env(ORKIVA_SEND_TIMEOUT_SECONDS="2", ORKIVA_READ_MAX_BYTES=str(64 * 1024 * 1024))
    with bridge_server(tmp_path, server="gunicorn", workers=1, env=env) as bridge:
        sock = _connect(_port(bridge.base_url), rcvbuf=4096)
        sock.sendall(
            f"GET /v1/threads/{thread.pk}/messages?after_seq=0&limit=60 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token_for(reviewer)}\r\n\r\n".encode())
        deadline = time.monotonic() + 30
        while "slow_reader_dropped" not in bridge.log():
            assert time.monotonic() < deadline, bridge.log()
            time.sleep(0.2)
        alive = httpx.get(f"{bridge.base_url}/healthz", timeout=10).status_code
        received = _read_all(sock, timeout=15)
    assert alive == 200
    assert received.startswith(b"HTTP/1.1 200") and len(received) < 11_000_000  # cut short: 11.7 MB in all


def test_a_client_that_leaves_mid_wait_frees_it_and_is_logged_as_gone_not_as_a_server_error(tmp_path, thread, reviewer):
    """A wait_for_messages whose client disconnects ends at once (the gauge falls back to zero)
    and its request line says 499, the client's doing, where a crash would say 500."""
    call = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "wait_for_messages", "arguments": {"thread_id": str(thread.pk), "timeout_seconds": 40}}})
    with bridge_server(tmp_path, server="gunicorn", workers=1) as bridge:
        sock = _connect(_port(bridge.base_url))
        sock.sendall(
            f"POST /v1/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token_for(reviewer)}\r\n"
            "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
            f"MCP-Protocol-Version: 2025-06-18\r\nX-Request-ID: leaving-1\r\nContent-Length: {len(call)}\r\n\r\n"
            f"{call}".encode())
        assert _until(lambda: _waiting(bridge.base_url) == 1), "the wait never started"
        sock.close()
        freed = _until(lambda: _waiting(bridge.base_url) == 0)
        logged = _until(lambda: "leaving-1" in bridge.log())
        line = next(line for line in bridge.log().splitlines() if "leaving-1" in line)
    assert freed and logged
    assert "status=499" in line and "wait_for_messages" in line, line


def _waiting(base_url: str) -> float:
    found = re.search(r"^orkiva_mcp_waiters (\S+)$", httpx.get(f"{base_url}/metrics", timeout=10).text, re.M)
    return float(found.group(1)) if found else 0.0


def _until(predicate, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_head_trickled_behind_a_long_request_is_cut_once_that_request_is_answered(tmp_path, thread, reviewer):
    """HTTP pipelining: a 4 s wait, and behind it on the same connection the start of a next
    request whose head then trickles a byte every half second. The wait is answered; the trickled
    head gets its ORKIVA_HEADER_TIMEOUT_SECONDS (2) from then, and the connection is closed."""
    call = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "wait_for_messages", "arguments": {"thread_id": str(thread.pk), "timeout_seconds": 4}}})
    wait = (f"POST /v1/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token_for(reviewer)}\r\n"
            "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
            f"MCP-Protocol-Version: 2025-06-18\r\nContent-Length: {len(call)}\r\n\r\n{call}")
    env = subprocess_env(ORKIVA_HEADER_TIMEOUT_SECONDS="2")
    with bridge_server(tmp_path, server="gunicorn", workers=1, env=env) as bridge:
        sock = _connect(_port(bridge.base_url))
        sock.sendall((wait + "POST /v1/mcp HTTP/1.1\r\nHo").encode())
        received, closed_after, started = b"", None, time.monotonic()
        sock.setblocking(False)
        while time.monotonic() - started < 30:
            readable, _, _ = select.select([sock], [], [], 0.5)
            try:
                if readable:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    received += chunk
                sock.send(b"x")
            except OSError:
                break
        elapsed = time.monotonic() - started
        closed_after = elapsed if elapsed < 30 else None
        sock.close()
        alive = httpx.get(f"{bridge.base_url}/healthz", timeout=10).status_code
    assert received.startswith(b"HTTP/1.1 200"), received[:200]
    assert closed_after is not None and closed_after < 15, closed_after  # 4 s of wait, then 2 s (re-armed once)
    assert alive == 200
