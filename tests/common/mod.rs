//! Test helpers shared by the integration test binaries: spawn the real `arca` binary as a dev
//! server on a free port with a temporary data directory, and run CLI commands against it.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use arca::client::Client;

/// Path of the `arca` binary built for this test run.
pub const ARCA: &str = env!("CARGO_BIN_EXE_arca");

/// Root token asked of dev servers (a restarted server keeps the token of its data directory,
/// which `TestServer::token` reflects).
pub const DEV_ROOT_TOKEN: &str = "arca-test-root-9f3b7c1d2e";

const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `arca server --dev`, killed on drop.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`
    pub addr: String,
    /// The root token.
    pub token: String,
    pub data_dir: tempfile::TempDir,
    child: Child,
    output: Arc<Mutex<String>>,
}

impl TestServer {
    /// A dev server on a fresh data directory.
    pub fn spawn_dev() -> TestServer {
        let dir = tempfile::Builder::new()
            .prefix("arca-test-")
            .tempdir()
            .expect("create temp data dir");
        Self::spawn_dev_in(dir)
    }

    /// A dev server on `dir` (e.g. the data directory of a server stopped with
    /// [`TestServer::into_data_dir`], to check what survives a restart).
    pub fn spawn_dev_in(dir: tempfile::TempDir) -> TestServer {
        Self::spawn_with_args(
            dir,
            &[
                "server",
                "--dev",
                "--listen",
                "127.0.0.1:0",
                "--dev-root-token",
                DEV_ROOT_TOKEN,
            ],
        )
    }

    /// A production-mode server (plain HTTP, `--config` file in the data directory): starts
    /// uninitialized and sealed, `token` is empty until the test initializes it.
    pub fn spawn_prod() -> TestServer {
        let dir = tempfile::Builder::new()
            .prefix("arca-test-")
            .tempdir()
            .expect("create temp data dir");
        let config = dir.path().join("arca-test.toml");
        std::fs::write(&config, "tls_disable = true\n").expect("write config");
        let config = config.to_string_lossy().into_owned();
        Self::spawn_with_args(
            dir,
            &["server", "--config", &config, "--listen", "127.0.0.1:0"],
        )
    }

    /// `arca server <args> --data-dir <dir>`; waits for the `export ARCA_ADDR=` line and for
    /// `sys/health` to answer.
    pub fn spawn_with_args(dir: tempfile::TempDir, args: &[&str]) -> TestServer {
        Self::spawn_with_args_env(dir, args, &[])
    }

    /// Like [`TestServer::spawn_with_args`] with extra environment variables for the server
    /// (e.g. `RUST_LOG=trace`).
    pub fn spawn_with_args_env(
        dir: tempfile::TempDir,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> TestServer {
        let mut child = Command::new(ARCA)
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .env_remove("ARCA_DEV_ROOT_TOKEN")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn arca server");

        // Drain both pipes for the whole life of the server (a full pipe would block it) into
        // one buffer, and pass stdout lines on until the address is known.
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("stdout piped");
        let out = output.clone();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                push_line(&out, &line);
                let _ = tx.send(line);
            }
        });
        let mut stderr = child.stderr.take().expect("stderr piped");
        let err = output.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut o) = err.lock() {
                    o.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut addr = None;
        let mut token = None;
        while addr.is_none() || token.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(v) = export_value(&line, "ARCA_ADDR") {
                        addr = Some(v);
                    } else if let Some(v) = export_value(&line, "ARCA_TOKEN") {
                        token = Some(v);
                    }
                    // A production server prints no token line.
                    if addr.is_some() && !args.contains(&"--dev") {
                        break;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "arca server did not announce its address:\n{}",
                        output.lock().map(|o| o.clone()).unwrap_or_default()
                    );
                }
            }
        }
        let server = TestServer {
            addr: addr.unwrap_or_default(),
            token: token.unwrap_or_default(),
            data_dir: dir,
            child,
            output,
        };
        server.wait_healthy(deadline);
        server
    }

    fn wait_healthy(&self, deadline: Instant) {
        if let Some(hostport) = self.addr.strip_prefix("https://") {
            // No CA known here: being able to connect is enough.
            loop {
                match std::net::TcpStream::connect(hostport) {
                    Ok(_) => return,
                    Err(e) if Instant::now() > deadline => {
                        panic!("arca server not answering: {e}\n{}", self.output())
                    }
                    Err(_) => thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        let client = self.client_without_token();
        loop {
            match client.request("GET", "/v1/sys/health", None) {
                Ok(_) => return,
                Err(e) if Instant::now() > deadline => {
                    panic!("arca server not answering: {e}\n{}", self.output())
                }
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Everything the server printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// A client with the root token.
    pub fn client(&self) -> Client {
        Client::new(&self.addr, Some(self.token.clone()), None).expect("client")
    }

    pub fn client_without_token(&self) -> Client {
        Client::new(&self.addr, None, None).expect("client")
    }

    /// `arca <args>` against this server with the root token in `ARCA_TOKEN`; `VAULT_*`
    /// variables of the caller's environment are removed.
    pub fn cli(&self) -> Command {
        self.cli_with_token(Some(&self.token))
    }

    /// Like [`TestServer::cli`] with another token (or none).
    pub fn cli_with_token(&self, token: Option<&str>) -> Command {
        let mut cmd = Command::new(ARCA);
        for var in [
            "ARCA_TOKEN",
            "VAULT_TOKEN",
            "VAULT_ADDR",
            "ARCA_CACERT",
            "VAULT_CACERT",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("ARCA_ADDR", &self.addr);
        if let Some(t) = token {
            cmd.env("ARCA_TOKEN", t);
        }
        cmd
    }

    /// Runs `arca <args>` with the root token; stdin empty.
    pub fn run(&self, args: &[&str]) -> CliOutput {
        run_cmd(self.cli().args(args), None)
    }

    /// Runs `arca <args>` with the root token and `input` on stdin.
    pub fn run_stdin(&self, args: &[&str], input: &str) -> CliOutput {
        run_cmd(self.cli().args(args), Some(input))
    }

    /// The server's process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGKILL: no graceful shutdown, no final flush.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the server (SIGKILL) and hands its data directory back, for
    /// [`TestServer::spawn_dev_in`].
    pub fn into_data_dir(mut self) -> tempfile::TempDir {
        self.kill9();
        let placeholder = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.data_dir, placeholder)
    }

    pub fn data_path(&self) -> &Path {
        self.data_dir.path()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn push_line(buf: &Mutex<String>, line: &str) {
    if let Ok(mut o) = buf.lock() {
        o.push_str(line);
        o.push('\n');
    }
}

/// `export NAME='value'` -> `value`.
fn export_value(line: &str, name: &str) -> Option<String> {
    let rest = line.trim().strip_prefix("export ")?.strip_prefix(name)?;
    let v = rest.strip_prefix('=')?;
    Some(v.trim_matches(|c| c == '\'' || c == '"').to_string())
}

/// What a CLI run produced.
#[derive(Debug)]
pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// Panics with the full output unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code: {self:#?}");
        self
    }

    #[track_caller]
    pub fn ok(&self) -> &Self {
        self.expect_code(0)
    }

    /// stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

/// Runs `cmd` to completion, feeding `input` on stdin (or an empty stdin).
pub fn run_cmd(cmd: &mut Command, input: Option<&str>) -> CliOutput {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn arca");
    let mut stdin = child.stdin.take().expect("stdin piped");
    if let Some(text) = input {
        stdin.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(stdin);
    let out: Output = child.wait_with_output().expect("wait arca");
    CliOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `workers` threads, each calling `op(&client, worker, i)` for i = 0, 1, ... against
/// `srv` with the root token, until `min` of them have been acknowledged (`Some`) or 20 s
/// passed; then SIGKILLs the server in the middle of that load and returns every
/// acknowledged result.
pub fn load_then_kill9<T: Send + 'static>(
    srv: &mut TestServer,
    workers: usize,
    min: usize,
    op: impl Fn(&Client, usize, u64) -> Option<T> + Send + Sync + 'static,
) -> Vec<T> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let acked: Arc<Mutex<Vec<T>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let op = Arc::new(op);
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let (addr, token) = (srv.addr.clone(), srv.token.clone());
            let (acked, stop, op) = (acked.clone(), stop.clone(), op.clone());
            thread::spawn(move || {
                let c = Client::new(&addr, Some(token), None).expect("client");
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    if let Some(t) = op(&c, w, i) {
                        acked.lock().unwrap().push(t);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let t0 = Instant::now();
    while acked.lock().unwrap().len() < min && t0.elapsed() < Duration::from_secs(20) {
        thread::sleep(Duration::from_millis(20));
    }
    srv.kill9();
    stop.store(true, Ordering::SeqCst);
    for h in handles {
        h.join().expect("load worker");
    }
    let out = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        out.len() >= min,
        "only {} requests acknowledged before the kill",
        out.len()
    );
    out
}
