"""Schemathesis hooks for the contract run (tests/contract/test_schemathesis.py; SCHEMATHESIS_HOOKS).

One rule of the API spans two parts of a request, which an OpenAPI document cannot state: a post or a
create may name its idempotency key in the `Idempotency-Key` header or in the body, and when it names
it in both they must be equal (else 400 idempotency_key_mismatch, docs/api.md "Idempotency"). A
generated case that sends two valid keys gets the header's in its body too (a case made to break a
rule keeps what breaks it); every other part of every case is as Schemathesis draws it."""
from __future__ import annotations

import os

import django
import schemathesis

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orkiva.settings")
django.setup()  # the two rules below are the bridge's own, imported, not copied

from messaging.api import IDEMPOTENCY_HEADER_RE  # noqa: E402
from messaging.services import IDEMPOTENCY_KEY_RE  # noqa: E402


@schemathesis.hook
def map_case(ctx, case):
    header = (case.headers or {}).get("Idempotency-Key")
    body_key = case.body.get("idempotency_key") if isinstance(case.body, dict) else None
    if (isinstance(header, str) and isinstance(body_key, str) and IDEMPOTENCY_HEADER_RE.fullmatch(header)
            and IDEMPOTENCY_KEY_RE.fullmatch(body_key)):
        case.body["idempotency_key"] = header
    return case
