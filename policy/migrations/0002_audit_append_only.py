"""Hold the audit log's append-only rule in the database too: UPDATE (and, on PostgreSQL, DELETE) fail."""
from django.db import migrations

PG_FORWARD = """
CREATE OR REPLACE FUNCTION policy_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'policy_auditevent is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER policy_auditevent_no_update BEFORE UPDATE OR DELETE ON policy_auditevent
    FOR EACH ROW EXECUTE FUNCTION policy_auditevent_append_only();
"""
PG_BACKWARD = """
DROP TRIGGER IF EXISTS policy_auditevent_no_update ON policy_auditevent;
DROP FUNCTION IF EXISTS policy_auditevent_append_only();
"""
# SQLite: UPDATE only; the test runner empties tables with DELETE between transactional tests.
SQLITE_FORWARD = """
CREATE TRIGGER IF NOT EXISTS policy_auditevent_no_update BEFORE UPDATE ON policy_auditevent
BEGIN SELECT RAISE(ABORT, 'policy_auditevent is append-only'); END;
"""
SQLITE_BACKWARD = "DROP TRIGGER IF EXISTS policy_auditevent_no_update;"


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_FORWARD)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_FORWARD)


def backward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_BACKWARD)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("policy", "0001_initial")]
    operations = [migrations.RunPython(forward, backward)]
