"""Policies, tokens and ACL decisions through hvac (contract §2, §3, §4 policies, §6, §9).

Policy names carry a random suffix so that tests can share the dev server."""

from __future__ import annotations

import uuid

import pytest
import requests
from hvac.exceptions import Forbidden, InvalidPath, InvalidRequest

from contract import TS_RE

ACL_DENIED = ["1 error occurred:\n\t* permission denied\n\n"]
AUTH_KEYS = {
    "client_token",
    "accessor",
    "policies",
    "token_policies",
    "metadata",
    "lease_duration",
    "renewable",
    "entity_id",
    "token_type",
    "orphan",
    "mfa_requirement",
    "num_uses",
}
LOOKUP_KEYS = {
    "accessor",
    "creation_time",
    "creation_ttl",
    "display_name",
    "entity_id",
    "expire_time",
    "explicit_max_ttl",
    "id",
    "issue_time",
    "meta",
    "num_uses",
    "orphan",
    "path",
    "policies",
    "renewable",
    "ttl",
    "type",
}


@pytest.fixture
def suffix() -> str:
    return uuid.uuid4().hex[:8]


def make_policy(client, name: str, rules: dict[str, list[str]]) -> str:
    text = "\n".join(f'path "{p}" {{ capabilities = {caps!r} }}'.replace("'", '"') for p, caps in rules.items())
    resp = client.sys.create_or_update_acl_policy(name=name, policy=text)
    assert isinstance(resp, requests.Response) and resp.status_code == 204, resp
    return text


def child(dev_server, client, **kw):
    auth = client.auth.token.create(**kw)["auth"]
    return dev_server.client(auth["client_token"]), auth


# --------------------------------------------------------------------------- policies
def test_policy_crud(client, suffix):
    name = f"dbread-{suffix}"
    text = make_policy(client, name, {"secret/data/db/*": ["read"]})
    got = client.sys.read_acl_policy(name=name)
    assert got["data"]["name"] == name
    assert got["data"]["policy"] == text
    keys = client.sys.list_acl_policies()["data"]["keys"]
    assert name in keys and "default" in keys and "root" in keys

    legacy = client.sys.read_policy(name=name)
    assert legacy["data"]["rules"] == text
    assert legacy["rules"] == text  # legacy endpoint copies data to the top level
    listed = client.sys.list_policies()
    assert name in listed["data"]["policies"] and name in listed["policies"]

    assert client.sys.delete_acl_policy(name=name).status_code == 204
    with pytest.raises(InvalidPath) as ei:
        client.sys.read_acl_policy(name=name)
    assert ei.value.errors == []
    assert client.sys.delete_acl_policy(name=name).status_code == 204  # absent: still 204


def test_policy_names_are_lowercased(client, suffix):
    make_policy(client, f"UPPER-{suffix}", {"secret/data/x": ["read"]})
    assert client.sys.read_acl_policy(name=f"upper-{suffix}")["data"]["name"] == f"upper-{suffix}"
    assert client.sys.read_acl_policy(name=f"UPPER-{suffix}")["data"]["name"] == f"upper-{suffix}"


def test_policy_errors(client, suffix):
    with pytest.raises(InvalidRequest) as ei:
        client.sys.create_or_update_acl_policy(name="root", policy='path "x" { capabilities = ["read"] }')
    assert ei.value.errors == ['cannot update "root" policy']
    with pytest.raises(InvalidRequest) as ei:
        client.sys.delete_acl_policy(name="root")
    assert ei.value.errors == ['cannot delete "root" policy']
    with pytest.raises(InvalidRequest) as ei:
        client.sys.delete_acl_policy(name="default")
    assert ei.value.errors == ["cannot delete default policy"]
    with pytest.raises(InvalidRequest) as ei:
        client.sys.create_or_update_acl_policy(name=f"bad-{suffix}", policy='path "x" { capabilities = ["fly"] }')
    assert ei.value.errors[0].startswith("failed to parse policy"), ei.value.errors
    assert "invalid capability" in ei.value.errors[0]


def test_policy_as_dict_is_accepted(client, suffix):
    # hvac serializes a dict policy to a JSON string
    name = f"json-{suffix}"
    resp = client.sys.create_or_update_acl_policy(name=name, policy={"path": {"secret/data/j/*": {"capabilities": ["read"]}}})
    assert resp.status_code == 204
    assert "secret/data/j/*" in client.sys.read_acl_policy(name=name)["data"]["policy"]


# --------------------------------------------------------------------------- tokens
def test_token_create_auth_block(dev_server, client, suffix):
    name = f"dbread-{suffix}"
    make_policy(client, name, {"secret/data/db/*": ["read"]})
    resp = client.auth.token.create(policies=[name], ttl="1h", meta={"job": "train"})
    assert resp["data"] is None
    auth = resp["auth"]
    assert set(auth) == AUTH_KEYS, sorted(auth)
    assert auth["policies"] == sorted(["default", name])
    assert auth["token_policies"] == sorted(["default", name])
    assert auth["metadata"] == {"job": "train"}
    assert auth["lease_duration"] == 3600
    assert auth["renewable"] is True
    assert auth["token_type"] == "service"
    assert auth["orphan"] is False
    assert auth["entity_id"] == ""
    assert auth["num_uses"] == 0
    assert auth["client_token"] and auth["accessor"] and auth["client_token"] != auth["accessor"]

    no_meta = client.auth.token.create(policies=[name], ttl="1h")["auth"]
    assert no_meta["metadata"] is None


def test_lookup_self(dev_server, client, suffix):
    name = f"dbread-{suffix}"
    make_policy(client, name, {"secret/data/db/*": ["read"]})
    tok, auth = child(dev_server, client, policies=[name], ttl="60s", explicit_max_ttl="120s", meta={"job": "train"})
    data = tok.auth.token.lookup_self()["data"]
    assert LOOKUP_KEYS <= set(data), sorted(LOOKUP_KEYS - set(data))
    assert data["id"] == auth["client_token"]
    assert data["accessor"] == auth["accessor"]
    assert data["policies"] == sorted(["default", name])
    assert data["creation_ttl"] == 60
    assert 0 < data["ttl"] <= 60
    assert data["explicit_max_ttl"] == 120
    assert data["display_name"] == "token-token"  # hvac sends display_name="token"; "token-" prefix added
    assert data["path"] == "auth/token/create"
    assert data["meta"] == {"job": "train"}
    assert data["orphan"] is False and data["renewable"] is True and data["type"] == "service"
    assert type(data["creation_time"]) is int
    assert TS_RE.match(data["expire_time"]), data["expire_time"]

    by_accessor = client.auth.token.lookup_accessor(auth["accessor"])["data"]
    assert by_accessor["id"] == ""
    assert by_accessor["policies"] == data["policies"]


def test_root_lookup_self(client):
    data = client.auth.token.lookup_self()["data"]
    assert data["policies"] == ["root"]
    assert data["ttl"] == 0
    assert data["creation_ttl"] == 0
    assert data["expire_time"] is None
    assert data["orphan"] is True
    assert data["renewable"] is False


def test_lookup_of_bad_token(client):
    with pytest.raises(Forbidden) as ei:
        client.auth.token.lookup("no-such-token")
    assert ei.value.errors == ["bad token"]


def test_acl_allows_and_denies(dev_server, client, suffix, kv_path):
    name = f"app-{suffix}"
    make_policy(client, name, {f"secret/data/{kv_path}/*": ["read"], f"secret/metadata/{kv_path}/*": ["list"]})
    client.secrets.kv.v2.create_or_update_secret(path=f"{kv_path}/db", secret={"pw": "x"})
    client.secrets.kv.v2.create_or_update_secret(path=f"{kv_path}-other", secret={"pw": "y"})
    tok, _ = child(dev_server, client, policies=[name], ttl="10m")
    kv = tok.secrets.kv.v2

    assert kv.read_secret_version(path=f"{kv_path}/db", raise_on_deleted_version=True)["data"]["data"] == {"pw": "x"}
    # within the allowed scope a missing key is 404, not 403
    with pytest.raises(InvalidPath):
        kv.read_secret_version(path=f"{kv_path}/missing", raise_on_deleted_version=True)
    # LIST on the folder is checked as ".../<folder>/"
    assert kv.list_secrets(path=kv_path)["data"]["keys"] == ["db"]
    with pytest.raises(Forbidden) as ei:
        kv.create_or_update_secret(path=f"{kv_path}/db", secret={"pw": "z"})
    assert ei.value.errors == ACL_DENIED
    with pytest.raises(Forbidden) as ei:
        kv.read_secret_version(path=f"{kv_path}-other", raise_on_deleted_version=True)
    assert ei.value.errors == ACL_DENIED
    with pytest.raises(Forbidden):
        tok.sys.create_or_update_acl_policy(name=f"evil-{suffix}", policy='path "*" { capabilities = ["sudo"] }')
    with pytest.raises(Forbidden):
        tok.sys.seal()
    assert client.sys.is_sealed() is False


def test_acl_most_specific_pattern_wins(dev_server, client, suffix, kv_path):
    # secret/data/<p>/*[read] + secret/data/<p>/db/*[create,update]: reading <p>/db/x is denied (§9)
    name = f"spec-{suffix}"
    make_policy(
        client,
        name,
        {f"secret/data/{kv_path}/*": ["read"], f"secret/data/{kv_path}/db/*": ["create", "update"]},
    )
    client.secrets.kv.v2.create_or_update_secret(path=f"{kv_path}/db/x", secret={"a": 1})
    client.secrets.kv.v2.create_or_update_secret(path=f"{kv_path}/y", secret={"a": 2})
    tok, _ = child(dev_server, client, policies=[name], ttl="10m")
    kv = tok.secrets.kv.v2
    assert kv.read_secret_version(path=f"{kv_path}/y", raise_on_deleted_version=True)["data"]["data"] == {"a": 2}
    with pytest.raises(Forbidden):
        kv.read_secret_version(path=f"{kv_path}/db/x", raise_on_deleted_version=True)
    assert kv.create_or_update_secret(path=f"{kv_path}/db/x", secret={"a": 3})["data"]["version"] == 2


def test_deny_wins_on_same_pattern(dev_server, client, suffix, kv_path):
    p1, p2 = f"grant-{suffix}", f"deny-{suffix}"
    make_policy(client, p1, {f"secret/data/{kv_path}/*": ["read"]})
    make_policy(client, p2, {f"secret/data/{kv_path}/*": ["deny"]})
    client.secrets.kv.v2.create_or_update_secret(path=f"{kv_path}/a", secret={"a": 1})
    tok, _ = child(dev_server, client, policies=[p1, p2], ttl="10m")
    with pytest.raises(Forbidden):
        tok.secrets.kv.v2.read_secret_version(path=f"{kv_path}/a", raise_on_deleted_version=True)


def test_policy_change_applies_to_existing_tokens(dev_server, client, suffix, kv_path):
    name = f"live-{suffix}"
    make_policy(client, name, {f"secret/data/{kv_path}": ["read"]})
    client.secrets.kv.v2.create_or_update_secret(path=kv_path, secret={"a": 1})
    tok, _ = child(dev_server, client, policies=[name], ttl="10m")
    assert tok.secrets.kv.v2.read_secret_version(path=kv_path, raise_on_deleted_version=True)
    make_policy(client, name, {f"secret/data/{kv_path}-elsewhere": ["read"]})
    with pytest.raises(Forbidden):
        tok.secrets.kv.v2.read_secret_version(path=kv_path, raise_on_deleted_version=True)


def test_num_uses(dev_server, client):
    tok, _ = child(dev_server, client, policies=["default"], ttl="10m", num_uses=3)
    assert tok.auth.token.lookup_self()["data"]["num_uses"] == 2
    assert tok.auth.token.lookup_self()["data"]["num_uses"] == 1
    tok.auth.token.lookup_self()  # the last use
    with pytest.raises(Forbidden) as ei:
        tok.auth.token.lookup_self()
    assert ei.value.errors == ["permission denied"]


def test_child_policies_must_be_subset(dev_server, client, suffix):
    maker = f"maker-{suffix}"
    make_policy(client, maker, {"auth/token/create": ["update"]})
    parent, _ = child(dev_server, client, policies=[maker], ttl="10m")
    # arca answers 403 where OpenBao answers 400: a wider child is an escalation attempt, and
    # issue 3 asks for 403 ("anything else is 403"); the message is the contract's.
    with pytest.raises(Forbidden) as ei:
        parent.auth.token.create(policies=[f"other-{suffix}"], ttl="5m")
    assert ei.value.errors == ["child policies must be subset of parent"]
    kid = parent.auth.token.create(policies=[maker], ttl="5m")["auth"]
    assert kid["policies"] == sorted(["default", maker])


def test_revoking_parent_revokes_children(dev_server, client, suffix):
    maker = f"maker-{suffix}"
    make_policy(client, maker, {"auth/token/create": ["update"]})
    parent, pauth = child(dev_server, client, policies=[maker], ttl="10m")
    kid_auth = parent.auth.token.create(policies=[maker], ttl="5m")["auth"]
    kid = dev_server.client(kid_auth["client_token"])
    assert kid.is_authenticated() is True
    assert client.auth.token.revoke(pauth["client_token"]).status_code == 204
    assert parent.is_authenticated() is False
    assert kid.is_authenticated() is False


def test_renew_and_revoke_self(dev_server, client):
    tok, _ = child(dev_server, client, policies=["default"], ttl="60s")
    renewed = tok.auth.token.renew_self(increment="30s")
    assert renewed["data"] is None
    assert renewed["auth"]["lease_duration"] == 30
    with pytest.raises(InvalidRequest) as ei:
        client.auth.token.renew_self()  # the root token is not renewable
    assert ei.value.errors == ["lease is not renewable"]
    assert tok.auth.token.revoke_self().status_code == 204
    assert tok.is_authenticated() is False


def test_no_default_policy_token_cannot_lookup_self(dev_server, client, suffix, kv_path):
    name = f"only-{suffix}"
    make_policy(client, name, {f"secret/data/{kv_path}": ["read"]})
    tok, auth = child(dev_server, client, policies=[name], ttl="10m", no_default_policy=True)
    assert auth["policies"] == [name]
    with pytest.raises(Forbidden):
        tok.auth.token.lookup_self()


def test_token_roles(dev_server, client, suffix):
    pol, role = f"dbread-{suffix}", f"trainer-{suffix}"
    make_policy(client, pol, {"secret/data/db/*": ["read"]})
    resp = client.auth.token.create_or_update_role(role, allowed_policies=[pol], token_explicit_max_ttl=7200)
    assert resp.status_code == 204
    data = client.auth.token.read_role(role)["data"]
    assert data["name"] == role
    assert data["allowed_policies"] == [pol]
    assert data["orphan"] is False and data["renewable"] is True
    assert data["token_explicit_max_ttl"] == 7200
    assert role in client.auth.token.list_roles()["data"]["keys"]

    auth = client.auth.token.create(role_name=role, ttl="10m")["auth"]
    assert auth["policies"] == sorted(["default", pol])
    looked = dev_server.client(auth["client_token"]).auth.token.lookup_self()["data"]
    assert looked["role"] == role
    assert looked["path"] == f"auth/token/create/{role}"
    with pytest.raises(InvalidRequest):
        client.auth.token.create(role_name=role, policies=[f"other-{suffix}"], ttl="10m")
    with pytest.raises(InvalidRequest) as ei:
        client.auth.token.create(role_name=f"nope-{suffix}", ttl="10m")
    assert ei.value.errors == [f"unknown role nope-{suffix}"]

    assert client.auth.token.delete_role(role).status_code == 204
    with pytest.raises(InvalidPath):
        client.auth.token.read_role(role)
