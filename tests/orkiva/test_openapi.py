"""The /v1 OpenAPI document: generated, public, and evolving additively only.

The committed snapshot (tests/snapshots/openapi-v1.json) is the contract clients were built
against. `breaking_changes(snapshot, live)` lists every change that could break such a
client: a path, operation, parameter or response removed; a response field removed, renamed,
retyped, made nullable or optional; a request narrowed (field removed or retyped,
nullable -> non-null, a newly required field or parameter, enum values removed, tighter
bounds). Additive changes (new paths, new optional request fields, new response fields, new
enum values in requests) pass.

Regenerate the snapshot after an intended, additive change:

    ORKIVA_UPDATE_OPENAPI_SNAPSHOT=1 .venv/bin/python -m pytest -q tests/orkiva/test_openapi.py

(The update run still fails if the new document breaks the old one: removals are never
accepted silently. A deliberate break belongs in /v2.)
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.conftest import client_for

SNAPSHOT = Path(__file__).resolve().parents[1] / "snapshots" / "openapi-v1.json"
UPDATE_FLAG = "ORKIVA_UPDATE_OPENAPI_SNAPSHOT"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


# --- the comparator --------------------------------------------------------------------------------

class _Compare:
    def __init__(self, old: dict, new: dict):
        self.old, self.new = old, new
        self.problems: list[str] = []

    def resolve(self, doc: dict, node: dict | None) -> dict:
        node = node or {}
        seen = 0
        while "$ref" in node and seen < 50:
            node = doc["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
            seen += 1
        if "allOf" in node and len(node["allOf"]) == 1:  # drf-spectacular wraps nullable refs this way
            merged = {**self.resolve(doc, node["allOf"][0]), **{k: v for k, v in node.items() if k != "allOf"}}
            return merged
        for key in ("anyOf", "oneOf"):  # a blank-or-pattern text: [{string, pattern}, {string, maxLength 0}]
            if key in node:
                branches = [self.resolve(doc, branch) for branch in node[key]]
                if len({self.base_type(b) for b in branches}) == 1:
                    return {**branches[0], **{k: v for k, v in node.items() if k != key}}
        return node

    @staticmethod
    def nullable(schema: dict) -> bool:
        types = schema.get("type")
        return bool(schema.get("nullable")) or (isinstance(types, list) and "null" in types)

    @staticmethod
    def base_type(schema: dict) -> Any:
        types = schema.get("type")
        if isinstance(types, list):
            return tuple(sorted(t for t in types if t != "null"))
        return types

    def request(self, old_s: dict | None, new_s: dict | None, where: str, depth: int = 0) -> None:
        """A request schema may only widen: whatever was valid before must stay valid."""
        old_s, new_s = self.resolve(self.old, old_s), self.resolve(self.new, new_s)
        if depth > 20:
            return
        if self.base_type(old_s) != self.base_type(new_s) and self.base_type(old_s) is not None:
            self.problems.append(f"{where}: type changed {self.base_type(old_s)} -> {self.base_type(new_s)}")
            return
        if old_s.get("format") != new_s.get("format") and new_s.get("format") is not None:
            self.problems.append(f"{where}: format changed {old_s.get('format')} -> {new_s.get('format')}")
        if self.nullable(old_s) and not self.nullable(new_s):
            self.problems.append(f"{where}: no longer accepts null")
        if "enum" in new_s:
            removed = [v for v in old_s.get("enum", []) if v not in new_s["enum"]]
            if "enum" not in old_s:
                self.problems.append(f"{where}: now restricted to an enum")
            elif removed:
                self.problems.append(f"{where}: enum values removed {removed}")
        for key, tighter in (("maxLength", min), ("maximum", min), ("maxItems", min),
                             ("minLength", max), ("minimum", max), ("minItems", max)):
            if key in new_s and (key not in old_s or tighter(old_s[key], new_s[key]) != old_s[key]):
                self.problems.append(f"{where}: {key} tightened {old_s.get(key)} -> {new_s[key]}")
        old_props, new_props = old_s.get("properties", {}), new_s.get("properties", {})
        for name, prop in old_props.items():
            if name not in new_props:
                self.problems.append(f"{where}.{name}: request field removed or renamed")
            else:
                self.request(prop, new_props[name], f"{where}.{name}", depth + 1)
        newly_required = set(new_s.get("required", [])) - set(old_s.get("required", []))
        for name in sorted(newly_required):
            self.problems.append(f"{where}.{name}: request field newly required")
        if "items" in old_s:
            self.request(old_s["items"], new_s.get("items"), f"{where}[]", depth + 1)
        if isinstance(old_s.get("additionalProperties"), dict):
            self.request(old_s["additionalProperties"], new_s.get("additionalProperties") or {}, f"{where}{{}}", depth + 1)

    def response(self, old_s: dict | None, new_s: dict | None, where: str, depth: int = 0) -> None:
        """A response may only grow: every field a client read before is still there, same shape."""
        old_s, new_s = self.resolve(self.old, old_s), self.resolve(self.new, new_s)
        if depth > 20:
            return
        if self.base_type(old_s) != self.base_type(new_s):
            self.problems.append(f"{where}: type changed {self.base_type(old_s)} -> {self.base_type(new_s)}")
            return
        if old_s.get("format") != new_s.get("format"):
            self.problems.append(f"{where}: format changed {old_s.get('format')} -> {new_s.get('format')}")
        if not self.nullable(old_s) and self.nullable(new_s):
            self.problems.append(f"{where}: may now be null")
        old_props, new_props = old_s.get("properties", {}), new_s.get("properties", {})
        for name, prop in old_props.items():
            if name not in new_props:
                self.problems.append(f"{where}.{name}: response field removed or renamed")
            else:
                self.response(prop, new_props[name], f"{where}.{name}", depth + 1)
        no_longer_required = set(old_s.get("required", [])) - set(new_s.get("required", []))
        for name in sorted(no_longer_required & set(new_props)):
            self.problems.append(f"{where}.{name}: response field no longer always present")
        if "items" in old_s:
            self.response(old_s["items"], new_s.get("items"), f"{where}[]", depth + 1)
        if isinstance(old_s.get("additionalProperties"), dict):
            self.response(old_s["additionalProperties"], new_s.get("additionalProperties") or {}, f"{where}{{}}", depth + 1)

    def run(self) -> list[str]:
        new_paths = self.new.get("paths", {})
        for path, methods in self.old.get("paths", {}).items():
            if path not in new_paths:
                self.problems.append(f"{path}: path removed")
                continue
            for method, op in methods.items():
                if method not in HTTP_METHODS:
                    continue
                new_op = new_paths[path].get(method)
                where = f"{method.upper()} {path}"
                if new_op is None:
                    self.problems.append(f"{where}: operation removed")
                    continue
                self.parameters(op, new_op, where)
                self.body(op, new_op, where)
                for status, response in op.get("responses", {}).items():
                    new_response = new_op.get("responses", {}).get(status)
                    if new_response is None:
                        self.problems.append(f"{where} {status}: response removed")
                        continue
                    for ctype, content in response.get("content", {}).items():
                        new_content = new_response.get("content", {}).get(ctype)
                        if new_content is None:
                            self.problems.append(f"{where} {status} {ctype}: response content removed")
                        else:
                            self.response(content.get("schema"), new_content.get("schema"), f"{where} {status}")
        return self.problems

    def parameters(self, op: dict, new_op: dict, where: str) -> None:
        old_params = {(p["in"], p["name"]): p for p in op.get("parameters", [])}
        new_params = {(p["in"], p["name"]): p for p in new_op.get("parameters", [])}
        for key, param in old_params.items():
            label = f"{where} {key[0]} parameter {key[1]}"
            if key not in new_params:
                self.problems.append(f"{label}: removed")
                continue
            if new_params[key].get("required") and not param.get("required"):
                self.problems.append(f"{label}: newly required")
            self.request(param.get("schema"), new_params[key].get("schema"), label)
        for key, param in new_params.items():
            if key not in old_params and param.get("required") and key[0] != "path":
                self.problems.append(f"{where} {key[0]} parameter {key[1]}: new and required")

    def body(self, op: dict, new_op: dict, where: str) -> None:
        old_body, new_body = op.get("requestBody"), new_op.get("requestBody")
        if old_body is None:
            if new_body is not None and new_body.get("required"):
                self.problems.append(f"{where}: request body newly required")
            return
        if new_body is None:
            return  # the body is ignored now: old clients still succeed
        if new_body.get("required") and not old_body.get("required"):
            self.problems.append(f"{where}: request body newly required")
        for ctype, content in old_body.get("content", {}).items():
            new_content = new_body.get("content", {}).get(ctype)
            if new_content is None:
                self.problems.append(f"{where} request {ctype}: no longer accepted")
            else:
                self.request(content.get("schema"), new_content.get("schema"), f"{where} request")


def breaking_changes(old: dict, new: dict) -> list[str]:
    """Every change from `old` to `new` that could break a client of `old`."""
    return _Compare(old, new).run()


# --- the comparator, on synthetic documents ----------------------------------------------------------

def synthetic() -> dict:
    return {
        "openapi": "3.0.3",
        "paths": {
            "/v1/things": {
                "post": {
                    "parameters": [{"in": "query", "name": "dry_run", "required": False, "schema": {"type": "boolean"}}],
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/ThingIn"}}}},
                    "responses": {"201": {"content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/ThingOut"}}}}},
                },
                "get": {"responses": {"200": {"content": {"application/json": {"schema": {
                    "type": "object", "properties": {"things": {"type": "array", "items": {
                        "$ref": "#/components/schemas/ThingOut"}}}, "required": ["things"]}}}}}},
            }
        },
        "components": {"schemas": {
            "ThingIn": {"type": "object", "properties": {
                "name": {"type": "string", "maxLength": 100},
                "color": {"type": "string", "enum": ["red", "blue"]},
                "parent": {"type": "integer", "nullable": True},
            }, "required": ["name"]},
            "ThingOut": {"type": "object", "properties": {
                "id": {"type": "integer"},
                "name": {"type": "string"},
                "created_at": {"type": "string", "format": "date-time"},
                "parent": {"type": "integer", "nullable": True},
            }, "required": ["id", "name", "created_at", "parent"]},
        }},
    }


def mutated(change) -> dict:
    doc = copy.deepcopy(synthetic())
    change(doc)
    return doc


def _schemas(doc):
    return doc["components"]["schemas"]


BREAKING = {
    "path removed": lambda d: d["paths"].pop("/v1/things"),
    "operation removed": lambda d: d["paths"]["/v1/things"].pop("get"),
    "response status removed": lambda d: d["paths"]["/v1/things"]["post"]["responses"].update(
        {"200": d["paths"]["/v1/things"]["post"]["responses"].pop("201")}),
    "response field removed": lambda d: _schemas(d)["ThingOut"]["properties"].pop("created_at"),
    "response field renamed": lambda d: _schemas(d)["ThingOut"]["properties"].update(
        {"title": _schemas(d)["ThingOut"]["properties"].pop("name")}),
    "response field retyped": lambda d: _schemas(d)["ThingOut"]["properties"]["id"].update({"type": "string"}),
    "response format changed": lambda d: _schemas(d)["ThingOut"]["properties"]["created_at"].update({"format": "date"}),
    "response field made nullable": lambda d: _schemas(d)["ThingOut"]["properties"]["name"].update({"nullable": True}),
    "response field made optional": lambda d: _schemas(d)["ThingOut"]["required"].remove("id"),
    "nested response field removed": lambda d: d["paths"]["/v1/things"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"]["properties"].pop("things"),
    "request field removed": lambda d: _schemas(d)["ThingIn"]["properties"].pop("color"),
    "request field retyped": lambda d: _schemas(d)["ThingIn"]["properties"]["parent"].update({"type": "string"}),
    "request nullable to non-null": lambda d: _schemas(d)["ThingIn"]["properties"]["parent"].pop("nullable"),
    "request field newly required": lambda d: _schemas(d)["ThingIn"]["required"].append("color"),
    "new required request field": lambda d: (_schemas(d)["ThingIn"]["properties"].update({"owner": {"type": "string"}}),
                                             _schemas(d)["ThingIn"]["required"].append("owner")),
    "request enum value removed": lambda d: _schemas(d)["ThingIn"]["properties"]["color"].update({"enum": ["red"]}),
    "request maxLength lowered": lambda d: _schemas(d)["ThingIn"]["properties"]["name"].update({"maxLength": 10}),
    "query parameter removed": lambda d: d["paths"]["/v1/things"]["post"].update({"parameters": []}),
    "query parameter newly required": lambda d: d["paths"]["/v1/things"]["post"]["parameters"][0].update({"required": True}),
    "new required header": lambda d: d["paths"]["/v1/things"]["get"].update(
        {"parameters": [{"in": "header", "name": "X-Tenant", "required": True, "schema": {"type": "string"}}]}),
}

ADDITIVE = {
    "new path": lambda d: d["paths"].update({"/v1/others": {"get": {"responses": {"200": {}}}}}),
    "new operation": lambda d: d["paths"]["/v1/things"].update({"delete": {"responses": {"204": {}}}}),
    "new response status": lambda d: d["paths"]["/v1/things"]["post"]["responses"].update({"409": {}}),
    "new response field": lambda d: _schemas(d)["ThingOut"]["properties"].update({"extra": {"type": "string"}}),
    "new optional request field": lambda d: _schemas(d)["ThingIn"]["properties"].update({"note": {"type": "string"}}),
    "request enum value added": lambda d: _schemas(d)["ThingIn"]["properties"]["color"].update(
        {"enum": ["red", "blue", "green"]}),
    "request field made nullable": lambda d: _schemas(d)["ThingIn"]["properties"]["name"].update({"nullable": True}),
    "request field made optional": lambda d: _schemas(d)["ThingIn"]["required"].remove("name"),
    "request maxLength raised": lambda d: _schemas(d)["ThingIn"]["properties"]["name"].update({"maxLength": 1000}),
    "new optional query parameter": lambda d: d["paths"]["/v1/things"]["post"]["parameters"].append(
        {"in": "query", "name": "verbose", "required": False, "schema": {"type": "boolean"}}),
    "response nullable made non-null": lambda d: _schemas(d)["ThingOut"]["properties"]["parent"].pop("nullable"),
}


@pytest.mark.parametrize("name", BREAKING)
def test_comparator_catches(name):
    problems = breaking_changes(synthetic(), mutated(BREAKING[name]))
    assert problems, name


@pytest.mark.parametrize("name", ADDITIVE)
def test_comparator_allows(name):
    assert breaking_changes(synthetic(), mutated(ADDITIVE[name])) == []


def test_comparator_names_the_field():
    problems = breaking_changes(synthetic(), mutated(BREAKING["response field renamed"]))
    assert problems == ["POST /v1/things 201.name: response field removed or renamed",
                        "GET /v1/things 200.things[].name: response field removed or renamed"]


def test_identical_documents_have_no_problems():
    assert breaking_changes(synthetic(), synthetic()) == []


# --- the live document against the committed snapshot ------------------------------------------------

def live_schema() -> dict:
    response = APIClient().get("/v1/schema")
    assert response.status_code == 200
    return json.loads(response.content)


@pytest.mark.django_db
def test_schema_is_public_openapi_3():
    response = APIClient().get("/v1/schema")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/")
    doc = json.loads(response.content)
    assert doc["openapi"].startswith("3.")
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for path in ("/v1/threads", "/v1/threads/{thread_id}", "/v1/threads/{thread_id}/status",
                 "/v1/threads/{thread_id}/summary", "/v1/threads/{thread_id}/messages", "/v1/threads/{thread_id}/ack",
                 "/v1/sessions/heartbeat", "/v1/sessions/{agent_id}", "/v1/auth/refresh"):
        assert path in doc["paths"], path


# Narrowings of the document that narrow nothing the server accepted: the document now states a
# rule the server always enforced (Schemathesis found each). Accepted by an update run only.
SCHEMA_CORRECTIONS = {
    "POST /v1/threads request.participants: maxItems tightened 256 -> 32":
        "the server refused more than ORKIVA_MAX_PARTICIPANTS (32)",
    "POST /v1/threads request.participants: minItems tightened None -> 1": "the server refused no participants",
    "GET /v1/threads/{thread_id}/messages query parameter limit: maximum tightened None -> 500":
        "the server refused more than ORKIVA_READ_LIMIT_MAX (500)",
}


@pytest.mark.django_db
def test_live_schema_is_compatible_with_the_snapshot():
    live = live_schema()
    if os.environ.get(UPDATE_FLAG):
        if SNAPSHOT.exists():
            found = breaking_changes(json.loads(SNAPSHOT.read_text()), live)
            assert [problem for problem in found if problem not in SCHEMA_CORRECTIONS] == []
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(json.dumps(live, indent=2, sort_keys=True) + "\n")
    snapshot = json.loads(SNAPSHOT.read_text())
    problems = breaking_changes(snapshot, live)
    assert problems == [], "The /v1 API changed incompatibly:\n" + "\n".join(problems)


def test_the_snapshot_covers_the_core_contract():
    snapshot = json.loads(SNAPSHOT.read_text())
    message = snapshot["components"]["schemas"]["MessageOut"]["properties"]
    assert set(message) >= {"id", "thread_id", "seq", "sender", "kind", "body", "in_reply_to", "created_at",
                            "schema_version"}
    assert set(snapshot["components"]["schemas"]["MessagePageOut"]["properties"]) >= {
        "messages", "last_seq", "unread_count", "next_after_seq"}
    assert set(snapshot["components"]["schemas"]["CursorOut"]["properties"]) >= {"last_read_seq", "unread_count"}


# --- v1 clients that do not know newer optional fields are still served --------------------------------

@pytest.mark.django_db
def test_minimal_v1_payloads_are_accepted(coordinator, executioner):
    created = client_for(coordinator).post(
        "/v1/threads", {"title": "t", "type": "review", "participants": ["executioner"]}, format="json")
    assert created.status_code == 201, created.content
    thread_id = created.json()["id"]
    posted = client_for(executioner).post(f"/v1/threads/{thread_id}/messages", {"body": "only a body"}, format="json")
    assert posted.status_code == 201 and posted.json()["kind"] == "message"
    beat = client_for(executioner).post("/v1/sessions/heartbeat", {"session_id": "s-1"}, format="json")
    assert beat.status_code == 200 and (beat.json()["runtime_type"], beat.json()["resumable"]) == ("codex", True)
    moved = client_for(coordinator).post(f"/v1/threads/{thread_id}/status", {"status": "active"}, format="json")
    assert moved.status_code == 200
    acked = client_for(executioner).post(f"/v1/threads/{thread_id}/ack", {"seq": 1}, format="json")
    assert acked.status_code == 200


@pytest.mark.django_db
def test_newer_clients_extra_fields_are_ignored(coordinator, executioner):
    created = client_for(coordinator).post(
        "/v1/threads", {"title": "t", "type": "review", "participants": ["executioner"], "priority": "high"},
        format="json")
    assert created.status_code == 201
    posted = client_for(executioner).post(f"/v1/threads/{created.json()['id']}/messages",
                                          {"body": "x", "attachments": [], "format": "markdown"}, format="json")
    assert posted.status_code == 201


@pytest.mark.django_db
def test_every_body_carries_schema_version(coordinator, executioner):
    created = client_for(coordinator).post(
        "/v1/threads", {"title": "t", "type": "review", "participants": ["executioner"]}, format="json").json()
    ex = client_for(executioner)
    t = created["id"]
    bodies = [
        created,
        ex.post(f"/v1/threads/{t}/messages", {"body": "x"}, format="json").json(),
        ex.get(f"/v1/threads/{t}/messages").json(),
        ex.post(f"/v1/threads/{t}/ack", {"seq": 1}, format="json").json(),
        ex.get(f"/v1/threads/{t}/summary").json(),
        ex.get(f"/v1/threads/{t}").json(),
        client_for(coordinator).get("/v1/threads").json(),
        ex.post("/v1/sessions/heartbeat", {"session_id": "s"}, format="json").json(),
        ex.get("/v1/sessions/executioner").json(),
        ex.post("/v1/auth/refresh").json(),
    ]
    for body in bodies:
        assert body["schema_version"] == 1, body
    assert all(m["schema_version"] == 1 for m in bodies[2]["messages"])
