"""API versioning: the schema version stamped on every body. Within /v1, changes are additive only."""
SCHEMA_VERSION = 1
EVENT_VERSION = 1


def iso(value) -> str | None:
    """RFC 3339 UTC timestamps with a Z, the one time format of the API."""
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")
