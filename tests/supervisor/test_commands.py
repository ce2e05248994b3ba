"""manage.py orkiva_runtime as a real subprocess: launch (managed, in tmux, with a token), list,
pause/resume (reason required, audited), wake --force, deregister."""
from __future__ import annotations

import shlex
import sys

import pytest

from policy.models import AuditEvent
from policy.tokens import verify_token
from supervisor import tmux
from supervisor.models import Runtime
from tests.live import run_manage_json, subprocess_env
from tests.supervisor.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_runtime_commands(tmp_path, tmux_server, thread):
    env = subprocess_env(ORKIVA_TMUX_SOCKET=tmux_server.socket_name, ORKIVA_TMUX_CONFIG="/dev/null",
                         ORKIVA_PUBLIC_URL="http://127.0.0.1:9")
    envfile = tmp_path / "env.txt"
    agent = shlex.join([sys.executable, "-c",
                        f"import os,time; open({str(envfile)!r},'w').write(os.environ['ORKIVA_TOKEN']+' '+os.environ['ORKIVA_URL']); time.sleep(600)"])
    code, body = run_manage_json("orkiva_runtime", "launch", "--agent-id", "reviewer", "--workspace-id", "ws-main",
                                 "--runtime", "codex", "--command", agent, "--reason", "pilot", env=env)
    assert code == 0, body
    runtime = body["runtime"]
    assert runtime["management_mode"] == "managed" and runtime["pty_backend"] == "tmux"
    assert body["attach"].startswith(f"tmux -L {tmux_server.socket_name} attach")
    assert tmux.pane_state(runtime["pty_target"]).exists
    token, url = wait_for(lambda: envfile.exists() and envfile.read_text().split(" "), what="the agent's env")
    assert url == "http://127.0.0.1:9" and verify_token(token).agent_id == "reviewer"

    code, listed = run_manage_json("orkiva_runtime", "list", "--workspace-id", "ws-main", env=env)
    assert code == 0 and [r["agent_id"] for r in listed["runtimes"]] == ["reviewer"]

    code, refused = run_manage_json("orkiva_runtime", "pause", "--agent-id", "reviewer", "--workspace-id", "ws-main", env=env)
    assert code == 2 and refused["error"]["code"] == "reason_required"
    code, paused = run_manage_json("orkiva_runtime", "pause", "--agent-id", "reviewer", "--workspace-id", "ws-main",
                                   "--reason", "pairing", "--operator", "alice", env=env)
    assert code == 0 and paused["runtime"]["paused"] is True
    assert AuditEvent.objects.get(action="runtime.pause").actor_id == "operator:alice"

    code, wake = run_manage_json("orkiva_runtime", "wake", "--agent-id", "reviewer", "--workspace-id", "ws-main",
                                 "--thread-id", str(thread.pk), "--force", "--reason", "urgent", env=env)
    assert code == 0 and wake["source"] == "operator" and wake["force"] is True

    # an operator stops a wake that is stuck (here: held for the paused runtime)
    cancel = ("orkiva_runtime", "cancel-wake", "--wake-id", wake["wake_id"], "--workspace-id", "ws-main")
    code, refused = run_manage_json(*cancel, env=env)
    assert code == 2 and refused["error"]["code"] == "reason_required"
    code, cancelled = run_manage_json(*cancel, "--reason", "agent replaced", "--operator", "alice", env=env)
    assert code == 0 and cancelled["status"] == "cancelled" and cancelled["reason_code"] == "operator_cancelled"
    row = AuditEvent.objects.get(action="wake.request", reason_code="operator_cancelled")
    assert (row.actor_id, row.reason) == ("operator:alice", "agent replaced")
    code, again = run_manage_json(*cancel, "--reason", "twice", env=env)
    assert code == 4 and again["error"]["code"] == "wake_already_final"
    code, other = run_manage_json("orkiva_runtime", "cancel-wake", "--wake-id", wake["wake_id"],
                                  "--workspace-id", "ws-other", "--reason", "x", env=env)
    assert code == 3 and other["error"]["code"] == "wake_not_found"  # another workspace's wake does not exist

    code, missing = run_manage_json("orkiva_runtime", "deregister", "--agent-id", "nobody", "--workspace-id", "ws-main",
                                    "--reason", "x", env=env)
    assert code == 3 and missing["error"]["code"] == "runtime_not_found"
    code, gone = run_manage_json("orkiva_runtime", "deregister", "--agent-id", "reviewer", "--workspace-id", "ws-main",
                                 "--reason", "done", env=env)
    assert code == 0 and Runtime.objects.get().state == "deregistered"
