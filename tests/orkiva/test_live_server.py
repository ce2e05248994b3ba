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
