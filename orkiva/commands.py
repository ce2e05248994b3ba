"""The base of every `manage.py orkiva_*` command: --json output, exit codes, --reason, operator identity.

Exit codes (docs/operator.md): 0 ok, 1 unexpected failure, 2 usage or invalid input,
3 not found, 4 conflict or forbidden.
"""
from __future__ import annotations

import getpass
import json
import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from orkiva.context import begin_call, bind_caller, bind_request_id, end_call, new_request_id, reset_request_id
from orkiva.errors import DomainError, ValidationFailed, render_domain_error, report_error
from orkiva.versioning import SCHEMA_VERSION
from policy.identity import Actor

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_CONFLICT = 0, 1, 2, 3, 4


def exit_code_for(err: DomainError) -> int:
    if err.status == 404:
        return EXIT_NOT_FOUND
    if err.status in (401, 403, 409, 429):
        return EXIT_CONFLICT
    if err.status in (400, 413):
        return EXIT_USAGE
    return EXIT_FAILURE


class _JsonAwareParser(CommandParser):
    """Usage errors as the same JSON error document when --json was asked for."""

    def error(self, message):
        if "--json" in sys.argv:
            body = render_domain_error(ValidationFailed(message, code="usage_error"))
            sys.stdout.write(json.dumps(body) + "\n")
            sys.exit(EXIT_USAGE)
        super().error(message)


def default_operator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): fall back to the environment
        return os.environ.get("USER", "operator")


class OrkivaCommand(BaseCommand):
    """Subclasses set `mutating`, add their options in `add_options`, and return a dict from `run`."""

    mutating = False
    requires_system_checks: list[str] = []

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.__class__ = _JsonAwareParser  # only error() differs; Django builds the parser itself
        return parser

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="Print one JSON document on stdout.")
        parser.add_argument(
            "--operator", default=None, help="Who is acting (recorded in audit rows); defaults to the OS user."
        )
        if self.mutating:
            parser.add_argument("--reason", default="", help="Why (required; recorded in the audit row).")
        self.add_options(parser)

    def add_options(self, parser) -> None:
        pass

    def operator_actor(self, options: dict[str, Any], *, workspace_id: str) -> Actor:
        actor = Actor.operator(name=options.get("operator") or default_operator(), workspace_id=workspace_id)
        bind_caller(actor)  # the command's log lines name the operator
        return actor

    def run(self, **options) -> dict[str, Any]:
        raise NotImplementedError

    def render_table(self, result: dict[str, Any]) -> str:
        """A readable rendering; commands with list output override this."""
        return render_mapping(result)

    def handle(self, *args, **options):
        token = bind_request_id(new_request_id())
        call_token = begin_call(operation=self.__module__.rsplit(".", 1)[-1])  # the command's name
        try:
            if self.mutating and not str(options.get("reason") or "").strip():
                raise ValidationFailed("This command changes state: give a non-empty --reason.", code="reason_required")
            try:
                result = self.run(**options)
            except DomainError as err:
                report_error(err)
                self._emit_error(err, options)
                sys.exit(exit_code_for(err))
            if options.get("json"):
                # Every document a command prints says its schema version (the REST bodies' own).
                result = {**result, "schema_version": result.get("schema_version", SCHEMA_VERSION)}
                self.stdout.write(json.dumps(result, default=str))
            else:
                self.stdout.write(self.render_table(result))
        except ValidationFailed as err:  # raised before run(): nothing changed
            self._emit_error(err, options)
            sys.exit(exit_code_for(err))
        finally:
            end_call(call_token)
            reset_request_id(token)

    def _emit_error(self, err: DomainError, options: dict[str, Any]) -> None:
        body = render_domain_error(err)
        if options.get("json"):
            self.stdout.write(json.dumps(body, default=str))
        else:
            self.stderr.write(f"error: {err.code}: {err.message}")
            if err.details:
                self.stderr.write(f"details: {json.dumps(err.details, default=str)}")


def render_mapping(data: Any, indent: int = 0) -> str:
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, (dict, list)) and value:
                lines.append(f"{pad}{key}:")
                lines.append(render_mapping(value, indent + 1))
            else:
                lines.append(f"{pad}{key}: {'' if value is None else value}")
    elif isinstance(data, list):
        for item in data:
            if isinstance(item, dict):
                lines.append(f"{pad}- " + ", ".join(f"{k}={v}" for k, v in item.items() if not isinstance(v, (dict, list))))
            else:
                lines.append(f"{pad}- {item}")
    else:
        lines.append(f"{pad}{data}")
    return "\n".join(lines)
