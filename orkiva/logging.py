"""Structured logs (structlog) for the bridge, the qcluster and the commands: one JSON object
per line in production, readable key=value lines in development (ORKIVA_LOG_FORMAT).

Every line, from structlog loggers and from the standard library's alike (Django, django-q2,
`logging.getLogger(...)` in our apps), goes through one stdlib handler whose structlog
formatter adds the call's context: request_id, operation and the caller (agent_id,
workspace_id, role) from orkiva.context. Settings builds the dictConfig with
`logging_config()`; Django hands it to `configure()` (LOGGING_CONFIG).
"""
from __future__ import annotations

import logging
import logging.config
import os
import sys
from typing import Any

import structlog

from orkiva.context import log_context

FORMATS = ("console", "json")


def add_call_context(logger: Any, method_name: str, event_dict: dict) -> dict:
    """request_id, operation and caller of the current request, command or job."""
    for key, value in log_context().items():
        event_dict.setdefault(key, value)
    return event_dict


def add_pid(logger: Any, method_name: str, event_dict: dict) -> dict:
    """Which process wrote the line: gunicorn workers and qcluster workers share one stream."""
    event_dict.setdefault("pid", os.getpid())
    return event_dict


def _shared_processors() -> list:
    return [
        structlog.contextvars.merge_contextvars,
        add_call_context,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
    ]


def formatter(fmt: str = "console") -> structlog.stdlib.ProcessorFormatter:
    """The one formatter of the one handler (referenced from LOGGING by dotted path)."""
    if fmt == "json":
        final = [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            add_pid,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(sort_keys=False),
        ]
    else:
        final = [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(), sort_keys=False),
        ]
    return structlog.stdlib.ProcessorFormatter(foreign_pre_chain=_shared_processors(), processors=final)


def logging_config(*, fmt: str, level: str) -> dict:
    """The dictConfig for settings.LOGGING: everything to stderr through the structlog formatter."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}")
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structured": {"()": "orkiva.logging.formatter", "fmt": fmt}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            # Django's own handlers (console in DEBUG, mail_admins) are dropped: everything propagates.
            "django": {"handlers": [], "level": level, "propagate": True},
            # The bridge writes its own request line (orkiva.request); these would repeat it.
            "django.server": {"handlers": [], "level": "ERROR", "propagate": True},
            "django.request": {"handlers": [], "level": "ERROR", "propagate": True},
            "django-q": {"handlers": [], "level": level, "propagate": True},
            # The MCP SDK logs every stateless request's transport at INFO; its warnings and errors stay.
            "mcp": {"handlers": [], "level": "WARNING", "propagate": True},
        },
    }


def configure(config: dict) -> None:
    """Django's LOGGING_CONFIG hook: apply the dictConfig, then route structlog through it."""
    logging.config.dictConfig(config)
    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
