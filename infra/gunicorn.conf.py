"""gunicorn settings for production: `gunicorn orkiva.wsgi:application -c infra/gunicorn.conf.py`."""
import os

bind = os.environ.get("ORKIVA_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("ORKIVA_WORKERS", "2"))
# Threads let one worker overlap database waits; the bridge holds no per-process state.
threads = int(os.environ.get("ORKIVA_THREADS", "4"))
worker_class = "gthread"
timeout = int(os.environ.get("ORKIVA_WORKER_TIMEOUT", "60"))
graceful_timeout = 30
keepalive = 5
accesslog = None  # the bridge logs each request itself, with its request id
errorlog = "-"

# Metrics from several workers: each worker counts into files under PROMETHEUS_MULTIPROC_DIR
# and /metrics sums them (docs/operations.md). The directory must be in the environment
# before a worker imports prometheus_client, and wiped at deploy while nothing runs.
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("ORKIVA_METRICS_DIR")
if _metrics_dir:
    os.makedirs(_metrics_dir, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir


def child_exit(server, worker):
    """A worker exited: drop its live gauges from the multiprocess directory (its counters stay)."""
    if _metrics_dir:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, _metrics_dir)


def post_fork(server, worker):
    """Before the worker loads the bridge: MCP waits hold a request thread each, so cap them at the
    worker's threads minus one, keeping a thread for the post that wakes them (docs/mcp.md).
    `server.cfg.threads` is the effective value, --threads on the command line included."""
    os.environ.setdefault("ORKIVA_MCP_MAX_WAITERS", str(max(1, server.cfg.threads - 1)))
