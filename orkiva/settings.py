"""Orkiva's settings: every knob read from the environment here, and only here (docs/configuration.md)."""
from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A `.env` file beside manage.py is honoured for local runs; the process environment wins.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

ORKIVA_ENV = env.str("ORKIVA_ENV", default="development")
if ORKIVA_ENV not in {"development", "production"}:
    raise ImproperlyConfigured("ORKIVA_ENV must be 'development' or 'production'")
PRODUCTION = ORKIVA_ENV == "production"

VAR_DIR = Path(env.str("ORKIVA_VAR_DIR", default=str(BASE_DIR / "var")))
MIN_SIGNING_KEY_BYTES = 32


def _local_signing_key(path: Path) -> str:
    """Read the development signing key under var/, creating it once (safe when processes race)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    for _ in range(50):  # another process may be between create and write
        key = path.read_text().strip()
        if key:
            return key
        import time

        time.sleep(0.01)
    raise ImproperlyConfigured(f"signing key file {path} is empty")


ORKIVA_SIGNING_KEY = env.str("ORKIVA_SIGNING_KEY", default="")
if not ORKIVA_SIGNING_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured(
            "ORKIVA_SIGNING_KEY is required when ORKIVA_ENV=production (at least 32 bytes)"
        )
    ORKIVA_SIGNING_KEY = _local_signing_key(VAR_DIR / "signing.key")
if len(ORKIVA_SIGNING_KEY.encode()) < MIN_SIGNING_KEY_BYTES:
    raise ImproperlyConfigured("ORKIVA_SIGNING_KEY must be at least 32 bytes")
# Key rotation (docs/runbook.md): keys that signed tokens still in circulation. They verify, never sign.
ORKIVA_SIGNING_KEYS_PREVIOUS = [k for k in env.list("ORKIVA_SIGNING_KEYS_PREVIOUS", default=[]) if k]
if any(len(k.encode()) < MIN_SIGNING_KEY_BYTES for k in ORKIVA_SIGNING_KEYS_PREVIOUS):
    raise ImproperlyConfigured("every key in ORKIVA_SIGNING_KEYS_PREVIOUS must be at least 32 bytes")

SECRET_KEY = env.str(
    "DJANGO_SECRET_KEY",
    default=hashlib.sha256(b"django-secret:" + ORKIVA_SIGNING_KEY.encode()).hexdigest(),
)
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("ORKIVA_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "rest_framework",
    "drf_spectacular",
    "django_prometheus",
    "orkiva.apps.OrkivaConfig",
    "policy",
    "threads",
    "messaging",
    "sessions.apps.AgentSessionsConfig",
    "django_q",
    "supervisor.apps.SupervisorConfig",
    "pilot",
]

# Django's and django-prometheus's middleware through orkiva.middleware, which runs their hooks
# inline in the async chain (MCP under ASGI) instead of on asgiref's one shared thread.
MIDDLEWARE = [
    "orkiva.middleware.PrometheusBeforeMiddleware",  # first: times the whole stack
    "orkiva.middleware.RequestIdMiddleware",
    "orkiva.middleware.SecurityMiddleware",
    "orkiva.middleware.CommonMiddleware",
    "orkiva.middleware.PrometheusAfterMiddleware",  # last: labels by view and status
]

ROOT_URLCONF = "orkiva.urls"
WSGI_APPLICATION = "orkiva.wsgi.application"
ASGI_APPLICATION = "orkiva.asgi.application"
APPEND_SLASH = False

# --- database -------------------------------------------------------------------------
DATABASE_URL = env.str("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'orkiva.sqlite3'}")
_db = environ.Env.db_url_config(DATABASE_URL)
if _db["ENGINE"] == "django.db.backends.sqlite3":
    if _db["NAME"] not in ("", ":memory:"):
        Path(_db["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # Concurrent writers on SQLite: take the write lock at BEGIN, wait instead of failing.
    _db.setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    _db["TEST"] = {"NAME": str(VAR_DIR / "test-orkiva.sqlite3")}
else:
    _db["CONN_MAX_AGE"] = env.int("ORKIVA_DB_CONN_MAX_AGE", default=60)
    # A health check costs a `SELECT 1` round trip on the first query of every request that reuses
    # a connection; without it a connection the server dropped fails one request (503) before
    # Django discards it (docs/performance.md).
    _db["CONN_HEALTH_CHECKS"] = env.bool("ORKIVA_DB_CONN_HEALTH_CHECKS", default=True)
    # Server-side binding, and psycopg prepares a statement a connection has run 5 times: the hot
    # paths' statements are planned once per connection instead of on every request.
    if _db["ENGINE"].endswith("postgresql") and env.bool("ORKIVA_DB_PREPARED_STATEMENTS", default=True):
        options = _db.setdefault("OPTIONS", {})
        options.setdefault("server_side_binding", True)
        options.setdefault("prepare_threshold", 5)  # DATABASE_URL's ?prepare_threshold= wins
# The same backends wrapped by django-prometheus, which counts connections, queries and errors.
_db["ENGINE"] = _db["ENGINE"].replace("django.db.backends.", "django_prometheus.db.backends.", 1)
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- HTTP and API -------------------------------------------------------------------------
# Whole request bodies past this are refused with 413 before they are parsed.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("ORKIVA_MAX_REQUEST_BYTES", default=1024 * 1024)

# --- the production server (ASGI under gunicorn's uvicorn workers; docs/operations.md) -----------
# Set by orkiva/asgi.py before Django starts: this process serves ASGI (MCP natively on the loop).
ORKIVA_ASGI = env.bool("ORKIVA_ASGI", default=False)
# Threads per ASGI worker for sync Django work (REST requests, the MCP tools' ORM steps); each holds
# at most one database connection. Waiting MCP calls hold none of them.
ORKIVA_THREADS = env.int("ORKIVA_THREADS", default=4)
# A request's whole body must arrive within this many seconds (else 408 and the connection closed);
# a client must take its response within ORKIVA_SEND_TIMEOUT_SECONDS (else it is dropped).
ORKIVA_BODY_TIMEOUT_SECONDS = env.float("ORKIVA_BODY_TIMEOUT_SECONDS", default=10)
ORKIVA_SEND_TIMEOUT_SECONDS = env.float("ORKIVA_SEND_TIMEOUT_SECONDS", default=30)
if ORKIVA_THREADS < 1 or ORKIVA_BODY_TIMEOUT_SECONDS <= 0 or ORKIVA_SEND_TIMEOUT_SECONDS <= 0:
    raise ImproperlyConfigured(
        "ORKIVA_THREADS must be at least 1; ORKIVA_BODY_TIMEOUT_SECONDS and ORKIVA_SEND_TIMEOUT_SECONDS positive"
    )

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["orkiva.auth.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["orkiva.api_base.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "orkiva.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "UNAUTHENTICATED_TOKEN": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Orkiva bridge API",
    "DESCRIPTION": "Threads, ordered messages, read cursors and agent sessions for AI coding agents.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "orkiva.schema.blank_alternative_any_of"],
}

# --- MCP (/v1/mcp and manage.py orkiva_mcp_stdio; docs/mcp.md) --------------------------------
def _mcp_hosts_from(allowed_hosts: list[str]) -> list[str]:
    """Django's host names as the MCP SDK's Host patterns: each name with and without a port.
    Django's wildcards (".example.com", "*") have no SDK equivalent and are left out."""
    names = [h for h in allowed_hosts if h and not h.startswith(".") and h != "*"]
    return [pattern for name in names for pattern in (name, f"{name}:*")]


# The Host headers the MCP endpoint answers (DNS-rebinding protection); others get 421.
ORKIVA_MCP_ALLOWED_HOSTS = env.list("ORKIVA_MCP_ALLOWED_HOSTS", default=_mcp_hosts_from(ALLOWED_HOSTS))
# Browser Origins the endpoint answers (requests without an Origin, like every agent's, pass).
ORKIVA_MCP_ALLOWED_ORIGINS = env.list(
    "ORKIVA_MCP_ALLOWED_ORIGINS",
    default=[f"{scheme}://{host}" for host in ORKIVA_MCP_ALLOWED_HOSTS for scheme in ("http", "https")],
)
# wait_for_messages: the longest a call may block (its timeout argument is capped to this), and
# how often one process checks, in one query for all its waiters, whether their threads moved.
ORKIVA_MCP_WAIT_MAX_SECONDS = env.float("ORKIVA_MCP_WAIT_MAX_SECONDS", default=45)
ORKIVA_MCP_WAIT_POLL_SECONDS = env.float("ORKIVA_MCP_WAIT_POLL_SECONDS", default=0.5)
# On PostgreSQL, one LISTEN connection per process learns of every committed post at once (any
# process's); without it (SQLite, or off) waiters of other processes' posts wait for the next poll.
# On by default under ASGI (production); the dev server and the in-process test client poll.
ORKIVA_MCP_LISTEN = env.bool("ORKIVA_MCP_LISTEN", default=ORKIVA_ASGI)
# How many wait_for_messages reads (before and after a wait) one process runs at once. A mass wake
# (one post, many waiters) then needs this many database connections, not one per waiter.
ORKIVA_MCP_WAIT_DB_SLOTS = env.int("ORKIVA_MCP_WAIT_DB_SLOTS", default=4)
if ORKIVA_MCP_WAIT_DB_SLOTS < 1:
    raise ImproperlyConfigured("ORKIVA_MCP_WAIT_DB_SLOTS must be at least 1")
# How many wait_for_messages calls one process lets block at once (0: no cap); past it a call is
# refused at once (too_many_waiters). Under ASGI a wait holds no thread; under the dev server each
# holds its request thread.
ORKIVA_MCP_MAX_WAITERS = env.int("ORKIVA_MCP_MAX_WAITERS", default=0)
if ORKIVA_MCP_MAX_WAITERS < 0:
    raise ImproperlyConfigured("ORKIVA_MCP_MAX_WAITERS must be 0 (no cap) or more")
if ORKIVA_MCP_WAIT_MAX_SECONDS <= 0 or ORKIVA_MCP_WAIT_POLL_SECONDS <= 0:
    raise ImproperlyConfigured("ORKIVA_MCP_WAIT_MAX_SECONDS and ORKIVA_MCP_WAIT_POLL_SECONDS must be positive")

# --- tokens ----------------------------------------------------------------------------------
ORKIVA_JWT_ALGORITHM = env.str("ORKIVA_JWT_ALGORITHM", default="HS256")
if ORKIVA_JWT_ALGORITHM not in {"HS256", "HS384", "HS512"}:
    raise ImproperlyConfigured("ORKIVA_JWT_ALGORITHM must be one of HS256, HS384, HS512")
ORKIVA_JWT_ISSUER = env.str("ORKIVA_JWT_ISSUER", default="orkiva")
ORKIVA_JWT_AUDIENCE = env.str("ORKIVA_JWT_AUDIENCE", default="orkiva-bridge")
ORKIVA_JWT_LEEWAY_SECONDS = env.int("ORKIVA_JWT_LEEWAY_SECONDS", default=5)
ORKIVA_TOKEN_TTL_SECONDS = env.int("ORKIVA_TOKEN_TTL_SECONDS", default=900)
ORKIVA_TOKEN_MAX_TTL_SECONDS = env.int("ORKIVA_TOKEN_MAX_TTL_SECONDS", default=86400)

# --- domain limits ---------------------------------------------------------------------------
ORKIVA_MAX_MESSAGE_BODY_CHARS = env.int("ORKIVA_MAX_MESSAGE_BODY_CHARS", default=65536)
ORKIVA_MAX_PARTICIPANTS = env.int("ORKIVA_MAX_PARTICIPANTS", default=32)
ORKIVA_READ_LIMIT_DEFAULT = env.int("ORKIVA_READ_LIMIT_DEFAULT", default=50)
ORKIVA_READ_LIMIT_MAX = env.int("ORKIVA_READ_LIMIT_MAX", default=500)
# A page of messages also ends before the bodies pass this many bytes (UTF-8); the first message is
# always in. It bounds a response's size and the worker's memory whatever `limit` a reader asks.
ORKIVA_READ_MAX_BYTES = env.int("ORKIVA_READ_MAX_BYTES", default=1024 * 1024)
if ORKIVA_READ_MAX_BYTES < 1:
    raise ImproperlyConfigured("ORKIVA_READ_MAX_BYTES must be at least 1")

# --- policy controls (docs/configuration.md, docs/operator.md) ------------------------------
# Read through policy.config.policy_config(), never directly. 0 turns a control off.
# Posts per agent per window: in one thread, and across its workspace. Fixed windows counted in
# the database, so every bridge process shares them.
ORKIVA_RATE_LIMIT_WINDOW_SECONDS = env.int("ORKIVA_RATE_LIMIT_WINDOW_SECONDS", default=60)
ORKIVA_RATE_LIMIT_THREAD_POSTS = env.int("ORKIVA_RATE_LIMIT_THREAD_POSTS", default=30)
ORKIVA_RATE_LIMIT_WORKSPACE_POSTS = env.int("ORKIVA_RATE_LIMIT_WORKSPACE_POSTS", default=120)
# Turns (posts) without progress before an escalation opens, and before the thread is blocked.
ORKIVA_LOOP_THRESHOLD_TURNS = env.int("ORKIVA_LOOP_THRESHOLD_TURNS", default=10)
ORKIVA_NO_PROGRESS_BLOCK_TURNS = env.int("ORKIVA_NO_PROGRESS_BLOCK_TURNS", default=20)
# The n-th finding with the same normalized body blocks the thread.
ORKIVA_REPEATED_FINDING_LIMIT = env.int("ORKIVA_REPEATED_FINDING_LIMIT", default=3)
# Repeated refusals (one actor, action and reason) within this many seconds are one audit row and a
# count, not a row each; 0 writes a row for every refusal.
ORKIVA_AUDIT_REFUSAL_WINDOW_SECONDS = env.int("ORKIVA_AUDIT_REFUSAL_WINDOW_SECONDS", default=60)
# Data policy (backlog 3.5): keep everything, filter nothing, until an operator opts in.
ORKIVA_RETENTION_MODE = env.str("ORKIVA_RETENTION_MODE", default="indefinite")
if ORKIVA_RETENTION_MODE not in {"indefinite", "expire"}:
    raise ImproperlyConfigured("ORKIVA_RETENTION_MODE must be 'indefinite' or 'expire'")
ORKIVA_RETENTION_DAYS = env.int("ORKIVA_RETENTION_DAYS", default=0)
if ORKIVA_RETENTION_MODE == "expire" and ORKIVA_RETENTION_DAYS < 1:
    raise ImproperlyConfigured("ORKIVA_RETENTION_MODE=expire needs ORKIVA_RETENTION_DAYS of at least 1")
# Flags reserved for later versions: nothing redacts or filters content yet, so asking for it
# refuses to start rather than run without the protection the operator asked for.
ORKIVA_CONTENT_REDACTION = env.bool("ORKIVA_CONTENT_REDACTION", default=False)
ORKIVA_CONTENT_FILTERING = env.bool("ORKIVA_CONTENT_FILTERING", default=False)
for _flag in ("ORKIVA_CONTENT_REDACTION", "ORKIVA_CONTENT_FILTERING"):
    if globals()[_flag]:
        raise ImproperlyConfigured(f"{_flag}=true is not supported by this version (content is stored as sent); "
                                   "leave it false (docs/configuration.md, Data policy)")

# --- supervisor -------------------------------------------------------------------------------
# The wake chain (docs/supervisor.md). Every number the backlog names is a setting here.
ORKIVA_PUBLIC_URL = env.str("ORKIVA_PUBLIC_URL", default="http://127.0.0.1:8000")
ORKIVA_TMUX_SOCKET = env.str("ORKIVA_TMUX_SOCKET", default="orkiva")
ORKIVA_TMUX_CONFIG = env.str("ORKIVA_TMUX_CONFIG", default="")
ORKIVA_TMUX_SESSION_PREFIX = env.str("ORKIVA_TMUX_SESSION_PREFIX", default="orkiva")
ORKIVA_SUPERVISOR_HOST = env.str("ORKIVA_SUPERVISOR_HOST", default="")  # empty: socket.gethostname()
# The token of a resumed or spawned run: it lasts the run (the command's timeout) at least.
ORKIVA_RUNTIME_TOKEN_TTL_SECONDS = env.int("ORKIVA_RUNTIME_TOKEN_TTL_SECONDS", default=ORKIVA_TOKEN_TTL_SECONDS)
# The credential of a launched agent: the CLIs read their token once, at start-up, so it lasts as long
# as the runtime is registered (up to this), and is revoked when the runtime is deregistered, expires,
# goes offline or is launched again (docs/supervisor.md, "Credentials").
ORKIVA_RUNTIME_CREDENTIAL_TTL_SECONDS = env.int("ORKIVA_RUNTIME_CREDENTIAL_TTL_SECONDS", default=30 * 86400)
# The supervisor's files per agent (the MCP and settings files a launch writes for Claude Code).
ORKIVA_RUNTIME_DIR = Path(env.str("ORKIVA_RUNTIME_DIR", default=str(VAR_DIR / "runtimes")))
# The agent CLIs: their executables (a name on PATH, or a path).
ORKIVA_AGENT_CLIS = {
    "codex": env.str("ORKIVA_CODEX_BIN", default="codex"),
    "claude": env.str("ORKIVA_CLAUDE_BIN", default="claude"),
}
ORKIVA_RUNTIME_IDLE_SECONDS = env.int("ORKIVA_RUNTIME_IDLE_SECONDS", default=300)
ORKIVA_RUNTIME_EXPIRE_SECONDS = env.int("ORKIVA_RUNTIME_EXPIRE_SECONDS", default=43200)
ORKIVA_WAKE_AUTO = env.bool("ORKIVA_WAKE_AUTO", default=True)
# How long a pasted prompt may take to be submitted (the TUI's turn starts, or its input line empties).
ORKIVA_WAKE_SUBMIT_TIMEOUT_SECONDS = env.float("ORKIVA_WAKE_SUBMIT_TIMEOUT_SECONDS", default=5)
# A busy or approval state older than this, with no signal since, is no longer believed (a lost Stop).
ORKIVA_WAKE_BUSY_MAX_SECONDS = env.float("ORKIVA_WAKE_BUSY_MAX_SECONDS", default=1800)
ORKIVA_WAKE_QUIET_WINDOW_SECONDS = env.float("ORKIVA_WAKE_QUIET_WINDOW_SECONDS", default=20)
ORKIVA_WAKE_RECHECK_SECONDS = env.float("ORKIVA_WAKE_RECHECK_SECONDS", default=5)
ORKIVA_WAKE_MAX_DEFER_SECONDS = env.float("ORKIVA_WAKE_MAX_DEFER_SECONDS", default=60)
ORKIVA_WAKE_QUEUE_TTL_SECONDS = env.float("ORKIVA_WAKE_QUEUE_TTL_SECONDS", default=3600)
ORKIVA_WAKE_ACK_TIMEOUT_SECONDS = env.float("ORKIVA_WAKE_ACK_TIMEOUT_SECONDS", default=120)
ORKIVA_WAKE_ACK_POLL_SECONDS = env.float("ORKIVA_WAKE_ACK_POLL_SECONDS", default=2)
ORKIVA_WAKE_INJECT_ATTEMPTS = env.int("ORKIVA_WAKE_INJECT_ATTEMPTS", default=2)
ORKIVA_WAKE_INJECT_BACKOFF_SECONDS = env.float("ORKIVA_WAKE_INJECT_BACKOFF_SECONDS", default=5)
ORKIVA_WAKE_RESUME_ATTEMPTS = env.int("ORKIVA_WAKE_RESUME_ATTEMPTS", default=2)
ORKIVA_WAKE_RESUME_BACKOFF_SECONDS = env.float("ORKIVA_WAKE_RESUME_BACKOFF_SECONDS", default=10)
ORKIVA_WAKE_STALE_HEARTBEAT_SECONDS = env.int("ORKIVA_WAKE_STALE_HEARTBEAT_SECONDS", default=12 * 3600)
ORKIVA_WAKE_COMMAND_TIMEOUT_SECONDS = env.float("ORKIVA_WAKE_COMMAND_TIMEOUT_SECONDS", default=600)
ORKIVA_WAKE_OUTPUT_TAIL_CHARS = env.int("ORKIVA_WAKE_OUTPUT_TAIL_CHARS", default=2000)
ORKIVA_WAKE_DEDUPE_WINDOW_SECONDS = env.float("ORKIVA_WAKE_DEDUPE_WINDOW_SECONDS", default=60)
ORKIVA_WAKE_RATE_LIMIT = env.int("ORKIVA_WAKE_RATE_LIMIT", default=12)
ORKIVA_WAKE_RATE_WINDOW_SECONDS = env.float("ORKIVA_WAKE_RATE_WINDOW_SECONDS", default=3600)
ORKIVA_WAKE_SWEEP_MINUTES = env.int("ORKIVA_WAKE_SWEEP_MINUTES", default=1)
ORKIVA_WAKE_PROMPT = env.str(
    "ORKIVA_WAKE_PROMPT",
    default="Orkiva wake {wake_ref}: unread messages for you in thread {thread_id} ({title}). "
    "Read them with read_messages, act on them, then ack_read.{reason}",
)
ORKIVA_WAKE_SPAWN_PROMPT = env.str(
    "ORKIVA_WAKE_SPAWN_PROMPT",
    default="Orkiva wake {wake_ref}: you are {agent_id} in workspace {workspace_id}. A thread needs you; your earlier "
    "session could not be resumed. Thread summary:\n{summary}\nRead the thread with read_messages, "
    "act on it, then ack_read.",
)
# Resume and spawn commands: Codex CLI and Claude Code are built in (supervisor/clis); for runtime
# type `other`, templates split like a shell would (shlex) but executed as argv lists, never through
# a shell; each {placeholder} fills exactly one argument. Empty: the step is skipped.
ORKIVA_WAKE_COMMANDS = {
    "other": {
        "resume": env.str("ORKIVA_OTHER_RESUME_COMMAND", default=""),
        "spawn": env.str("ORKIVA_OTHER_SPAWN_COMMAND", default=""),
    },
}

# django-q2 (manage.py qcluster), ORM broker on the default database. Read once at import by
# django_q: change these through the environment, not override_settings.
_Q_WORKERS = env.int("ORKIVA_Q_WORKERS", default=2)
_Q_QUEUE_LIMIT = env.int("ORKIVA_Q_QUEUE_LIMIT", default=2)
# A job runs at most one runtime command, so the job timeout covers the command's plus a margin.
_Q_TIMEOUT = env.int("ORKIVA_Q_TIMEOUT", default=int(ORKIVA_WAKE_COMMAND_TIMEOUT_SECONDS) + 60)
Q_CLUSTER = {
    "name": env.str("ORKIVA_Q_CLUSTER_NAME", default="orkiva"),
    "orm": "default",
    "workers": _Q_WORKERS,
    "queue_limit": _Q_QUEUE_LIMIT,
    "timeout": _Q_TIMEOUT,
    # retry counts from delivery, time queued inside the cluster included: keep it above
    # timeout * (1 + queue_limit / workers) or a long job is delivered twice (RESEARCH.md).
    "retry": env.int("ORKIVA_Q_RETRY", default=int(_Q_TIMEOUT * (1 + _Q_QUEUE_LIMIT / _Q_WORKERS)) + 30),
    "max_attempts": env.int("ORKIVA_Q_MAX_ATTEMPTS", default=3),
    "poll": env.float("ORKIVA_Q_POLL", default=0.5),
    "save_limit": env.int("ORKIVA_Q_SAVE_LIMIT", default=1000),
    "catch_up": False,
    "ack_failures": True,
    "label": "Orkiva supervisor",
}
if Q_CLUSTER["retry"] <= _Q_TIMEOUT * (1 + _Q_QUEUE_LIMIT / _Q_WORKERS):
    raise ImproperlyConfigured("ORKIVA_Q_RETRY must exceed ORKIVA_Q_TIMEOUT * (1 + queue_limit / workers)")

# A shared cache, so every process (bridge, qcluster, commands) sees django-q2's cluster
# heartbeats. Its table is created by `migrate` (supervisor's post_migrate hook).
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": env.str("ORKIVA_CACHE_TABLE", default="orkiva_cache"),
    }
}

# --- observability (docs/operations.md) -----------------------------------------------------------
# structlog for every process: JSON lines in production, readable lines in development.
from orkiva.logging import logging_config  # noqa: E402  (stdlib + structlog only)

ORKIVA_LOG_LEVEL = env.str("ORKIVA_LOG_LEVEL", default="INFO")
ORKIVA_LOG_FORMAT = env.str("ORKIVA_LOG_FORMAT", default="json" if PRODUCTION else "console")
if ORKIVA_LOG_FORMAT not in {"console", "json"}:
    raise ImproperlyConfigured("ORKIVA_LOG_FORMAT must be 'console' or 'json'")
LOGGING_CONFIG = "orkiva.logging.configure"
LOGGING = logging_config(fmt=ORKIVA_LOG_FORMAT, level=ORKIVA_LOG_LEVEL)

# Metrics of several processes (gunicorn workers, qcluster, commands) are summed from files in
# one directory. prometheus_client picks that mode when it is first imported, from the
# environment: settings run before anything imports it, so the directory is exported here.
_multiproc_env = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
ORKIVA_METRICS_DIR = env.str("ORKIVA_METRICS_DIR", default=_multiproc_env)
if ORKIVA_METRICS_DIR:
    if _multiproc_env and Path(_multiproc_env).resolve() != Path(ORKIVA_METRICS_DIR).resolve():
        raise ImproperlyConfigured("ORKIVA_METRICS_DIR and PROMETHEUS_MULTIPROC_DIR name different directories")
    Path(ORKIVA_METRICS_DIR).mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = ORKIVA_METRICS_DIR

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = False
