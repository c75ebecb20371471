"""Production mode: init / unseal / seal through hvac (contract §4), on a server started with
`arca server --config <tmp>/arca.toml` (tls_disable) and a fresh data dir each test."""

from __future__ import annotations

import base64
import os

import pytest
import requests
from hvac.exceptions import Forbidden, InvalidRequest, VaultDown

from conftest import peer_after_unseal
from contract import HEALTH_KEYS, SEAL_STATUS_KEYS, assert_envelope

SEALED = ["Vault is sealed"]


def health(srv) -> requests.Response:
    return srv.raw("GET", "sys/health")


def initialize(client, shares=3, threshold=2) -> dict:
    result = client.sys.initialize(secret_shares=shares, secret_threshold=threshold)
    assert isinstance(result, dict), result
    return result


def test_fresh_server_is_uninitialized(prod_server):
    client = prod_server.client()
    assert client.sys.is_initialized() is False
    assert client.sys.read_init_status() == {"initialized": False}

    st = client.sys.read_seal_status()
    assert SEAL_STATUS_KEYS <= set(st), sorted(st)
    assert st["type"] == "shamir"
    assert st["initialized"] is False
    assert st["sealed"] is True
    assert (st["t"], st["n"], st["progress"]) == (0, 0, 0)
    assert "cluster_id" not in st and "cluster_name" not in st

    h = health(prod_server)
    assert h.status_code == 501
    assert h.headers["Content-Type"] == "application/json"
    body = h.json()
    assert HEALTH_KEYS <= set(body), sorted(body)
    assert (body["initialized"], body["sealed"], body["standby"]) == (False, True, True)
    assert body["replication_performance_mode"] == "unknown"
    assert body["replication_dr_mode"] == "unknown"
    assert "cluster_id" not in body and "cluster_name" not in body
    # hvac's GET health never raises
    assert client.sys.read_health_status(method="GET").status_code == 501
    assert client.sys.read_health_status().status_code == 501  # HEAD

    # everything else is refused while not initialized/sealed
    with pytest.raises(VaultDown) as ei:
        prod_server.client("anything").secrets.kv.v2.read_secret_version(path="x", raise_on_deleted_version=True)
    assert ei.value.errors == SEALED


def test_init_validation(prod_server):
    client = prod_server.client()
    with pytest.raises(InvalidRequest) as ei:
        client.sys.initialize(secret_shares=2, secret_threshold=3)
    assert ei.value.errors == ["invalid seal configuration: threshold cannot be larger than shares"]
    with pytest.raises(InvalidRequest) as ei:
        client.sys.initialize(secret_shares=0, secret_threshold=0)
    assert ei.value.errors == ["invalid seal configuration: shares must be at least one"]
    assert client.sys.is_initialized() is False


def test_init_unseal_seal_flow(prod_server):
    client = prod_server.client()
    init = initialize(client, 3, 2)
    assert set(init) >= {"keys", "keys_base64", "root_token"}, sorted(init)
    assert "request_id" not in init  # raw body, no envelope
    keys, keys_b64, root = init["keys"], init["keys_base64"], init["root_token"]
    assert len(keys) == 3 and len(keys_b64) == 3
    assert len(set(keys)) == 3
    for hexkey, b64key in zip(keys, keys_b64):
        assert len(hexkey) == 66 and all(c in "0123456789abcdef" for c in hexkey), hexkey
        assert base64.b64decode(b64key) == bytes.fromhex(hexkey)
    assert isinstance(root, str) and len(root) >= 16

    # initialized, still sealed
    assert client.sys.is_initialized() is True
    assert client.sys.is_sealed() is True
    st = client.sys.read_seal_status()
    assert (st["initialized"], st["sealed"], st["t"], st["n"], st["progress"], st["nonce"]) == (True, True, 2, 3, 0, "")
    h = health(prod_server)
    assert h.status_code == 503
    body = h.json()
    assert (body["initialized"], body["sealed"], body["standby"]) == (True, True, True)
    assert body["replication_performance_mode"] == "unknown"

    with pytest.raises(InvalidRequest) as ei:
        client.sys.initialize(secret_shares=3, secret_threshold=2)
    assert ei.value.errors == ["Vault is already initialized"]

    rooted = prod_server.client(root)
    with pytest.raises(VaultDown) as ei:
        rooted.secrets.kv.v2.read_secret_version(path="db/prod", raise_on_deleted_version=True)
    assert ei.value.errors == SEALED

    # first share: progress 1 and a nonce; the same share again changes nothing
    st = client.sys.submit_unseal_key(key=keys[0])
    assert (st["sealed"], st["progress"], st["t"], st["n"]) == (True, 1, 2, 3)
    assert isinstance(st["nonce"], str) and st["nonce"]
    nonce = st["nonce"]
    st = client.sys.submit_unseal_key(key=keys[0])
    assert (st["sealed"], st["progress"], st["nonce"]) == (True, 1, nonce)

    # second share (base64 form works too): unsealed, progress and nonce reset
    st = client.sys.submit_unseal_key(key=keys_b64[2])
    assert (st["sealed"], st["progress"], st["nonce"]) == (False, 0, "")
    assert st["initialized"] is True
    assert client.sys.is_sealed() is False
    assert isinstance(st.get("cluster_id"), str) and st["cluster_id"]
    peer_after_unseal(prod_server, root)

    h = health(prod_server)
    assert h.status_code == 200
    assert (h.json()["sealed"], h.json()["standby"]) == (False, False)

    # already unsealed: 200 with the current status
    st = client.sys.submit_unseal_key(key=keys[1])
    assert st["sealed"] is False

    # the root token works, and KV v2 is mounted at secret/ in production mode too (§10.17)
    w = rooted.secrets.kv.v2.create_or_update_secret(path="db/prod", secret={"password": "p1"})
    assert_envelope(w)
    assert w["data"]["version"] == 1

    # seal needs a root token
    with pytest.raises(Forbidden):
        prod_server.client("not-a-real-token").sys.seal()
    assert client.sys.is_sealed() is False

    resp = rooted.sys.seal()
    assert resp.status_code == 204
    assert client.sys.is_sealed() is True
    assert health(prod_server).status_code == 503
    with pytest.raises(VaultDown) as ei:
        rooted.secrets.kv.v2.read_secret_version(path="db/prod", raise_on_deleted_version=True)
    assert ei.value.errors == SEALED

    # unseal with a different pair of shares; the data is still there
    st = client.sys.submit_unseal_keys(keys=[keys[1], keys[2]])
    assert st["sealed"] is False
    peer_after_unseal(prod_server, root)
    got = rooted.secrets.kv.v2.read_secret_version(path="db/prod", raise_on_deleted_version=True)
    assert got["data"]["data"] == {"password": "p1"}


def test_restart_keeps_data_and_comes_back_sealed(prod_server):
    client = prod_server.client()
    init = initialize(client, 1, 1)
    keys, root = init["keys"], init["root_token"]
    assert client.sys.submit_unseal_keys(keys=keys)["sealed"] is False
    peer_after_unseal(prod_server, root)
    kv = prod_server.client(root).secrets.kv.v2
    kv.create_or_update_secret(path="persist/me", secret={"a": 1})
    kv.create_or_update_secret(path="persist/me", secret={"a": 2})

    prod_server.restart()
    client = prod_server.client()
    assert client.sys.is_initialized() is True
    assert client.sys.is_sealed() is True
    st = client.sys.read_seal_status()
    assert (st["t"], st["n"]) == (1, 1)

    assert client.sys.submit_unseal_keys(keys=keys)["sealed"] is False
    peer_after_unseal(prod_server, root)
    kv = prod_server.client(root).secrets.kv.v2
    got = kv.read_secret_version(path="persist/me", raise_on_deleted_version=True)
    assert got["data"]["data"] == {"a": 2}
    assert got["data"]["metadata"]["version"] == 2


def test_data_dir_holds_no_plaintext(prod_server):
    client = prod_server.client()
    init = initialize(client, 1, 1)
    client.sys.submit_unseal_keys(keys=init["keys"])
    peer_after_unseal(prod_server, init["root_token"])
    marker = "plaintext-marker-" + os.urandom(8).hex()
    prod_server.client(init["root_token"]).secrets.kv.v2.create_or_update_secret(
        path="enc/check", secret={"password": marker}
    )
    prod_server.stop()  # flush and close the store
    needle = marker.encode()
    for dirpath, _, files in os.walk(prod_server.data_dir):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                assert needle not in f.read(), f"secret value found in clear in {name}"
            with open(os.path.join(dirpath, name), "rb") as f:
                assert init["root_token"].encode() not in f.read(), f"root token found in clear in {name}"


def test_unseal_errors_and_reset(prod_server):
    client = prod_server.client()
    init = initialize(client, 3, 2)
    keys = init["keys"]

    with pytest.raises(InvalidRequest) as ei:
        client.sys.submit_unseal_key(key="not hex nor base64 !!")
    assert ei.value.errors == ["'key' must be a valid hex or base64 string"]

    st = client.sys.submit_unseal_key(key=keys[0])
    assert st["progress"] == 1
    st = client.sys.submit_unseal_key(reset=True)
    assert (st["sealed"], st["progress"], st["nonce"]) == (True, 0, "")

    # threshold reached with a wrong share: 400 and progress back to 0
    st = client.sys.submit_unseal_key(key=keys[0])
    assert st["progress"] == 1
    # a corrupted copy of another share: well-formed, but it reconstructs the wrong key
    wrong = bytearray(bytes.fromhex(keys[1]))
    wrong[len(wrong) // 2] ^= 0x01
    with pytest.raises(InvalidRequest):
        client.sys.submit_unseal_key(key=bytes(wrong).hex())
    st = client.sys.read_seal_status()
    assert (st["sealed"], st["progress"]) == (True, 0)

    # the right shares still work afterwards
    assert client.sys.submit_unseal_keys(keys=keys[1:])["sealed"] is False


def test_seal_when_sealed_is_204(prod_server):
    client = prod_server.client()
    init = initialize(client, 1, 1)
    rooted = prod_server.client(init["root_token"])
    # sys/seal is the one path that answers while sealed; sealing again is fine
    resp = rooted.sys.seal()
    assert resp.status_code == 204
    assert client.sys.is_sealed() is True
