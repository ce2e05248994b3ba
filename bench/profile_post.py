"""Where one REST post's time goes, in-process: N posts through Django's full stack (WSGI handler,
middleware, DRF, the service) under cProfile, with the queries each post makes. Run by hand:

    .venv/bin/python bench/profile_post.py [--posts 2000] [--top 40]

No HTTP server and no network: this is the bridge's own CPU per post (gunicorn's share is not in it).
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
import uuid

import common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--sort", default="cumulative")
    args = parser.parse_args()
    common.setup_django()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from policy.identity import Actor
    from threads.services import thread_create

    common.reset_tables()
    coordinator = Actor(agent_id="bench-coordinator", workspace_id="bench", role="coordinator", session_id="bench")
    threads = [str(thread_create(actor=coordinator, title=f"p{i}", type="bench", participants=["a", "b"]).pk)
               for i in range(16)]
    client = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {common.token('a', 'bench')}")

    def post(i: int):
        response = client.post(f"/v1/threads/{threads[i % len(threads)]}/messages",
                               {"body": "profile body", "idempotency_key": uuid.uuid4().hex},
                               content_type="application/json")
        assert response.status_code == 201, response.content

    for i in range(200):  # warm-up
        post(i)
    with CaptureQueriesContext(connection) as queries:
        post(0)
    print(f"queries per post ({len(queries.captured_queries)}):")
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
          "(under cProfile, which inflates Python-heavy code)")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats(args.sort).print_stats(args.top)
    print(out.getvalue())


if __name__ == "__main__":
    main()
