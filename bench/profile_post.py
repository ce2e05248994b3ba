"""Where one post's CPU goes, in-process: N posts through Django's WSGI handler (middleware, DRF or
the MCP adapter, the service) with no HTTP server, in the production configuration (JSON request
log lines at INFO, sent to /dev/null here), then the same under cProfile. Run by hand:

    .venv/bin/python bench/profile_post.py [--posts 2000] [--top 40] [--mcp]

Prints the statements one post runs, its wall time and CPU (all threads of the process: with
--mcp the SDK's event loop thread too), and the profile. gunicorn's share (HTTP parsing, its
loop, the sockets) is not in these figures: compare with bench/posts.py's bridge CPU per post.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import os
import pstats
import sys
import time
import uuid

import common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--sort", default="cumulative")
    parser.add_argument("--mcp", action="store_true", help="post through /v1/mcp (tools/call post_message)")
    args = parser.parse_args()
    os.environ.setdefault("ORKIVA_ENV", "production")
    os.environ.setdefault("ORKIVA_SIGNING_KEY", "bench-profile-" + "k" * 32)
    common.setup_django()
    from django.core.wsgi import get_wsgi_application
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from policy.identity import Actor
    from threads.services import thread_create

    application = get_wsgi_application()  # (sets logging up again)
    for handler in logging.getLogger().handlers:  # the request lines are produced, not printed
        handler.setStream(open(os.devnull, "w"))
    common.reset_tables()
    coordinator = Actor(agent_id="bench-coordinator", workspace_id="bench", role="coordinator", session_id="bench")
    threads = [str(thread_create(actor=coordinator, title=f"p{i}", type="bench", participants=["a", "b"]).pk)
               for i in range(16)]
    token = common.token("a", "bench")

    def post(i: int) -> None:
        thread_id, key = threads[i % len(threads)], uuid.uuid4().hex
        if args.mcp:
            path, expected = "/v1/mcp", "200"
            payload = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
                "name": "post_message", "arguments": {"thread_id": thread_id, "body": "profile body",
                                                     "idempotency_key": key}}}
        else:
            path, expected = f"/v1/threads/{thread_id}/messages", "201"
            payload = {"body": "profile body", "idempotency_key": key}
        body = json.dumps(payload).encode()
        environ = {
            "REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "127.0.0.1",
            "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
            "HTTP_AUTHORIZATION": f"Bearer {token}", "HTTP_ACCEPT": "application/json, text/event-stream",
            "HTTP_MCP_PROTOCOL_VERSION": "2025-06-18", "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
        }
        status: list[str] = []
        content = b"".join(application(environ, lambda s, headers, exc_info=None: status.append(s)))
        assert status[0].startswith(expected) and b'"isError":true' not in content, (status, content[:300])

    for i in range(300):  # warm-up: connections, prepared statements, caches
        post(i)
    with CaptureQueriesContext(connection) as queries:
        post(0)
    print(f"statements per post ({len(queries.captured_queries)}; the connection health check is not listed):")
    for q in queries.captured_queries:
        print(f"  {q['sql'][:150]}")
    t0, cpu0 = time.perf_counter(), common.process_cpu_seconds()
    for i in range(args.posts):
        post(i)
    wall, cpu = time.perf_counter() - t0, common.process_cpu_seconds() - cpu0
    print(f"\n{args.posts} posts without the profiler: {wall / args.posts * 1000:.2f} ms wall, "
          f"{cpu / args.posts * 1000:.2f} ms CPU per post")
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    cpu0 = common.process_cpu_seconds()
    profiler.enable()
    for i in range(args.posts):
        post(i)
    profiler.disable()
    wall, cpu = time.perf_counter() - t0, common.process_cpu_seconds() - cpu0
    print(f"\n{args.posts} posts: {wall / args.posts * 1000:.2f} ms wall, {cpu / args.posts * 1000:.2f} ms CPU per post "
          "(under cProfile, which inflates Python-heavy code; it sees this thread only)")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats(args.sort).print_stats(args.top)
    print(out.getvalue())


if __name__ == "__main__":
    main()
