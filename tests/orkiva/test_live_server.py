"""The bridge answers as a real process, under the dev server and under gunicorn."""
import httpx
import pytest

from tests.conftest import token_for
from tests.live import bridge_server

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("server", ["runserver", "gunicorn"])
def test_real_server_serves_the_api(tmp_path, server, coordinator):
    with bridge_server(tmp_path, server=server) as bridge:
        headers = {"Authorization": f"Bearer {token_for(coordinator)}"}
        created = httpx.post(
            f"{bridge.base_url}/v1/threads",
            json={"title": "live", "type": "review", "participants": ["executioner"]},
            headers=headers,
        )
        assert created.status_code == 201, bridge.log()
        listed = httpx.get(f"{bridge.base_url}/v1/threads", headers=headers).json()
        assert [t["id"] for t in listed["threads"]] == [created.json()["id"]]
        assert httpx.get(f"{bridge.base_url}/readyz").json()["status"] == "ready"


@pytest.mark.parametrize("entry, mcp_view", [("wsgi", "mcp_view"), ("asgi", "mcp_async_view")])
def test_the_application_is_loaded_before_its_first_request(entry, mcp_view):
    """A server worker imports orkiva.wsgi (dev) or orkiva.asgi (production) as it boots: the views,
    the MCP SDK and its models must be loaded then, not by the first request (which stalled the
    worker for half a second), and what is loaded kept out of the collector's full collections.
    Under ASGI /v1/mcp is the async view, served on the event loop."""
    import subprocess
    import sys

    from tests.live import REPO, subprocess_env

    probe = (f"import gc, sys, orkiva.{entry}; from django.urls import resolve; "
             "print(sorted(m for m in ('orkiva.urls', 'orkiva.mcp.view', 'messaging.api', 'mcp.server.mcpserver') "
             "if m in sys.modules), gc.get_freeze_count() > 10000, resolve('/v1/mcp').func.__name__)")
    env = {k: v for k, v in subprocess_env().items() if k != "ORKIVA_ASGI"}
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == (
        f"['mcp.server.mcpserver', 'messaging.api', 'orkiva.mcp.view', 'orkiva.urls'] True {mcp_view}")
