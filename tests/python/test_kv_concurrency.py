"""KV v2 under concurrent clients and crashes: version numbers are handed out exactly once,
check-and-set admits exactly one writer, and an acknowledged write survives SIGKILL
(DESIGN.md, Durability)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from hvac.exceptions import InvalidRequest

from conftest import PEER_BIN, _cleanup, start_dev_server
from contract import CAS_MISMATCH

THREADS = 16


def test_concurrent_writes_get_distinct_versions(dev_server, kv_path):
    def one(i):
        c = dev_server.client(dev_server.root_token)
        return c.secrets.kv.v2.create_or_update_secret(path=kv_path, secret={"writer": i})["data"]["version"]

    with ThreadPoolExecutor(THREADS) as pool:
        versions = list(pool.map(one, range(3 * THREADS)))
    assert sorted(versions) == list(range(1, 3 * THREADS + 1))
    meta = dev_server.client(dev_server.root_token).secrets.kv.v2.read_secret_metadata(path=kv_path)["data"]
    assert meta["current_version"] == 3 * THREADS


def test_concurrent_cas_has_one_winner(dev_server, kv_path):
    client = dev_server.client(dev_server.root_token)
    client.secrets.kv.v2.create_or_update_secret(path=kv_path, secret={"round": 0})

    def one(i, cas):
        c = dev_server.client(dev_server.root_token)
        try:
            c.secrets.kv.v2.create_or_update_secret(path=kv_path, secret={"writer": i}, cas=cas)
            return "won"
        except InvalidRequest as e:
            assert e.errors == [CAS_MISMATCH]
            return "lost"

    for cas in (1, 2, 3):
        with ThreadPoolExecutor(THREADS) as pool:
            results = list(pool.map(lambda i: one(i, cas), range(THREADS)))
        assert results.count("won") == 1, results
    meta = client.secrets.kv.v2.read_secret_metadata(path=kv_path)["data"]
    assert meta["current_version"] == 4


def test_concurrent_new_keys_all_listed(dev_server, kv_path):
    def one(i):
        c = dev_server.client(dev_server.root_token)
        c.secrets.kv.v2.create_or_update_secret(path=f"{kv_path}/k{i:03d}", secret={"i": i})

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, range(100)))
    keys = dev_server.client(dev_server.root_token).secrets.kv.v2.list_secrets(path=kv_path)["data"]["keys"]
    assert keys == [f"k{i:03d}" for i in range(100)]


@pytest.mark.skipif(bool(PEER_BIN), reason="OpenBao dev mode keeps its data in memory")
def test_acknowledged_writes_survive_sigkill():
    srv, token = start_dev_server("devcrash")
    try:
        client = srv.client(token)
        for i in range(30):
            client.secrets.kv.v2.create_or_update_secret(path=f"crash/k{i}", secret={"i": i})
        client.secrets.kv.v2.create_or_update_secret(path="crash/k0", secret={"i": "second"})
        client.secrets.kv.v2.delete_latest_version_of_secret(path="crash/k1")
        srv.kill9()
        srv.start()  # same data dir, same dev root token
        client = srv.client(token)
        assert client.sys.is_sealed() is False
        kv = client.secrets.kv.v2
        got = kv.read_secret_version(path="crash/k0", raise_on_deleted_version=True)
        assert got["data"]["data"] == {"i": "second"} and got["data"]["metadata"]["version"] == 2
        deleted = kv.read_secret_version(path="crash/k1", raise_on_deleted_version=False)
        assert deleted["data"]["data"] is None
        for i in range(2, 30):
            assert kv.read_secret_version(path=f"crash/k{i}", raise_on_deleted_version=True)["data"]["data"] == {"i": i}
        assert len(kv.list_secrets(path="crash")["data"]["keys"]) == 30
    finally:
        _cleanup(srv)
