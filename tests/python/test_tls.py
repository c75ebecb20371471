"""TLS (rustls) in production mode with certificates from scripts/dev-certs.sh: hvac
verifies the server against the dev CA, by IP and by name (SAN localhost, 127.0.0.1)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import hvac
import pytest
import requests

from conftest import PEER_BIN, REPO, _cleanup, peer_after_unseal, start_prod_server

pytestmark = [
    pytest.mark.skipif(bool(PEER_BIN), reason="TLS setup is arca's config, not OpenBao's"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed by scripts/dev-certs.sh"),
]


@pytest.fixture(scope="module")
def certs():
    out = Path(tempfile.mkdtemp(prefix="arca-pytest-certs-"))
    subprocess.run(["bash", str(REPO / "scripts" / "dev-certs.sh"), str(out)], check=True, capture_output=True)
    yield {"cert": out / "server.crt", "key": out / "server.key", "ca": out / "ca.crt"}
    shutil.rmtree(out, ignore_errors=True)


@pytest.fixture
def tls_server(certs):
    srv = start_prod_server("prodtls", tls=certs)
    yield srv
    _cleanup(srv)


def test_dev_certs_files(certs):
    for name in ("cert", "key", "ca"):
        assert certs[name].is_file()
    assert certs["key"].stat().st_mode & 0o777 == 0o600
    assert (certs["ca"].parent / "ca.key").stat().st_mode & 0o777 == 0o600


def test_tls_flow_with_hvac(tls_server, certs):
    assert tls_server.url.startswith("https://127.0.0.1:"), tls_server.url
    client = tls_server.client()
    assert client.sys.is_initialized() is False
    init = client.sys.initialize(secret_shares=1, secret_threshold=1)
    assert client.sys.submit_unseal_keys(keys=init["keys"])["sealed"] is False
    peer_after_unseal(tls_server, init["root_token"])
    kv = tls_server.client(init["root_token"]).secrets.kv.v2
    kv.create_or_update_secret(path="tls/check", secret={"ok": True})
    assert kv.read_secret_version(path="tls/check", raise_on_deleted_version=True)["data"]["data"] == {"ok": True}

    # the certificate also holds for the name localhost
    port = tls_server.url.rsplit(":", 1)[1]
    by_name = hvac.Client(url=f"https://localhost:{port}", verify=str(certs["ca"]))
    assert by_name.sys.is_initialized() is True


def test_tls_rejects_unverified_clients(tls_server):
    # the system trust store does not know the dev CA
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{tls_server.url}/v1/sys/health", timeout=5)
    # plain HTTP to the TLS port gets no HTTP answer
    plain = tls_server.url.replace("https://", "http://")
    try:
        r = requests.get(f"{plain}/v1/sys/health", timeout=5)
    except requests.exceptions.RequestException:
        return
    assert r.status_code >= 400, "plain HTTP must not be served on the TLS port"
