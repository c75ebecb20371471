"""What hvac hides but depends on: headers, 204 bodies, exact error bodies, LIST forms,
PATCH, weak typing (contract §1, §2, §5, §10). Plain `requests` against the dev server."""

from __future__ import annotations

import json

import pytest

from contract import CAS_MISMATCH, assert_envelope, assert_version_meta

MERGE = {"Content-Type": "application/merge-patch+json"}


@pytest.fixture
def raw(dev_server, root_token):
    def call(method, path, token=root_token, **kw):
        return dev_server.raw(method, path, token=token, **kw)

    return call


def write(raw, path, data, **opts):
    r = raw("POST", f"secret/data/{path}", json={"data": data, "options": opts})
    assert r.status_code == 200, r.text
    return r.json()


def assert_json_headers(r):
    # exactly application/json, no charset (hvac compares the header for equality)
    assert r.headers.get("Content-Type") == "application/json", r.headers.get("Content-Type")


# --------------------------------------------------------------------------- headers and bodies
def test_content_type_and_cache_control_on_every_kind_of_answer(raw, kv_path):
    r = raw("POST", f"secret/data/{kv_path}", json={"data": {"a": 1}})
    assert r.status_code == 200
    assert_json_headers(r)
    assert r.headers.get("Cache-Control") == "no-store"

    r = raw("GET", f"secret/data/{kv_path}")
    assert r.status_code == 200
    assert_json_headers(r)
    assert r.headers.get("Cache-Control") == "no-store"

    r = raw("DELETE", f"secret/data/{kv_path}")
    assert r.status_code == 204
    assert r.content == b""
    assert_json_headers(r)

    r = raw("GET", f"secret/data/{kv_path}-missing")
    assert r.status_code == 404
    assert_json_headers(r)
    assert r.json() == {"errors": []}

    r = raw("POST", f"secret/data/{kv_path}", json={"data": {"a": 2}, "options": {"cas": 9}})
    assert r.status_code == 400
    assert_json_headers(r)
    assert r.json() == {"errors": [CAS_MISMATCH]}


def test_post_and_put_are_the_same(raw, kv_path):
    r = raw("PUT", f"secret/data/{kv_path}", json={"data": {"via": "put"}})
    assert r.status_code == 200
    assert r.json()["data"]["version"] == 1
    r = raw("POST", f"secret/data/{kv_path}", json={"data": {"via": "post"}})
    assert r.json()["data"]["version"] == 2


def test_body_is_json_whatever_the_content_type(raw, kv_path):
    body = json.dumps({"data": {"a": "b"}})
    r = raw("POST", f"secret/data/{kv_path}", data=body, headers={"Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    r = raw("POST", f"secret/data/{kv_path}", data=body)  # no Content-Type at all
    assert r.status_code == 200, r.text
    assert raw("GET", f"secret/data/{kv_path}").json()["data"]["data"] == {"a": "b"}


def test_bad_json_is_400(raw, kv_path):
    r = raw("POST", f"secret/data/{kv_path}", data="{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert_json_headers(r)
    errors = r.json()["errors"]
    assert len(errors) == 1 and errors[0].startswith("failed to decode JSON input"), errors


def test_missing_or_wrong_data_is_400(raw, kv_path):
    r = raw("POST", f"secret/data/{kv_path}", json={"options": {}})
    assert r.status_code == 400
    assert r.json() == {"errors": ["no data provided"]}
    r = raw("POST", f"secret/data/{kv_path}", json={"data": "a string"})
    assert r.status_code == 400
    r = raw("POST", f"secret/data/{kv_path}", json={"data": [1, 2]})
    assert r.status_code == 400
    assert raw("GET", f"secret/data/{kv_path}").status_code == 404


def test_write_to_path_ending_in_slash_is_rejected(raw, kv_path):
    # (hvac strips the trailing slash itself, so only a raw request can send it)
    r = raw("POST", f"secret/data/{kv_path}/", json={"data": {"a": 1}})
    assert r.status_code == 400
    assert r.json() == {"errors": ["cannot write to a path ending in '/'"]}


def test_cas_as_numeric_string(raw, kv_path):
    write(raw, kv_path, {"a": 1})
    r = raw("POST", f"secret/data/{kv_path}", json={"data": {"a": 2}, "options": {"cas": "1"}})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["version"] == 2


def test_non_integer_version_is_400(raw, kv_path):
    write(raw, kv_path, {"a": 1})
    r = raw("GET", f"secret/data/{kv_path}", params={"version": "abc"})
    assert r.status_code == 400
    assert_json_headers(r)


def test_deleted_version_404_carries_envelope(raw, kv_path):
    write(raw, kv_path, {"a": 1})
    assert raw("DELETE", f"secret/data/{kv_path}").status_code == 204
    r = raw("GET", f"secret/data/{kv_path}")
    assert r.status_code == 404
    assert_json_headers(r)
    body = r.json()
    assert_envelope(body)
    assert body["data"]["data"] is None
    assert_version_meta(body["data"]["metadata"], version=1, deleted=True)


def test_invalid_path_under_mount(raw):
    r = raw("GET", "secret/foo")
    assert r.status_code == 404
    assert_json_headers(r)
    body = r.json()
    assert_envelope(body, data_is_none=True)
    assert body["warnings"] and body["warnings"][0].startswith("Invalid path for a versioned K/V secrets engine")


def test_unknown_mount(raw):
    r = raw("GET", "nomount/x")
    assert r.status_code == 404
    assert r.json() == {"errors": ['no handler for route "nomount/x". route entry not found.']}


# --------------------------------------------------------------------------- LIST forms
@pytest.mark.parametrize(
    "method,params",
    [("LIST", None), ("GET", {"list": "true"}), ("GET", {"list": "True"}), ("GET", {"list": "1"})],
    ids=["LIST", "list=true", "list=True", "list=1"],
)
def test_list_forms(raw, kv_path, method, params):
    write(raw, f"{kv_path}/b", {})
    write(raw, f"{kv_path}/a/x", {})
    r = raw(method, f"secret/metadata/{kv_path}", params=params)
    assert r.status_code == 200, r.text
    assert_json_headers(r)
    assert r.json()["data"]["keys"] == ["a/", "b"]
    r = raw(method, f"secret/metadata/{kv_path}/", params=params)
    assert r.json()["data"]["keys"] == ["a/", "b"]


def test_list_of_missing_folder_is_404(raw, kv_path):
    r = raw("LIST", f"secret/metadata/{kv_path}")
    assert r.status_code == 404
    assert r.json() == {"errors": []}


# --------------------------------------------------------------------------- PATCH
def test_patch_requires_merge_patch_content_type(raw, kv_path):
    write(raw, kv_path, {"a": 1})
    r = raw("PATCH", f"secret/data/{kv_path}", json={"data": {"a": 2}})
    assert r.status_code == 415
    assert_json_headers(r)
    assert r.json() == {
        "errors": ["PATCH requires Content-Type of application/merge-patch+json, provided application/json"]
    }


def test_patch_merges_and_null_removes(raw, kv_path):
    write(raw, kv_path, {"username": "u", "password": "p1", "extra": "x", "nested": {"a": 1, "b": 2}})
    r = raw(
        "PATCH",
        f"secret/data/{kv_path}",
        data=json.dumps({"data": {"password": "p2", "extra": None, "nested": {"b": None, "c": 3}}}),
        headers=MERGE,
    )
    assert r.status_code == 200, r.text
    assert_envelope(r.json())
    assert_version_meta(r.json()["data"], version=2)
    got = raw("GET", f"secret/data/{kv_path}").json()["data"]["data"]
    assert got == {"username": "u", "password": "p2", "nested": {"a": 1, "c": 3}}


def test_patch_cas(raw, kv_path):
    write(raw, kv_path, {"a": 1})
    r = raw("PATCH", f"secret/data/{kv_path}", data=json.dumps({"data": {"a": 2}, "options": {"cas": 5}}), headers=MERGE)
    assert r.status_code == 400
    assert r.json() == {"errors": [CAS_MISMATCH]}
    r = raw("PATCH", f"secret/data/{kv_path}", data=json.dumps({"data": {"a": 2}, "options": {"cas": 1}}), headers=MERGE)
    assert r.status_code == 200


def test_patch_missing_or_deleted_is_404(raw, kv_path):
    r = raw("PATCH", f"secret/data/{kv_path}", data=json.dumps({"data": {"a": 1}}), headers=MERGE)
    assert r.status_code == 404
    assert r.content == b""  # absent key: empty body
    assert_json_headers(r)
    write(raw, kv_path, {"a": 1})
    raw("DELETE", f"secret/data/{kv_path}")
    r = raw("PATCH", f"secret/data/{kv_path}", data=json.dumps({"data": {"a": 2}}), headers=MERGE)
    assert r.status_code == 404
    # latest deleted: the contract (§5) says empty body; OpenBao 2.7.2 answers the envelope
    # with the deleted version's metadata. Accept both; nothing was written either way.
    if r.content:
        assert_envelope(r.json())
    assert raw("GET", f"secret/metadata/{kv_path}").json()["data"]["current_version"] == 1


def test_patch_metadata_merges_custom_metadata(raw, kv_path):
    write(raw, kv_path, {"a": 1})
    r = raw("POST", f"secret/metadata/{kv_path}", json={"custom_metadata": {"owner": "ml", "tier": "gold"}})
    assert r.status_code == 204
    r = raw("PATCH", f"secret/metadata/{kv_path}", data=json.dumps({"custom_metadata": {"tier": "silver", "env": "prod"}}), headers=MERGE)
    assert r.status_code == 204, r.text
    meta = raw("GET", f"secret/metadata/{kv_path}").json()["data"]
    assert meta["custom_metadata"] == {"owner": "ml", "tier": "silver", "env": "prod"}


# --------------------------------------------------------------------------- delete / undelete / destroy bodies
def test_versions_may_be_numeric_strings(raw, kv_path):
    write(raw, kv_path, {"a": 1})
    write(raw, kv_path, {"a": 2})
    assert raw("POST", f"secret/delete/{kv_path}", json={"versions": ["1"]}).status_code == 204
    assert raw("GET", f"secret/data/{kv_path}", params={"version": 1}).status_code == 404
    assert raw("POST", f"secret/undelete/{kv_path}", json={"versions": ["1"]}).status_code == 204
    assert raw("GET", f"secret/data/{kv_path}", params={"version": 1}).status_code == 200


def test_empty_versions_list_is_400(raw, kv_path):
    write(raw, kv_path, {"a": 1})
    r = raw("POST", f"secret/delete/{kv_path}", json={"versions": []})
    assert r.status_code == 400
    assert r.json() == {"errors": ["No version number provided"]}
    r = raw("POST", f"secret/destroy/{kv_path}", json={})
    assert r.status_code == 400
    assert r.json() == {"errors": ["no version number provided"]}
    r = raw("POST", f"secret/undelete/{kv_path}", json={})
    assert r.status_code == 400


# --------------------------------------------------------------------------- tokens in headers
def test_bearer_token_and_bad_tokens(raw, dev_server, root_token, kv_path):
    write(raw, kv_path, {"a": 1})
    r = dev_server.raw("GET", f"secret/data/{kv_path}", headers={"Authorization": f"Bearer {root_token}"})
    assert r.status_code == 200
    r = dev_server.raw("GET", f"secret/data/{kv_path}", headers={"Authorization": f"bearer {root_token}"})
    assert r.status_code == 403
    assert r.json() == {"errors": ["permission denied"]}
    r = dev_server.raw("GET", f"secret/data/{kv_path}")
    assert r.status_code == 403
    assert_json_headers(r)
    assert r.json() == {"errors": ["permission denied"]}
    r = raw("GET", f"secret/data/{kv_path}", token="wrong")
    assert r.status_code == 403
    assert r.json() == {"errors": ["permission denied"]}
    # X-Vault-Token wins over Authorization
    r = dev_server.raw(
        "GET", f"secret/data/{kv_path}", headers={"X-Vault-Token": "wrong", "Authorization": f"Bearer {root_token}"}
    )
    assert r.status_code == 403


@pytest.mark.parametrize("ns", ["", "/", "root", "root/"])
def test_root_namespace_forms_accepted(raw, kv_path, ns):
    write(raw, kv_path, {"a": 1})
    r = raw("GET", f"secret/data/{kv_path}", headers={"X-Vault-Namespace": ns})
    assert r.status_code == 200, r.text


def test_other_namespace_is_404(raw, kv_path):
    r = raw("POST", f"secret/data/{kv_path}", json={"data": {"a": 1}}, headers={"X-Vault-Namespace": "team-a"})
    assert r.status_code == 404
    assert r.json() == {"errors": ["namespace not found"]}
    assert raw("GET", f"secret/data/{kv_path}").status_code == 404  # nothing was written


# --------------------------------------------------------------------------- sys raw bodies
def test_sys_raw_bodies(dev_server):
    r = dev_server.raw("GET", "sys/init")
    assert r.status_code == 200
    assert r.json() == {"initialized": True}
    r = dev_server.raw("HEAD", "sys/health")
    assert r.status_code == 200
    assert r.content == b""
    r = dev_server.raw("GET", "sys/health", params={"activecode": "299"})
    assert r.status_code == 299
    r = dev_server.raw("GET", "sys/seal-status")
    assert r.status_code == 200
    assert_json_headers(r)
    assert "request_id" not in r.json()


# --------------------------------------------------------------------------- methods and weak typing
@pytest.mark.parametrize("method,path", [("DELETE", "secret/config"), ("LIST", "secret/data/x"), ("DELETE", "sys/health")])
def test_unsupported_method_is_405(raw, method, path):
    r = raw(method, path)
    assert r.status_code == 405, r.text
    assert_json_headers(r)
    assert isinstance(r.json().get("errors"), list)


def test_ints_accepted_as_numeric_strings(raw, kv_path):
    write(raw, kv_path, {"a": 1})
    r = raw("POST", f"secret/metadata/{kv_path}", json={"max_versions": "3"})
    assert r.status_code == 204, r.text
    assert raw("GET", f"secret/metadata/{kv_path}").json()["data"]["max_versions"] == 3
    r = raw("POST", f"secret/metadata/{kv_path}", json={"max_versions": "abc"})
    assert r.status_code == 400
