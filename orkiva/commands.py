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

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser, DjangoHelpFormatter
from tabulate import tabulate

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


class _EpilogAsWritten(DjangoHelpFormatter):
    """Django's help layout, with the epilog (what each action needs) kept line by line."""

    def _fill_text(self, text, width, indent):
        return "".join(indent + line for line in text.splitlines(keepends=True))


class OrkivaCommand(BaseCommand):
    """Subclasses set `mutating`, add their options in `add_options`, and return a dict from `run`.
    Commands with actions list what each needs in `action_needs` (shown by --help)."""

    mutating = False
    requires_system_checks: list[str] = []
    action_needs: dict[str, str] = {}

    def create_parser(self, prog_name, subcommand, **kwargs):
        if self.action_needs:
            width = max(len(action) for action in self.action_needs)
            kwargs["epilog"] = "what each action needs:\n" + "\n".join(
                f"  {action:<{width}}  {needs}" for action, needs in self.action_needs.items())
            kwargs["formatter_class"] = _EpilogAsWritten
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
                # Printed once: to a person by _emit_error; the log line only where a machine reads
                # the logs (--json, or JSON logs), not a second copy on the terminal.
                report_error(err, log=bool(options.get("json")) or settings.ORKIVA_LOG_FORMAT == "json")
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
            self.stderr.write(f"error: {err.code}: {err.message} (request id {body['request_id']})")
            if err.details:
                self.stderr.write(f"details: {json.dumps(err.details, default=str)}")


def cell(value: Any) -> str:
    """One value as a table shows it: null as `-`, booleans as JSON writes them, nested values as
    compact JSON (never dropped), long text cut at 80 characters."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        text = json.dumps(value, default=str, separators=(",", ":")) if value else "-"
    else:
        text = " ".join(str(value).split())
    return text if len(text) <= 80 else text[:79] + "…"


def render_rows(rows: list[dict[str, Any]], columns: list[tuple[str, Any]], *, empty: str) -> str:
    """Rows as an aligned table with a header line; each column is (header, key or function of the row)."""
    if not rows:
        return empty
    body = [[cell(pick(row) if callable(pick) else row.get(pick)) for _, pick in columns] for row in rows]
    return tabulate(body, headers=[header for header, _ in columns], tablefmt="simple", disable_numparse=True)


def render_mapping(data: dict[str, Any]) -> str:
    """One document (an inspection, a command's result) as a two-column table: each field and its value."""
    return tabulate([[key, cell(value)] for key, value in data.items()], headers=["field", "value"],
                    tablefmt="simple", disable_numparse=True)
