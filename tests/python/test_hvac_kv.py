"""KV v2 at secret/ through hvac 2.4.0, unchanged (contract §5, §3, §10).

Each test writes under its own path (fixture `kv_path`) on the shared dev server; the
tests that change the mount-wide config use a server of their own.
"""

from __future__ import annotations

import hvac
import pytest
import requests
from hvac.exceptions import Forbidden, InvalidPath, InvalidRequest

from contract import (
    CAS_MISMATCH,
    CAS_REQUIRED,
    CONFIG_KEYS,
    CONFIG_OPTIONAL,
    HEALTH_KEYS,
    assert_envelope,
    assert_key_metadata,
    assert_not_found_plain,
    assert_ts,
    assert_version_meta,
)

CREDS = {"username": "app", "password": "s3cr3t-0123456789abcdef"}


def kv(client: hvac.Client):
    return client.secrets.kv.v2


def read(client, path, **kw):
    kw.setdefault("raise_on_deleted_version", True)
    return kv(client).read_secret_version(path=path, **kw)


# --------------------------------------------------------------------------- write / read
def test_write_returns_envelope_and_version_metadata(client, kv_path):
    resp = kv(client).create_or_update_secret(path=kv_path, secret=CREDS)
    assert_envelope(resp)
    assert resp["warnings"] is None
    assert_version_meta(resp["data"], version=1)


def test_read_latest_and_by_version(client, kv_path):
    kv(client).create_or_update_secret(path=kv_path, secret={"v": "one"})
    w2 = kv(client).create_or_update_secret(path=kv_path, secret={"v": "two"})
    assert w2["data"]["version"] == 2

    latest = read(client, kv_path)
    assert_envelope(latest)
    assert set(latest["data"]) == {"data", "metadata"}
    assert latest["data"]["data"] == {"v": "two"}
    assert_version_meta(latest["data"]["metadata"], version=2)
    assert latest["data"]["metadata"]["created_time"] == w2["data"]["created_time"]

    v1 = read(client, kv_path, version=1)
    assert v1["data"]["data"] == {"v": "one"}
    assert_version_meta(v1["data"]["metadata"], version=1)

    # version=0 means "latest"
    v0 = read(client, kv_path, version=0)
    assert v0["data"]["data"] == {"v": "two"}
    assert v0["data"]["metadata"]["version"] == 2


def test_value_types_are_kept(client, kv_path):
    secret = {
        "str": "x",
        "int": 42,
        "neg": -7,
        "float": 1.5,
        "bool": True,
        "null": None,
        "list": [1, "two", {"three": 3}],
        "nested": {"a": {"b": ["c"]}},
        "unicode": "påsswörd ✓ 密码",
        "empty": "",
    }
    kv(client).create_or_update_secret(path=kv_path, secret=secret)
    assert read(client, kv_path)["data"]["data"] == secret


def test_empty_data_is_a_valid_version(client, kv_path):
    resp = kv(client).create_or_update_secret(path=kv_path, secret={})
    assert resp["data"]["version"] == 1
    assert read(client, kv_path)["data"]["data"] == {}


def test_nested_path_and_special_characters(client, kv_path):
    path = f"{kv_path}/db/prod-eu_1.cfg"
    kv(client).create_or_update_secret(path=path, secret=CREDS)
    assert read(client, path)["data"]["data"] == CREDS


def test_read_missing_key_is_plain_404(client, kv_path):
    with pytest.raises(InvalidPath) as ei:
        read(client, kv_path)
    assert_not_found_plain(ei.value)
    with pytest.raises(InvalidPath) as ei:
        read(client, kv_path, raise_on_deleted_version=False)
    assert_not_found_plain(ei.value)


def test_read_version_that_never_existed_is_plain_404(client, kv_path):
    kv(client).create_or_update_secret(path=kv_path, secret=CREDS)
    with pytest.raises(InvalidPath) as ei:
        read(client, kv_path, version=99)
    assert_not_found_plain(ei.value)


def test_versions_count_up(client, kv_path):
    for i in range(1, 6):
        resp = kv(client).create_or_update_secret(path=kv_path, secret={"i": i})
        assert resp["data"]["version"] == i
    for i in range(1, 6):
        assert read(client, kv_path, version=i)["data"]["data"] == {"i": i}


# --------------------------------------------------------------------------- CAS
def test_cas_zero_only_when_key_is_new(client, kv_path):
    assert kv(client).create_or_update_secret(path=kv_path, secret={"a": 1}, cas=0)["data"]["version"] == 1
    with pytest.raises(InvalidRequest) as ei:
        kv(client).create_or_update_secret(path=kv_path, secret={"a": 2}, cas=0)
    assert ei.value.errors == [CAS_MISMATCH]


def test_cas_must_match_current_version(client, kv_path):
    kv(client).create_or_update_secret(path=kv_path, secret={"a": 1})
    assert kv(client).create_or_update_secret(path=kv_path, secret={"a": 2}, cas=1)["data"]["version"] == 2
    for wrong in (1, 3, 7):
        with pytest.raises(InvalidRequest) as ei:
            kv(client).create_or_update_secret(path=kv_path, secret={"a": 9}, cas=wrong)
        assert ei.value.errors == [CAS_MISMATCH]
    # the failed writes left nothing behind
    latest = read(client, kv_path)
    assert latest["data"]["data"] == {"a": 2}
    assert latest["data"]["metadata"]["version"] == 2


def test_cas_required_by_key_metadata(client, kv_path):
    kv(client).create_or_update_secret(path=kv_path, secret={"a": 1})
    kv(client).update_metadata(path=kv_path, cas_required=True)
    with pytest.raises(InvalidRequest) as ei:
        kv(client).create_or_update_secret(path=kv_path, secret={"a": 2})
    assert ei.value.errors == [CAS_REQUIRED]
    assert kv(client).create_or_update_secret(path=kv_path, secret={"a": 2}, cas=1)["data"]["version"] == 2
    assert kv(client).read_secret_metadata(path=kv_path)["data"]["cas_required"] is True


# --------------------------------------------------------------------------- patch (hvac: read + cas write)
def test_hvac_patch_merges_with_cas(client, kv_path):
    kv(client).create_or_update_secret(path=kv_path, secret={"username": "u", "password": "p1"})
    resp = kv(client).patch(path=kv_path, secret={"password": "p2", "extra": "x"})
    assert_version_meta(resp["data"], version=2)
    assert read(client, kv_path)["data"]["data"] == {"username": "u", "password": "p2", "extra": "x"}


def test_hvac_patch_of_missing_key(client, kv_path):
    with pytest.raises(InvalidPath):
        kv(client).patch(path=kv_path, secret={"a": 1})


# --------------------------------------------------------------------------- list
def test_list_sorted_with_folders(client, kv_path):
    for name in ("zeta", "alpha", "Beta", "mid/x", "mid/y/z", "a-b", "a_b", "a/c"):
        kv(client).create_or_update_secret(path=f"{kv_path}/{name}", secret={"n": name})
    resp = kv(client).list_secrets(path=kv_path)
    assert_envelope(resp)
    keys = resp["data"]["keys"]
    assert set(resp["data"]) == {"keys"}
    assert set(keys) == {"zeta", "alpha", "Beta", "mid/", "a-b", "a_b", "a/"}
    assert keys == sorted(keys), f"keys not sorted ascending: {keys}"

    assert kv(client).list_secrets(path=f"{kv_path}/mid")["data"]["keys"] == ["x", "y/"]
    assert kv(client).list_secrets(path=f"{kv_path}/mid/")["data"]["keys"] == ["x", "y/"]
    assert kv(client).list_secrets(path=f"{kv_path}/mid/y")["data"]["keys"] == ["z"]


def test_list_shows_only_direct_children(client, kv_path):
    kv(client).create_or_update_secret(path=f"{kv_path}/a/b/c/d", secret={})
    assert kv(client).list_secrets(path=kv_path)["data"]["keys"] == ["a/"]
    assert kv(client).list_secrets(path=f"{kv_path}/a/b")["data"]["keys"] == ["c/"]


def test_list_missing_folder_is_plain_404(client, kv_path):
    with pytest.raises(InvalidPath) as ei:
        kv(client).list_secrets(path=kv_path)
    assert_not_found_plain(ei.value)


def test_list_of_a_key_is_404(client, kv_path):
    kv(client).create_or_update_secret(path=f"{kv_path}/leaf", secret=CREDS)
    with pytest.raises(InvalidPath) as ei:
        kv(client).list_secrets(path=f"{kv_path}/leaf")
    assert_not_found_plain(ei.value)


def test_list_after_metadata_delete_forgets_the_key(client, kv_path):
    kv(client).create_or_update_secret(path=f"{kv_path}/one", secret={})
    kv(client).create_or_update_secret(path=f"{kv_path}/two", secret={})
    kv(client).delete_metadata_and_all_versions(path=f"{kv_path}/one")
    assert kv(client).list_secrets(path=kv_path)["data"]["keys"] == ["two"]
    kv(client).delete_metadata_and_all_versions(path=f"{kv_path}/two")
    with pytest.raises(InvalidPath):
        kv(client).list_secrets(path=kv_path)


def test_list_keeps_soft_deleted_keys(client, kv_path):
    kv(client).create_or_update_secret(path=f"{kv_path}/gone", secret={})
    kv(client).delete_latest_version_of_secret(path=f"{kv_path}/gone")
    assert kv(client).list_secrets(path=kv_path)["data"]["keys"] == ["gone"]


# --------------------------------------------------------------------------- soft delete / undelete / destroy
def test_delete_latest_version_is_soft(client, kv_path):
    kv(client).create_or_update_secret(path=kv_path, secret={"v": 1})
    kv(client).create_or_update_secret(path=kv_path, secret={"v": 2})
    resp = kv(client).delete_latest_version_of_secret(path=kv_path)
    assert isinstance(resp, requests.Response) and resp.status_code == 204
    assert resp.content == b""

    # raise_on_deleted_version=True: 404 -> InvalidPath, but the body still has the envelope
    with pytest.raises(InvalidPath) as ei:
        read(client, kv_path)
    body = ei.value.json
    assert body is not None, "deleted version: the 404 must carry a JSON envelope"
    assert_envelope(body)
    assert body["data"]["data"] is None
    assert_version_meta(body["data"]["metadata"], version=2, deleted=True)

    # raise_on_deleted_version=False: hvac returns that body
    got = read(client, kv_path, raise_on_deleted_version=False)
    assert got["data"]["data"] is None
    assert_version_meta(got["data"]["metadata"], version=2, deleted=True)

    # no fallback to the older version for "latest"; the older version itself is intact
    assert read(client, kv_path, version=1)["data"]["data"] == {"v": 1}
    meta = kv(client).read_secret_metadata(path=kv_path)["data"]
    assert meta["current_version"] == 2
    assert_ts(meta["versions"]["2"]["deletion_time"])
    assert meta["versions"]["1"]["deletion_time"] == ""


def test_delete_of_absent_key_is_204(client, kv_path):
    resp = kv(client).delete_latest_version_of_secret(path=kv_path)
    assert resp.status_code == 204


def test_delete_and_undelete_versions(client, kv_path):
    for i in (1, 2, 3):
        kv(client).create_or_update_secret(path=kv_path, secret={"v": i})
    resp = kv(client).delete_secret_versions(path=kv_path, versions=[1, 2])
    assert resp.status_code == 204
    for v in (1, 2):
        got = read(client, kv_path, version=v, raise_on_deleted_version=False)
        assert got["data"]["data"] is None
        assert_version_meta(got["data"]["metadata"], version=v, deleted=True)
    assert read(client, kv_path)["data"]["data"] == {"v": 3}

    resp = kv(client).undelete_secret_versions(path=kv_path, versions=[1])
    assert resp.status_code == 204
    v1 = read(client, kv_path, version=1)
    assert v1["data"]["data"] == {"v": 1}
    assert_version_meta(v1["data"]["metadata"], version=1)
    with pytest.raises(InvalidPath):
        read(client, kv_path, version=2)


def test_undelete_latest_restores_reads(client, kv_path):
    kv(client).create_or_update_secret(path=kv_path, secret=CREDS)
    kv(client).delete_latest_version_of_secret(path=kv_path)
    kv(client).undelete_secret_versions(path=kv_path, versions=[1])
    assert read(client, kv_path)["data"]["data"] == CREDS


def test_destroy_versions(client, kv_path):
    kv(client).create_or_update_secret(path=kv_path, secret={"v": 1})
    kv(client).create_or_update_secret(path=kv_path, secret={"v": 2})
    resp = kv(client).destroy_secret_versions(path=kv_path, versions=[1])
    assert resp.status_code == 204

    # destroyed but never soft-deleted: deletion_time "" so hvac raises even with False,
    # and the exception keeps the envelope with destroyed:true
    with pytest.raises(InvalidPath) as ei:
        read(client, kv_path, version=1, raise_on_deleted_version=False)
    body = ei.value.json
    assert body is not None
    assert_envelope(body)
    assert body["data"]["data"] is None
    assert_version_meta(body["data"]["metadata"], version=1, destroyed=True)

    meta = kv(client).read_secret_metadata(path=kv_path)["data"]
    assert meta["versions"]["1"]["destroyed"] is True
    assert meta["versions"]["2"]["destroyed"] is False

    # undelete has no effect on a destroyed version
    kv(client).undelete_secret_versions(path=kv_path, versions=[1])
    with pytest.raises(InvalidPath):
        read(client, kv_path, version=1)
    assert read(client, kv_path)["data"]["data"] == {"v": 2}


def test_destroy_soft_deleted_version_keeps_deletion_time(client, kv_path):
    kv(client).create_or_update_secret(path=kv_path, secret={"v": 1})
    kv(client).delete_latest_version_of_secret(path=kv_path)
    kv(client).destroy_secret_versions(path=kv_path, versions=[1])
    got = read(client, kv_path, raise_on_deleted_version=False)
    assert got["data"]["data"] is None
    assert_version_meta(got["data"]["metadata"], version=1, deleted=True, destroyed=True)


def test_delete_undelete_destroy_unknown_key_or_version_is_204(client, kv_path):
    assert kv(client).delete_secret_versions(path=kv_path, versions=[1]).status_code == 204
    assert kv(client).undelete_secret_versions(path=kv_path, versions=[1]).status_code == 204
    assert kv(client).destroy_secret_versions(path=kv_path, versions=[1]).status_code == 204
    kv(client).create_or_update_secret(path=kv_path, secret={})
    assert kv(client).delete_secret_versions(path=kv_path, versions=[42]).status_code == 204
    assert read(client, kv_path)["data"]["data"] == {}


# --------------------------------------------------------------------------- metadata
def test_read_secret_metadata_shape(client, kv_path):
    w1 = kv(client).create_or_update_secret(path=kv_path, secret={"v": 1})
    w2 = kv(client).create_or_update_secret(path=kv_path, secret={"v": 2})
    resp = kv(client).read_secret_metadata(path=kv_path)
    assert_envelope(resp)
    meta = resp["data"]
    assert_key_metadata(meta)
    assert meta["current_version"] == 2
    assert meta["oldest_version"] == 0
    assert meta["max_versions"] == 0
    assert meta["cas_required"] is False
    assert meta["custom_metadata"] is None
    assert set(meta["versions"]) == {"1", "2"}
    assert meta["versions"]["1"]["created_time"] == w1["data"]["created_time"]
    assert meta["versions"]["2"]["created_time"] == w2["data"]["created_time"]


def test_read_metadata_of_missing_key_is_plain_404(client, kv_path):
    with pytest.raises(InvalidPath) as ei:
        kv(client).read_secret_metadata(path=kv_path)
    assert_not_found_plain(ei.value)


def test_update_metadata_and_custom_metadata(client, kv_path):
    kv(client).create_or_update_secret(path=kv_path, secret={"v": 1})
    resp = kv(client).update_metadata(path=kv_path, max_versions=5, custom_metadata={"owner": "ml", "team": "data"})
    assert isinstance(resp, requests.Response) and resp.status_code == 204

    meta = kv(client).read_secret_metadata(path=kv_path)["data"]
    assert meta["max_versions"] == 5
    assert meta["custom_metadata"] == {"owner": "ml", "team": "data"}

    # version metadata on reads carries the key's custom metadata
    got = read(client, kv_path)
    assert got["data"]["metadata"]["custom_metadata"] == {"owner": "ml", "team": "data"}

    # fields left out keep their value
    kv(client).update_metadata(path=kv_path, cas_required=True)
    meta = kv(client).read_secret_metadata(path=kv_path)["data"]
    assert meta["max_versions"] == 5
    assert meta["cas_required"] is True
    assert meta["custom_metadata"] == {"owner": "ml", "team": "data"}

    # custom_metadata replaces the whole map
    kv(client).update_metadata(path=kv_path, custom_metadata={"owner": "ops"})
    meta = kv(client).read_secret_metadata(path=kv_path)["data"]
    assert meta["custom_metadata"] == {"owner": "ops"}
    assert meta["cas_required"] is True


def test_max_versions_prunes_oldest(client, kv_path):
    kv(client).update_metadata(path=kv_path, max_versions=2)
    for i in (1, 2, 3, 4):
        assert kv(client).create_or_update_secret(path=kv_path, secret={"v": i})["data"]["version"] == i
    meta = kv(client).read_secret_metadata(path=kv_path)["data"]
    assert set(meta["versions"]) == {"3", "4"}
    assert meta["current_version"] == 4
    assert meta["oldest_version"] == 3
    # pruned versions are gone outright: plain 404
    for v in (1, 2):
        with pytest.raises(InvalidPath) as ei:
            read(client, kv_path, version=v, raise_on_deleted_version=False)
        assert_not_found_plain(ei.value)
    assert read(client, kv_path, version=3)["data"]["data"] == {"v": 3}


def test_lower_max_versions_prunes_on_next_write(client, kv_path):
    for i in (1, 2, 3, 4):
        kv(client).create_or_update_secret(path=kv_path, secret={"v": i})
    kv(client).update_metadata(path=kv_path, max_versions=2)
    kv(client).create_or_update_secret(path=kv_path, secret={"v": 5})
    meta = kv(client).read_secret_metadata(path=kv_path)["data"]
    assert set(meta["versions"]) == {"4", "5"}
    assert meta["oldest_version"] == 4


def test_update_metadata_before_any_data(client, kv_path):
    assert kv(client).update_metadata(path=kv_path, custom_metadata={"owner": "ml"}).status_code == 204
    meta = kv(client).read_secret_metadata(path=kv_path)["data"]
    assert_key_metadata(meta)
    assert meta["current_version"] == 0
    assert meta["versions"] == {}
    assert meta["custom_metadata"] == {"owner": "ml"}
    with pytest.raises(InvalidPath):
        read(client, kv_path)
    w = kv(client).create_or_update_secret(path=kv_path, secret=CREDS)
    assert w["data"]["version"] == 1


def test_delete_metadata_and_all_versions_restarts_at_one(client, kv_path):
    for i in (1, 2, 3):
        kv(client).create_or_update_secret(path=kv_path, secret={"v": i})
    resp = kv(client).delete_metadata_and_all_versions(path=kv_path)
    assert resp.status_code == 204
    with pytest.raises(InvalidPath) as ei:
        kv(client).read_secret_metadata(path=kv_path)
    assert_not_found_plain(ei.value)
    with pytest.raises(InvalidPath) as ei:
        read(client, kv_path, version=2)
    assert_not_found_plain(ei.value)
    assert kv(client).create_or_update_secret(path=kv_path, secret={"v": "new"})["data"]["version"] == 1
    # absent key: still 204
    assert kv(client).delete_metadata_and_all_versions(path=kv_path + "-absent").status_code == 204


# --------------------------------------------------------------------------- mount config (own server)
def test_configuration_read_and_write(fresh_dev_server):
    client = fresh_dev_server.client(fresh_dev_server.root_token)
    resp = kv(client).read_configuration()
    assert_envelope(resp)
    conf = resp["data"]
    assert CONFIG_KEYS <= set(conf) <= CONFIG_KEYS | CONFIG_OPTIONAL, sorted(conf)
    assert conf["cas_required"] is False
    assert conf["delete_version_after"] == "0s"
    assert conf["max_versions"] == 0

    assert kv(client).configure(max_versions=3).status_code == 204
    conf = kv(client).read_configuration()["data"]
    assert conf["max_versions"] == 3
    assert conf["cas_required"] is False

    for i in range(1, 6):
        kv(client).create_or_update_secret(path="cfg/k", secret={"v": i})
    meta = kv(client).read_secret_metadata(path="cfg/k")["data"]
    assert set(meta["versions"]) == {"3", "4", "5"}
    assert meta["max_versions"] == 0  # 0 = use the mount config

    # mount-wide cas_required
    assert kv(client).configure(max_versions=3, cas_required=True).status_code == 204
    assert kv(client).read_configuration()["data"]["cas_required"] is True
    with pytest.raises(InvalidRequest) as ei:
        kv(client).create_or_update_secret(path="cfg/k", secret={"v": 6})
    assert ei.value.errors == [CAS_REQUIRED]
    assert kv(client).create_or_update_secret(path="cfg/k", secret={"v": 6}, cas=5)["data"]["version"] == 6


# --------------------------------------------------------------------------- tokens / auth
def test_bad_token_is_forbidden(dev_server, client, kv_path):
    kv(client).create_or_update_secret(path=kv_path, secret=CREDS)
    bad = dev_server.client("not-a-real-token")
    with pytest.raises(Forbidden) as ei:
        read(bad, kv_path)
    assert ei.value.errors == ["permission denied"]
    with pytest.raises(Forbidden):
        kv(bad).create_or_update_secret(path=kv_path, secret={"x": 1})
    with pytest.raises(Forbidden):
        kv(bad).list_secrets(path="pytest")
    # nothing was written
    assert read(client, kv_path)["data"]["metadata"]["version"] == 1


def test_missing_token_is_forbidden(dev_server, kv_path):
    anon = dev_server.client(None)
    with pytest.raises(Forbidden) as ei:
        read(anon, kv_path)
    assert ei.value.errors == ["permission denied"]


def test_is_authenticated(dev_server, client):
    assert client.is_authenticated() is True
    assert dev_server.client("not-a-real-token").is_authenticated() is False
    assert dev_server.client(None).is_authenticated() is False


# --------------------------------------------------------------------------- sys on the dev server
def test_health_get_active(client):
    health = client.sys.read_health_status(method="GET")
    assert isinstance(health, dict), f"expected 200 JSON, got {health!r}"
    assert HEALTH_KEYS <= set(health), sorted(health)
    assert health["initialized"] is True
    assert health["sealed"] is False
    assert health["standby"] is False
    assert health["replication_performance_mode"] == "disabled"
    assert health["replication_dr_mode"] == "disabled"
    assert type(health["server_time_utc"]) is int
    assert isinstance(health["version"], str) and health["version"]
    assert isinstance(health.get("cluster_name"), str) and health["cluster_name"]
    assert isinstance(health.get("cluster_id"), str) and health["cluster_id"]


def test_health_head(client):
    resp = client.sys.read_health_status()  # hvac's default: HEAD, no params
    assert isinstance(resp, requests.Response)
    assert resp.status_code == 200
    assert resp.content == b""


def test_health_code_override(client):
    resp = client.sys.read_health_status(method="GET", active_code=299)
    assert isinstance(resp, requests.Response)
    assert resp.status_code == 299


def test_init_and_seal_status_on_dev(client):
    assert client.sys.is_initialized() is True
    assert client.sys.is_sealed() is False
    st = client.sys.read_seal_status()
    assert st["type"] == "shamir"
    assert st["initialized"] is True
    assert st["sealed"] is False
    assert st["progress"] == 0
    assert st["nonce"] == ""
