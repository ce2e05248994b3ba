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
