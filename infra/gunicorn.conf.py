"""gunicorn settings for production: `gunicorn -c infra/gunicorn.conf.py` (docs/operations.md).

The bridge runs as an ASGI application (orkiva.asgi) under uvicorn workers (orkiva.worker): one
event loop per worker holds every connection, waiting MCP calls included, and a small thread pool
per worker (ORKIVA_THREADS) runs the database work.
"""
import os

wsgi_app = "orkiva.asgi:application"  # gunicorn's name for the application, ASGI here
worker_class = "orkiva.worker.BridgeWorker"
bind = os.environ.get("ORKIVA_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("ORKIVA_WORKERS", "2"))
# The loop must answer gunicorn's heartbeat within this; a worker blocked longer is restarted.
timeout = int(os.environ.get("ORKIVA_WORKER_TIMEOUT", "60"))
# On a restart, requests in flight (waits of up to ORKIVA_MCP_WAIT_MAX_SECONDS) get this long.
graceful_timeout = int(os.environ.get("ORKIVA_GRACEFUL_TIMEOUT", "30"))
keepalive = int(os.environ.get("ORKIVA_KEEPALIVE_SECONDS", "5"))  # idle keep-alive connections close after it
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
