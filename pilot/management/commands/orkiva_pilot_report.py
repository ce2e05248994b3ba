"""The pilot report: `manage.py orkiva_pilot_report --workspace-id W [--thread T ...] [--since ISO]
[--baseline FILE] --json`. Read-only."""
from __future__ import annotations

from django.utils.dateparse import parse_datetime

from orkiva.commands import OrkivaCommand
from orkiva.errors import ValidationFailed
from pilot.selectors import baseline_comparison, load_baseline, pilot_report


def _seconds(value) -> str:
    return "-" if value is None else f"{value:.1f}s"


class Command(OrkivaCommand):
    help = (
        "Per thread: cycle time from first finding to resolution, review rounds, wakes by path, "
        "escalations and human interventions; ranked pain points; baseline vs pilot with --baseline."
    )

    def add_options(self, parser):
        parser.add_argument("--workspace-id", required=True)
        parser.add_argument("--thread", action="append", default=[], dest="threads", help="Only these threads.")
        parser.add_argument("--since", default=None, help="Only threads created at or after this ISO 8601 time.")
        parser.add_argument("--baseline", default=None, help="JSON file of manual-relay cycle times (docs/pilot.md).")

    def run(self, **options):
        since = None
        if options["since"]:
            since = parse_datetime(options["since"])
            if since is None or since.tzinfo is None:
                raise ValidationFailed(
                    "--since must be an ISO 8601 time with a zone, e.g. 2026-11-01T00:00:00Z.",
                    code="usage_error", details={"since": options["since"]},
                )
        baseline = load_baseline(options["baseline"]) if options["baseline"] else None
        report = pilot_report(workspace_id=options["workspace_id"], thread_ids=options["threads"] or None, since=since)
        if baseline is not None:
            report["comparison"] = baseline_comparison(baseline=baseline, report=report)
        return report

    def render_table(self, result):
        lines = [f"{'thread':36}  {'status':9} {'cycle':>9} {'rounds':>6} {'wakes':>5} {'esc':>3} {'human':>5}  title"]
        for row in result["threads"]:
            lines.append(
                f"{row['thread_id']:36}  {row['status']:9} {_seconds(row['cycle_time_seconds']):>9} "
                f"{row['review_rounds']:>6} {row['wakes']['count']:>5} {row['escalations']:>3} "
                f"{row['human_interventions']:>5}  {row['title']}"
            )
        totals = result["totals"]
        cycle = totals["cycle_time_seconds"]
        lines.append("")
        lines.append(
            f"{totals['threads']} threads, {totals['resolved']} resolved; cycle median {_seconds(cycle['median'])}, "
            f"p90 {_seconds(cycle['p90'])}; {totals['wakes']['count']} wakes, {totals['escalations']} escalations, "
            f"{totals['human_interventions']} human interventions"
        )
        if totals["wakes"]["active"]:
            lines.append(f"  note: {totals['wakes']['active']} wakes have not settled yet (their outcome is not "
                         "counted): run the report again in a moment")
        for path, stats in totals["wakes"]["latency_seconds_by_path"].items():
            lines.append(f"  wake path {path}: {stats['count']} settled, median {_seconds(stats['median'])}, "
                         f"p90 {_seconds(stats['p90'])}")
        if "comparison" in result:
            comparison = result["comparison"]
            lines.append("")
            lines.append(f"{'cycle time':12} {'baseline':>12} {'pilot':>12} {'ratio':>7}   ({comparison['label']})")
            for key in ("median", "p90"):
                row = comparison[key]
                ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}"
                lines.append(f"{key:12} {_seconds(row['baseline']):>12} {_seconds(row['pilot']):>12} {ratio:>7}")
        pain = result["feedback"]["top_pain_points"]
        if pain:
            lines.append("")
            lines.append("top pain points: " + ", ".join(f"{p['tag']} ({p['count']})" for p in pain))
        return "\n".join(lines)
