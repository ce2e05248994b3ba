"""`make test`'s first step: is the PostgreSQL the suite needs answering? One line if not.

    python -m tests.preflight postgres://postgres@127.0.0.1:5432/orkiva
"""
from __future__ import annotations

import sys

import psycopg
from psycopg.conninfo import conninfo_to_dict


def main(url: str) -> int:
    params = {**conninfo_to_dict(url), "dbname": "postgres", "connect_timeout": 3}
    try:
        psycopg.connect(**params).close()
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"make test: PostgreSQL at {url} does not answer ({reason}); start it (bash .ci/run does), "
              "or run the embedded-default pass: make test-sqlite", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
