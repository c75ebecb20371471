"""Policies, tokens, token roles and AppRole through hvac 2.4.0, unchanged (contract §4 ACL
policies, §6 token auth, §7 AppRole, §9 ACL semantics, §10).

All tests share the session's dev server (fixtures of conftest.py); every policy, role and
path they create carries a random suffix so they never collide with each other or with the
other test files.
"""

from __future__ import annotations

import json
import time
import uuid

import hvac
import pytest
from hvac.exceptions import Forbidden, InvalidPath, InvalidRequest

from contract import ENVELOPE_KEYS, assert_envelope

AUTH_KEYS = {
    "client_token", "accessor", "policies", "token_policies", "metadata", "lease_duration",
    "renewable", "entity_id", "token_type", "orphan", "mfa_requirement", "num_uses",
}
LOOKUP_KEYS = {
    "accessor", "creation_time", "creation_ttl", "display_name", "entity_id", "expire_time",
    "explicit_max_ttl", "id", "issue_time", "meta", "num_uses", "orphan", "path", "policies",
    "renewable", "ttl", "type",
}
ACL_DENIED = "1 error occurred:\n\t* permission denied\n\n"


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def names():
    """A fresh suffix for the names a test creates."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
def read_policy(client, names):
    """A policy that reads secret/data/access-<suffix>/* and lists its metadata."""
    name = f"reader-{names}"
    hcl = (
        f'path "secret/data/access-{names}/*" {{ capabilities = ["read"] }}\n'
        f'path "secret/metadata/access-{names}/*" {{ capabilities = ["list"] }}\n'
    )
    client.sys.create_or_update_acl_policy(name=name, policy=hcl)
    yield name, f"access-{names}"
    client.sys.delete_acl_policy(name=name)


@pytest.fixture
def approle(client):
    """The AppRole auth method, enabled (enabling twice is "path is already in use")."""
    try:
        client.sys.enable_auth_method("approle")
    except InvalidRequest as e:
        assert "already in use" in str(e), e
    return client.auth.approle


def token_client(dev_server, token: str) -> hvac.Client:
    return dev_server.client(token)


# --------------------------------------------------------------------------- ACL policies
def test_acl_policy_crud(client, names):
    name = f"dbread-{names}"
    hcl = 'path "secret/data/db/*" { capabilities = ["read"] }\n'
    resp = client.sys.create_or_update_acl_policy(name=name, policy=hcl)
    assert resp.status_code == 204
    got = client.sys.read_acl_policy(name=name)
    assert_envelope(got)
    assert got["data"]["name"] == name
    assert got["data"]["policy"] == hcl  # exactly as stored
    keys = client.sys.list_acl_policies()["data"]["keys"]
    assert name in keys and "default" in keys and "root" in keys
    assert client.sys.delete_acl_policy(name=name).status_code == 204
    with pytest.raises(InvalidPath):
        client.sys.read_acl_policy(name=name)
    # Deleting what does not exist is fine.
    assert client.sys.delete_acl_policy(name=name).status_code == 204


def test_acl_policy_names_are_lowercased_and_json_policies_accepted(client, names):
    upper = f"UPPER-{names}"
    client.sys.create_or_update_acl_policy(
        name=upper, policy={"path": {"secret/data/x/*": {"capabilities": ["read"]}}}
    )
    got = client.sys.read_acl_policy(name=upper.lower())
    assert got["data"]["name"] == upper.lower()
    assert json.loads(got["data"]["policy"]) == {"path": {"secret/data/x/*": {"capabilities": ["read"]}}}
    assert upper.lower() in client.sys.list_acl_policies()["data"]["keys"]
    client.sys.delete_acl_policy(name=upper)
    with pytest.raises(InvalidPath):
        client.sys.read_acl_policy(name=upper.lower())


@pytest.mark.parametrize("name", ["root", "Root", "ROOT", " root"])
def test_root_policy_cannot_be_written(client, name):
    with pytest.raises(InvalidRequest) as e:
        client.sys.create_or_update_acl_policy(name=name, policy='path "*" { capabilities = ["read"] }')
    assert e.value.errors == ['cannot update "root" policy']
    with pytest.raises(InvalidRequest) as e:
        client.sys.create_or_update_policy(name=name, policy='path "*" { capabilities = ["read"] }')
    assert e.value.errors == ['cannot update "root" policy']


def test_default_and_root_cannot_be_deleted(client):
    with pytest.raises(InvalidRequest) as e:
        client.sys.delete_acl_policy(name="default")
    assert e.value.errors == ["cannot delete default policy"]
    with pytest.raises(InvalidRequest) as e:
        client.sys.delete_acl_policy(name="root")
    assert e.value.errors == ['cannot delete "root" policy']
    assert client.sys.read_acl_policy(name="root")["data"]["policy"] == ""
    assert "auth/token/lookup-self" in client.sys.read_acl_policy(name="default")["data"]["policy"]


def test_malformed_policies_are_refused_with_the_reason(client, names):
    with pytest.raises(InvalidRequest) as e:
        client.sys.create_or_update_acl_policy(name=f"bad-{names}", policy='path "x" { capabilities = ["fly"] }')
    assert "invalid capability" in e.value.errors[0]
    with pytest.raises(InvalidRequest) as e:
        client.sys.create_or_update_acl_policy(name=f"bad-{names}", policy='path "x" { capabilities = ["read" }')
    assert e.value.errors[0].startswith("failed to parse policy")
    with pytest.raises(InvalidPath):
        client.sys.read_acl_policy(name=f"bad-{names}")


def test_legacy_policy_endpoints(client, names):
    name = f"legacy-{names}"
    hcl = 'path "secret/data/legacy/*" { capabilities = ["read", "list"] }'
    resp = client.sys.create_or_update_policy(name=name, policy=hcl)
    assert resp.status_code == 204
    got = client.sys.read_policy(name=name)
    assert got["rules"] == hcl and got["data"]["rules"] == hcl  # legacy: `rules`, top level too
    assert got["name"] == name
    listed = client.sys.list_policies()
    assert name in listed["policies"] and name in listed["data"]["policies"]
    assert name in listed["keys"]
    assert client.get_policy(name) is not None
    client.sys.delete_policy(name=name)
    with pytest.raises(InvalidPath):
        client.sys.read_policy(name=name)


def test_policy_write_applies_at_once_to_existing_tokens(client, dev_server, names):
    name = f"live-{names}"
    path = f"access-live-{names}/k"
    client.secrets.kv.v2.create_or_update_secret(path=path, secret={"v": "1"})
    client.sys.create_or_update_acl_policy(name=name, policy='path "secret/data/nothing" { capabilities = ["read"] }')
    tok = client.auth.token.create(policies=[name], ttl="10m")["auth"]["client_token"]
    t = token_client(dev_server, tok)
    with pytest.raises(Forbidden):
        t.secrets.kv.v2.read_secret_version(path=path, raise_on_deleted_version=True)
    client.sys.create_or_update_acl_policy(name=name, policy=f'path "secret/data/access-live-{names}/*" {{ capabilities = ["read"] }}')
    assert t.secrets.kv.v2.read_secret_version(path=path, raise_on_deleted_version=True)["data"]["data"] == {"v": "1"}
    client.sys.delete_acl_policy(name=name)
    with pytest.raises(Forbidden):
        t.secrets.kv.v2.read_secret_version(path=path, raise_on_deleted_version=True)


# --------------------------------------------------------------------------- tokens
def test_token_create_and_lookups(client, dev_server, read_policy):
    policy, _ = read_policy
    resp = client.auth.token.create(
        policies=[policy], ttl="15m", num_uses=20, meta={"job": "train", "n": 7}, display_name="trainer"
    )
    assert set(resp) == ENVELOPE_KEYS
    assert resp["data"] is None and resp["warnings"] is None and resp["lease_id"] == ""
    auth = resp["auth"]
    assert set(auth) >= AUTH_KEYS
    assert auth["policies"] == sorted(["default", policy])
    assert auth["lease_duration"] == 900
    assert auth["renewable"] is True and auth["orphan"] is False
    assert auth["num_uses"] == 20
    assert auth["metadata"] == {"job": "train", "n": "7"}  # values become strings
    tok, acc = auth["client_token"], auth["accessor"]

    t = token_client(dev_server, tok)
    me = t.auth.token.lookup_self()["data"]
    assert set(me) >= LOOKUP_KEYS
    assert me["id"] == tok and me["accessor"] == acc
    assert me["display_name"] == "token-trainer"
    assert me["num_uses"] == 19  # this lookup counted
    assert me["path"] == "auth/token/create"
    assert 0 < me["ttl"] <= 900 and me["creation_ttl"] == 900

    other = client.auth.token.lookup(token=tok)["data"]
    assert other["accessor"] == acc and other["num_uses"] == 19  # a lookup by another token is free
    by_acc = client.auth.token.lookup_accessor(accessor=acc)["data"]
    assert by_acc["id"] == "" and by_acc["display_name"] == "token-trainer"

    with pytest.raises(Forbidden) as e:
        client.auth.token.lookup(token="arca.not-a-real-token")
    assert e.value.errors == ["bad token"]
    with pytest.raises(InvalidRequest):
        client.auth.token.lookup_accessor(accessor="no-such-accessor")

    root_me = client.auth.token.lookup_self()["data"]
    assert root_me["policies"] == ["root"] and root_me["ttl"] == 0 and root_me["expire_time"] is None


def test_token_create_without_policies_inherits_and_unknown_policies_warn(client, dev_server, read_policy):
    policy, _ = read_policy
    parent = client.auth.token.create(policies=[policy, "spawn-" + policy], ttl="1h")
    assert parent["warnings"] and any("does not exist" in w for w in parent["warnings"])
    root_child = client.auth.token.create()
    assert root_child["auth"]["policies"] == ["root"]
    assert root_child["auth"]["lease_duration"] == 0
    client.auth.token.revoke(token=root_child["auth"]["client_token"])


def test_renew_self_renew_and_caps(client, dev_server, read_policy):
    policy, _ = read_policy
    auth = client.auth.token.create(policies=[policy], ttl="1m", explicit_max_ttl="90s")["auth"]
    t = token_client(dev_server, auth["client_token"])
    renewed = t.auth.token.renew_self(increment="30s")
    assert renewed["auth"]["lease_duration"] == 30
    assert renewed["auth"]["client_token"] == auth["client_token"]
    capped = t.auth.token.renew_self(increment="1h")
    assert capped["auth"]["lease_duration"] <= 90
    assert capped["warnings"] and "exceeded the effective max_ttl" in capped["warnings"][0]
    me = t.auth.token.lookup_self()["data"]
    assert "last_renewal_time" in me
    other = client.auth.token.renew(token=auth["client_token"], increment=45)
    assert other["auth"]["lease_duration"] == 45
    with pytest.raises(InvalidRequest) as e:
        client.auth.token.renew_self()
    assert e.value.errors == ["lease is not renewable"]


def test_revoke_revoke_self_revoke_accessor_and_children(client, dev_server, read_policy, names):
    policy, _ = read_policy
    spawner = f"spawner-{names}"
    client.sys.create_or_update_acl_policy(name=spawner, policy='path "auth/token/create" { capabilities = ["update"] }')
    try:
        parent = client.auth.token.create(policies=[policy, spawner], ttl="1h")["auth"]["client_token"]
        p = token_client(dev_server, parent)
        child = p.auth.token.create(policies=[policy], ttl="10m")["auth"]
        assert child["orphan"] is False
        c = token_client(dev_server, child["client_token"])
        assert c.auth.token.lookup_self()["data"]["ttl"] > 0

        # revoke (by token) cascades to the child
        assert client.auth.token.revoke(token=parent).status_code == 204
        for gone in (p, c):
            with pytest.raises(Forbidden) as e:
                gone.auth.token.lookup_self()
            assert e.value.errors == ["permission denied"]
        assert client.auth.token.revoke(token=parent).status_code == 204  # again: fine

        # revoke_self
        tok = client.auth.token.create(policies=[policy])["auth"]["client_token"]
        t = token_client(dev_server, tok)
        assert t.auth.token.revoke_self().status_code == 204
        with pytest.raises(Forbidden):
            t.auth.token.lookup_self()

        # revoke_accessor; an unknown accessor is a warning
        auth = client.auth.token.create(policies=[policy])["auth"]
        assert client.auth.token.revoke_accessor(accessor=auth["accessor"]).status_code == 204
        with pytest.raises(Forbidden):
            token_client(dev_server, auth["client_token"]).auth.token.lookup_self()
        resp = client.auth.token.revoke_accessor(accessor=auth["accessor"])
        assert resp["warnings"] == ["No token found with this accessor"]
    finally:
        client.sys.delete_acl_policy(name=spawner)


def test_orphans_need_sudo_and_children_stay_within_the_parent(client, dev_server, read_policy, names):
    policy, _ = read_policy
    spawner = f"spawner-{names}"
    client.sys.create_or_update_acl_policy(name=spawner, policy='path "auth/token/create*" { capabilities = ["update"] }')
    try:
        orphan = client.auth.token.create(policies=[policy], no_parent=True)["auth"]
        assert orphan["orphan"] is True
        parent = token_client(dev_server, client.auth.token.create(policies=[policy, spawner], ttl="1m")["auth"]["client_token"])
        with pytest.raises(Forbidden) as e:
            parent.auth.token.create(policies=[policy], no_parent=True)
        assert "sudo" in e.value.errors[0]
        with pytest.raises(Forbidden):
            parent.auth.token.create(policies=[policy, "admin"])
        with pytest.raises(Forbidden):
            parent.auth.token.create(policies=[policy], ttl="2h")
        ok = parent.auth.token.create(policies=[policy], ttl="30s")["auth"]
        assert ok["policies"] == sorted(["default", policy]) and ok["lease_duration"] == 30
    finally:
        client.sys.delete_acl_policy(name=spawner)


def test_num_uses_is_exact(client, dev_server, read_policy):
    policy, folder = read_policy
    client.secrets.kv.v2.create_or_update_secret(path=f"{folder}/a", secret={"v": "x"})
    tok = client.auth.token.create(policies=[policy], num_uses=3)["auth"]["client_token"]
    t = token_client(dev_server, tok)
    for _ in range(3):
        assert t.secrets.kv.v2.read_secret_version(path=f"{folder}/a", raise_on_deleted_version=True)["data"]["data"] == {"v": "x"}
    with pytest.raises(Forbidden) as e:
        t.secrets.kv.v2.read_secret_version(path=f"{folder}/a", raise_on_deleted_version=True)
    assert e.value.errors == ["permission denied"]


def test_expired_token_is_refused(client, dev_server, read_policy):
    policy, _ = read_policy
    tok = client.auth.token.create(policies=[policy], ttl="1s")["auth"]["client_token"]
    time.sleep(2.1)
    with pytest.raises(Forbidden) as e:
        token_client(dev_server, tok).auth.token.lookup_self()
    assert e.value.errors == ["permission denied"]
    with pytest.raises(Forbidden) as e:
        client.auth.token.lookup(token=tok)
    assert e.value.errors == ["bad token"]


def test_denied_path_raises_forbidden_with_the_acl_text(client, dev_server, read_policy, names):
    policy, folder = read_policy
    client.secrets.kv.v2.create_or_update_secret(path=f"{folder}/ok", secret={"v": "fine"})
    client.secrets.kv.v2.create_or_update_secret(path=f"access-private-{names}/x", secret={"v": "secret"})
    t = token_client(dev_server, client.auth.token.create(policies=[policy])["auth"]["client_token"])
    assert t.secrets.kv.v2.read_secret_version(path=f"{folder}/ok", raise_on_deleted_version=True)["data"]["data"] == {"v": "fine"}
    assert t.secrets.kv.v2.list_secrets(path=folder)["data"]["keys"] == ["ok"]
    with pytest.raises(InvalidPath):  # inside the grant a missing item is 404
        t.secrets.kv.v2.read_secret_version(path=f"{folder}/missing", raise_on_deleted_version=True)
    for call in (
        lambda: t.secrets.kv.v2.read_secret_version(path=f"access-private-{names}/x", raise_on_deleted_version=True),
        lambda: t.secrets.kv.v2.create_or_update_secret(path=f"{folder}/ok", secret={"v": "changed"}),
        lambda: t.sys.list_acl_policies(),
        lambda: t.sys.create_or_update_acl_policy(name=policy, policy='path "*" { capabilities = ["sudo"] }'),
        lambda: t.auth.token.create(policies=[policy]),
        lambda: t.auth.token.list_roles(),
    ):
        with pytest.raises(Forbidden) as e:
            call()
        assert e.value.errors == [ACL_DENIED]
    caps = t.sys.get_capabilities(paths=[f"secret/data/{folder}/ok", "secret/data/other"])
    assert caps[f"secret/data/{folder}/ok"] == ["read"]
    assert caps["secret/data/other"] == ["deny"]


# --------------------------------------------------------------------------- token roles
def test_token_role_crud_and_create_against_role(client, dev_server, read_policy, names):
    policy, folder = read_policy
    role = f"trainer-{names}"
    resp = client.auth.token.create_or_update_role(
        role_name=role, allowed_policies=[policy], token_explicit_max_ttl=7200
    )
    assert resp.status_code == 204
    got = client.auth.token.read_role(role_name=role)["data"]
    assert got["name"] == role
    assert got["allowed_policies"] == [policy]
    assert got["orphan"] is False and got["renewable"] is True
    assert got["token_explicit_max_ttl"] == 7200
    assert role in client.auth.token.list_roles()["data"]["keys"]

    created = client.auth.token.create(role_name=role, ttl="15m")["auth"]
    assert created["policies"] == sorted(["default", policy])
    assert created["lease_duration"] == 900
    me = token_client(dev_server, created["client_token"]).auth.token.lookup_self()["data"]
    assert me["role"] == role and me["path"] == f"auth/token/create/{role}"
    with pytest.raises(InvalidRequest) as e:
        client.auth.token.create(role_name=role, policies=[policy, "admin"])
    assert "must be subset of the role's allowed policies" in e.value.errors[0]
    with pytest.raises(InvalidRequest) as e:
        client.auth.token.create(role_name=f"nope-{names}")
    assert e.value.errors == [f"unknown role nope-{names}"]

    assert client.auth.token.delete_role(role_name=role).status_code == 204
    with pytest.raises(InvalidPath):
        client.auth.token.read_role(role_name=role)
    assert client.auth.token.delete_role(role_name=role).status_code == 204


# --------------------------------------------------------------------------- AppRole
def test_approle_role_secret_id_and_login(client, dev_server, approle, read_policy, names):
    policy, folder = read_policy
    client.secrets.kv.v2.create_or_update_secret(path=f"{folder}/creds", secret={"password": "etl"})
    role = f"etl-{names}"
    resp = approle.create_or_update_approle(
        role_name=role,
        token_policies=[policy],
        token_ttl="10m",
        token_max_ttl="30m",
        secret_id_num_uses=2,
        secret_id_ttl="1h",
    )
    assert resp.status_code == 204
    got = approle.read_role(role_name=role)["data"]
    assert got["token_policies"] == [policy]
    assert got["token_ttl"] == 600 and got["token_max_ttl"] == 1800
    assert got["secret_id_num_uses"] == 2 and got["secret_id_ttl"] == 3600
    assert role in approle.list_roles()["data"]["keys"]

    role_id = approle.read_role_id(role_name=role)["data"]["role_id"]
    gen = approle.generate_secret_id(role_name=role, metadata={"job": "etl", "run": "42"})
    secret_id, sid_acc = gen["data"]["secret_id"], gen["data"]["secret_id_accessor"]
    assert gen["data"]["secret_id_num_uses"] == 2 and gen["data"]["secret_id_ttl"] == 3600

    info = approle.read_secret_id(role_name=role, secret_id=secret_id)["data"]
    assert info["metadata"] == {"job": "etl", "run": "42"}
    assert info["secret_id_accessor"] == sid_acc
    assert sid_acc in approle.list_secret_id_accessors(role_name=role)["data"]["keys"]

    login = approle.login(role_id=role_id, secret_id=secret_id, use_token=False)
    auth = login["auth"]
    assert set(auth) >= AUTH_KEYS
    assert auth["policies"] == sorted(["default", policy])
    assert auth["lease_duration"] == 600 and auth["renewable"] is True and auth["orphan"] is True
    assert auth["metadata"]["role_name"] == role and auth["metadata"]["job"] == "etl"
    t = token_client(dev_server, auth["client_token"])
    assert t.secrets.kv.v2.read_secret_version(path=f"{folder}/creds", raise_on_deleted_version=True)["data"]["data"] == {"password": "etl"}
    with pytest.raises(Forbidden):
        t.secrets.kv.v2.read_secret_version(path=f"elsewhere-{names}/x", raise_on_deleted_version=True)
    me = t.auth.token.lookup_self()["data"]
    assert me["path"] == "auth/approle/login"

    # Second use works (with an hvac client that adopts the token), the third is refused.
    fresh = dev_server.client()
    fresh.auth.approle.login(role_id=role_id, secret_id=secret_id)
    assert fresh.is_authenticated()
    with pytest.raises(InvalidRequest) as e:
        approle.login(role_id=role_id, secret_id=secret_id, use_token=False)
    assert e.value.errors == ["invalid role or secret ID"]

    # destroy: a second secret id stops working at once.
    other = approle.generate_secret_id(role_name=role)["data"]["secret_id"]
    assert approle.destroy_secret_id(role_name=role, secret_id=other).status_code == 204
    with pytest.raises(InvalidRequest):
        approle.login(role_id=role_id, secret_id=other, use_token=False)
    with pytest.raises(InvalidRequest):
        approle.login(role_id=role_id, secret_id=str(uuid.uuid4()), use_token=False)
    with pytest.raises(InvalidRequest):
        approle.login(role_id=str(uuid.uuid4()), secret_id=secret_id, use_token=False)

    # A token of the role cannot administer AppRole.
    with pytest.raises(Forbidden):
        t.auth.approle.generate_secret_id(role_name=role)
    approle.delete_role(role_name=role)
    with pytest.raises(InvalidPath):
        approle.read_role_id(role_name=role)


def test_approle_comma_string_lists_and_cidrs(client, approle, names):
    role = f"cidr-{names}"
    approle.create_or_update_approle(
        role_name=role,
        token_policies=["a", "b"],  # hvac sends "a,b"
        token_bound_cidrs=["127.0.0.1/32", "10.0.0.0/8"],
    )
    got = approle.read_role(role_name=role)["data"]
    assert sorted(got["token_policies"]) == ["a", "b"]
    assert got["token_bound_cidrs"] == ["127.0.0.1", "10.0.0.0/8"]
    approle.delete_role(role_name=role)
