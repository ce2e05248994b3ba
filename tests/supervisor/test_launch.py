"""Launching managed runtimes: the credential a launched agent gets lasts while its runtime is
registered and is revoked when it ends; a live managed pane never expires for silence; a launch
that cannot work is refused before anything starts."""
from __future__ import annotations

import json
import os
from datetime import timedelta

import pytest
from django.utils import timezone

from orkiva.errors import Conflict, ValidationFailed
from policy.models import AuditEvent
from policy.tokens import verify_token
from supervisor import tmux
from supervisor.models import Runtime
from supervisor.services import runtime_deregister, runtime_launch, runtimes_expire
from tests.supervisor.conftest import launch_stand_in, operator

pytestmark = pytest.mark.django_db


def credential_of(session_name: str) -> str:
    """The ORKIVA_TOKEN the agent's process got, read back from its tmux session."""
    line = tmux.server().cmd("show-environment", "-t", session_name, "ORKIVA_TOKEN").stdout[0]
    return line.split("=", 1)[1]


def test_a_launched_agents_credential_lasts_while_its_runtime_is_registered(tmp_path, tmux_server, settings):
    launched = launch_stand_in(agent_id="reviewer", log=tmp_path / "a.jsonl", ack=False)
    token = credential_of(launched.session_name)
    actor = verify_token(token)
    assert (actor.agent_id, actor.session_id) == ("reviewer", launched.runtime.credential_session)
    # long past the 15 minutes of an ordinary token, and of ORKIVA_TOKEN_MAX_TTL_SECONDS: still good
    later = timezone.now() + timedelta(seconds=settings.ORKIVA_TOKEN_MAX_TTL_SECONDS + 3600)
    assert verify_token(token, now=later).agent_id == "reviewer"
    runtime_deregister(actor=operator(), workspace_id="ws-main", agent_id="reviewer", reason="done for today")
    with pytest.raises(Exception) as refused:
        verify_token(token)
    assert refused.value.code == "token_revoked"
    revoke = AuditEvent.objects.get(action="token.revoke", target_id=actor.session_id)
    assert revoke.reason_code == "runtime_ended" and "done for today" in revoke.reason


def test_launching_again_revokes_the_earlier_credential(tmp_path, tmux_server):
    first = launch_stand_in(agent_id="reviewer", log=tmp_path / "a.jsonl", ack=False)
    old = credential_of(first.session_name)
    tmux.kill_session(first.session_name)  # its pane is gone: it may be launched again
    second = launch_stand_in(agent_id="reviewer", log=tmp_path / "b.jsonl", ack=False)
    with pytest.raises(Exception) as refused:
        verify_token(old)
    assert refused.value.code == "token_revoked"
    assert verify_token(credential_of(second.session_name)).agent_id == "reviewer"


def test_a_live_managed_pane_does_not_expire_for_silence_and_a_gone_one_goes_offline(tmp_path, tmux_server, settings):
    launched = launch_stand_in(agent_id="reviewer", log=tmp_path / "a.jsonl", ack=False)
    token = credential_of(launched.session_name)
    days_later = timezone.now() + timedelta(seconds=settings.ORKIVA_RUNTIME_EXPIRE_SECONDS * 3)
    assert runtimes_expire(now=days_later)["expired"] == 0  # a dormant agent at its prompt is still there
    assert Runtime.objects.get(agent_id="reviewer").state == "idle" and verify_token(token)
    tmux.kill_session(launched.session_name)
    assert runtimes_expire(now=days_later)["offline"] == 1
    assert Runtime.objects.get(agent_id="reviewer").state == "offline"
    with pytest.raises(Exception) as refused:
        verify_token(token)
    assert refused.value.code == "token_revoked"


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"runtime_type": "codex", "workdir": "/no/such/dir"}, "workdir"),
    ({"runtime_type": "other"}, "command"),
    ({"runtime_type": "other", "command": "python -c pass", "prompt": "hello"}, "prompt"),
    ({"runtime_type": "codex", "command": "codex 'unclosed"}, "command"),
])
def test_a_launch_that_cannot_work_is_refused_before_anything_starts(tmux_server, kwargs, field):
    with pytest.raises(ValidationFailed) as refused:
        runtime_launch(operator=operator(), agent_id="reviewer", workspace_id="ws-main", reason="t", **kwargs)
    assert field in refused.value.details["fields"]
    assert not Runtime.objects.exists() and tmux_server.sessions == []


def test_claude_code_never_set_up_is_refused_with_guidance(tmp_path, tmux_server, monkeypatch):
    config = tmp_path / "claude-config"
    config.mkdir()
    (config / ".claude.json").write_text(json.dumps({"projects": {}}))
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(config))
    with pytest.raises(Conflict) as refused:
        runtime_launch(operator=operator(), agent_id="reviewer", workspace_id="ws-main", runtime_type="claude",
                       workdir=str(tmp_path), reason="t")
    assert refused.value.code == "cli_setup_required" and "run `claude` once by hand" in refused.value.message
    assert not Runtime.objects.exists() and tmux_server.sessions == []


def test_two_agents_whose_tmux_names_read_alike_do_not_kill_each_other(tmp_path, tmux_server):
    first = launch_stand_in(agent_id="c", workspace_id="a-b", log=tmp_path / "a.jsonl", ack=False)
    with pytest.raises(Conflict) as refused:
        launch_stand_in(agent_id="b-c", workspace_id="a", log=tmp_path / "b.jsonl", ack=False)
    assert refused.value.code == "runtime_already_managed"
    assert tmux.pane_state(first.runtime.pty_target).exists  # the other workspace's agent still runs


def test_a_launch_that_fails_in_tmux_revokes_the_credential_it_issued(tmux_server, monkeypatch):
    def refuse(**kwargs):
        raise tmux.TmuxFailed("tmux new-session failed: no server", stderr=["no server"])

    monkeypatch.setattr(tmux, "launch", refuse)
    with pytest.raises(Conflict) as refused:
        runtime_launch(operator=operator(), agent_id="reviewer", workspace_id="ws-main", runtime_type="other",
                       command="python -c pass", reason="t")
    assert refused.value.code == "launch_failed"
    issued = AuditEvent.objects.get(action="token.issue")
    revoked = AuditEvent.objects.get(action="token.revoke")
    assert revoked.target_id == issued.new_values["session_id"] and revoked.reason_code == "runtime_ended"
    assert not Runtime.objects.exists()


def test_attach_checks_the_pane_and_its_directory(tmp_path, tmux_server):
    from supervisor.services import runtime_attach

    tmux_server.new_session(session_name="mine", window_command="cat")
    socket = f"/tmp/tmux-{os.getuid()}/{tmux_server.socket_name}"
    with pytest.raises(ValidationFailed) as refused:
        runtime_attach(operator=operator(), agent_id="reviewer", workspace_id="ws-main", runtime_type="claude",
                       target="mine:0.0", tmux_socket=socket, workdir="relative/dir", reason="mine")
    assert "workdir" in refused.value.details["fields"]
    runtime = runtime_attach(operator=operator(), agent_id="reviewer", workspace_id="ws-main", runtime_type="claude",
                             target="mine:0.0", tmux_socket=socket, reason="mine").runtime
    assert runtime.pty_target.startswith("%") and runtime.tmux_socket == socket and runtime.pid
