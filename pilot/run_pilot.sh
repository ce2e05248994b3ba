#!/usr/bin/env bash
# The pilot, as an operator runs it (docs/pilot.md): against a running bridge and qcluster, open a
# review thread, launch a scripted executioner and reviewer as managed runtimes, wait until the
# thread is resolved with no human relaying anything, then print the pilot report for it.
#
#   pilot/run_pilot.sh [--workspace-id pilot] [--timeout 180] [--stubborn N]
#   pilot/run_pilot.sh --real [--timeout 300] [--keep]
#
# --real: the real CLIs instead of the scripted agents, a Codex executioner and a Claude Code
# reviewer with fake models playing the roles; self-contained (its own bridge, supervisor, database
# and tmux server): pilot/real.py.
#
# Environment: ORKIVA_PUBLIC_URL (the bridge, default http://127.0.0.1:8000), PYTHON (default
# .venv/bin/python), FIX_DELAY (seconds the executioner "works" on fixes; set it above the
# bridge's ORKIVA_RUNTIME_IDLE_SECONDS so the reviewer is idle, and so woken, when they land).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--real" ]; then
    shift
    exec "${PYTHON:-.venv/bin/python}" -m pilot.real "$@"
fi

WORKSPACE=pilot TIMEOUT=180 STUBBORN=0
while [ $# -gt 0 ]; do
    case "$1" in
        --workspace-id) WORKSPACE=$2; shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --stubborn) STUBBORN=$2; shift 2 ;;
        *) echo "usage: $0 [--workspace-id W] [--timeout SECONDS] [--stubborn N]" >&2; exit 2 ;;
    esac
done
PYTHON=${PYTHON:-.venv/bin/python}
URL=${ORKIVA_PUBLIC_URL:-http://127.0.0.1:8000}
FIX_DELAY=${FIX_DELAY:-8}
json_field() { "$PYTHON" -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# A run before this one in the workspace left its agents registered and running: deregister them,
# so this run's launches replace them (a launch kills a deregistered agent's old tmux session) and
# no wake of this run reaches an old agent.
for agent in executioner reviewer; do
    if "$PYTHON" manage.py orkiva_runtime deregister --agent-id "$agent" --workspace-id "$WORKSPACE" \
        --reason "pilot re-run: replacing the previous run's agent" --json >/dev/null; then
        echo "pilot: deregistered the previous run's $agent"
    fi
done

# The coordinator's token outlives the run, an operator's unblock included.
TOKEN=$("$PYTHON" manage.py orkiva_issue_token --agent-id coordinator --workspace-id "$WORKSPACE" \
    --role coordinator --session-id pilot-coordinator --ttl $((TIMEOUT + 600)) --json | json_field '["token"]')
THREAD=$(curl -sf -X POST "$URL/v1/threads" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"title": "Pilot: review the parser change", "type": "review", "participants": ["executioner", "reviewer"]}' \
    | json_field '["id"]')
echo "pilot: thread $THREAD in workspace $WORKSPACE"

launch() {  # agent-id, then the scripted agent's arguments; prints how to attach to it
    local agent=$1 out; shift
    if ! out=$(ORKIVA_PUBLIC_URL=$URL "$PYTHON" manage.py orkiva_runtime launch --agent-id "$agent" \
        --workspace-id "$WORKSPACE" --runtime codex --workdir "$PWD" --reason "pilot run" --json \
        --command "$PYTHON -m pilot.agent $agent --thread $THREAD $*"); then
        echo "pilot: launching $agent failed: $out" >&2
        return 1
    fi
    echo "$out" | json_field '["attach"]'
}
attach=$(launch executioner --fix-delay "$FIX_DELAY") || exit 1
echo "pilot: executioner: $attach"
attach=$(launch reviewer --stubborn "$STUBBORN") || exit 1
echo "pilot: reviewer:    $attach"

deadline=$((SECONDS + TIMEOUT))
status=open
told=
while [ "$SECONDS" -lt "$deadline" ]; do
    # A bridge restart or a blip is not the end of the pilot: try again.
    status=$(curl -sf "$URL/v1/threads/$THREAD" -H "Authorization: Bearer $TOKEN" | json_field '["status"]') \
        || { sleep 2; continue; }
    case "$status" in
        resolved|closed) break ;;
        blocked)
            if [ -z "$told" ]; then
                echo "pilot: the policy blocked the thread; as its operator (docs/operator.md), in another shell:"
                echo "  $PYTHON manage.py orkiva_inspect thread $THREAD"
                echo "  $PYTHON manage.py orkiva_unblock --thread-id $THREAD --reason \"...\""
                told=1
            fi ;;
        *) told= ;;
    esac
    sleep 2
done
echo "pilot: thread is $status"
# The report counts wakes by outcome: let the last ones settle (a minute at most) before printing it;
# the report says so if some have not.
for _ in $(seq 1 30); do
    active=$("$PYTHON" manage.py orkiva_pilot_report --workspace-id "$WORKSPACE" --thread "$THREAD" --json \
        | json_field '["totals"]["wakes"]["active"]') || break
    [ "$active" = 0 ] && break
    sleep 2
done
"$PYTHON" manage.py orkiva_pilot_report --workspace-id "$WORKSPACE" --thread "$THREAD"
echo "pilot: the agents keep running in tmux (attach as printed above). To stop them:"
echo "  $PYTHON manage.py orkiva_runtime deregister --agent-id executioner --workspace-id $WORKSPACE --reason done"
echo "  $PYTHON manage.py orkiva_runtime deregister --agent-id reviewer --workspace-id $WORKSPACE --reason done"
echo "  (a later run in this workspace does that itself and replaces them)"
[ "$status" = resolved ] || [ "$status" = closed ]
