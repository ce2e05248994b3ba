"""Start-up settings as a new user meets them: the local signing key under var/, production's
refusal to run without a real one, and the embedded SQLite default (WAL, immediate writes)."""
from __future__ import annotations

import json
import stat

import pytest

from tests.live import run_manage, subprocess_env

PROBE = (
    "import json; from django.conf import settings; from django.db import connection;"
    "cursor = connection.cursor(); cursor.execute('PRAGMA journal_mode');"
    "print(json.dumps({'journal': cursor.fetchone()[0], 'vendor': connection.vendor,"
    " 'name': str(settings.DATABASES['default']['NAME']),"
    " 'mode': settings.DATABASES['default']['OPTIONS'].get('transaction_mode')}))"
)


def fresh_env(var_dir, **extra):
    """The environment of a fresh checkout: no DATABASE_URL, no key, var/ at `var_dir`."""
    env = subprocess_env(ORKIVA_VAR_DIR=str(var_dir), **extra)
    for name in ("DATABASE_URL", "ORKIVA_SIGNING_KEY", "ORKIVA_ENV"):
        if name not in extra:
            env.pop(name, None)
    return env


def test_a_fresh_local_run_generates_its_signing_key_once_under_var(tmp_path):
    first = run_manage("check", env=fresh_env(tmp_path))
    assert first.returncode == 0, first.stderr
    key_file = tmp_path / "signing.key"
    key = key_file.read_text()
    assert len(key.strip()) >= 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600  # readable by its owner only
    second = run_manage("check", env=fresh_env(tmp_path))
    assert second.returncode == 0, second.stderr
    assert key_file.read_text() == key  # reused: tokens issued before a restart stay valid


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"ORKIVA_ENV": "production"}, "ORKIVA_SIGNING_KEY is required"),
        ({"ORKIVA_ENV": "production", "ORKIVA_SIGNING_KEY": "short"}, "at least 32 bytes"),
    ],
)
def test_production_refuses_to_start_without_a_real_signing_key(tmp_path, extra, message):
    proc = run_manage("check", env=fresh_env(tmp_path, **extra))
    assert proc.returncode != 0
    assert message in proc.stderr
    assert not (tmp_path / "signing.key").exists()  # production never falls back to a generated key


def test_the_embedded_default_is_sqlite_under_var_in_wal_with_immediate_transactions(tmp_path):
    env = fresh_env(tmp_path)
    migrate = run_manage("migrate", "--noinput", env=env, timeout=120)
    assert migrate.returncode == 0, migrate.stderr
    proc = run_manage("shell", "-c", PROBE, env=env)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found == {
        "journal": "wal",
        "vendor": "sqlite",
        "name": str(tmp_path / "orkiva.sqlite3"),
        "mode": "IMMEDIATE",
    }


PREPARED_PROBE = (
    "import json; from django.db import connection;"
    "cursor = connection.cursor();"
    "[cursor.execute('SELECT count(*) FROM threads_thread WHERE workspace_id = %s', ['w']) for _ in range(6)];"
    "cursor.execute('SELECT count(*) FROM pg_prepared_statements');"
    "print(json.dumps({'prepared': cursor.fetchone()[0]}))"
)


@pytest.mark.postgres_only
@pytest.mark.django_db
@pytest.mark.parametrize(("value", "prepared"), [(None, True), ("false", False)])
def test_postgresql_statements_run_often_are_prepared_unless_turned_off(value, prepared):
    """Server-side binding with prepared statements (ORKIVA_DB_PREPARED_STATEMENTS, default on):
    a statement a connection runs again is planned once (docs/performance.md)."""
    env = subprocess_env(**({"ORKIVA_DB_PREPARED_STATEMENTS": value} if value else {}))
    if value is None:
        env.pop("ORKIVA_DB_PREPARED_STATEMENTS", None)
    assert env["DATABASE_URL"].startswith("postgres")
    proc = run_manage("shell", "-c", PREPARED_PROBE, env=env)
    assert proc.returncode == 0, proc.stderr
    assert (json.loads(proc.stdout.strip().splitlines()[-1])["prepared"] > 0) is prepared
