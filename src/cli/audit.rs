//! `arca audit ...`: offline verification of the journal, and export over HTTP.

use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;

use crate::audit_log::{parse_public_key, segment_paths, verify, VerifyReport};
use crate::cli::{CliError, ClientOpts};
use crate::client::{ApiResponse, Client, ClientError};

/// `arca audit`: subcommand.
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the journal's segment files offline: chain, checkpoint signatures, head
    #[command(after_help = VERIFY_HELP)]
    Verify(VerifyArgs),
    /// Export records from the server (GET /v1/sys/audit-log/export), filtered
    Export(ExportArgs),
    /// Who read a secret: the read records of PATH, as a table
    WhoRead(WhoReadArgs),
}

const VERIFY_HELP: &str = "\
Exit status: 0 when the journal is intact, 1 when tampering (or an unreadable file) was found,
with the first bad record named, 2 on a usage error.

Examples:
  curl -s $ARCA_ADDR/v1/sys/audit-log/public-key > audit.pub
  arca audit verify --public-key audit.pub /var/lib/arca/audit
  arca audit verify --public-key audit.pub --head 123456:9f86d0...  --data-dir /var/lib/arca";

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The checkpoint verification key (PEM, hex or base64); without it signatures are not
    /// checked
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    /// The head kept by the server, SEQ:HASH: catches a truncated tail
    #[arg(long, value_name = "SEQ:HASH")]
    pub head: Option<String>,
    /// Data directory of the server: verify its audit/ folder when no PATH is given
    #[arg(long, value_name = "DIR", env = "ARCA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
    /// Segment files, or directories of segments
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormatArg {
    Jsonl,
    Csv,
}

/// Filters shared by `export` and `who-read`.
#[derive(Debug, Args)]
pub struct TimeRange {
    /// Only records from this long ago (30d, 12h...) or since this RFC 3339 time
    #[arg(long, value_name = "AGE|TIME")]
    pub since: Option<String>,
    /// Only records before this long ago or this RFC 3339 time
    #[arg(long, value_name = "AGE|TIME")]
    pub until: Option<String>,
}

/// Connection flags (the `--format` of the other commands is the export format here).
#[derive(Debug, Clone, Args)]
pub struct ConnOpts {
    /// Server address [env: ARCA_ADDR, then VAULT_ADDR] [default: http://127.0.0.1:8200]
    #[arg(long, value_name = "URL")]
    pub address: Option<String>,
    /// PEM file of CA certificates to trust for TLS [env: ARCA_CACERT, then VAULT_CACERT]
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
}

impl ConnOpts {
    fn client_opts(&self) -> ClientOpts {
        ClientOpts {
            address: self.address.clone(),
            ca_cert: self.ca_cert.clone(),
            ..ClientOpts::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub conn: ConnOpts,
    #[command(flatten)]
    pub range: TimeRange,
    /// Path glob (`*` matches anything, `/` included), e.g. 'secret/data/db/*'
    #[arg(long, value_name = "GLOB")]
    pub path: Option<String>,
    /// Token accessor or display name
    #[arg(long, value_name = "ACTOR")]
    pub actor: Option<String>,
    /// read, list, create, update, patch, delete...
    #[arg(long, value_name = "OP")]
    pub operation: Option<String>,
    /// allowed, denied or error
    #[arg(long, value_name = "OUTCOME")]
    pub outcome: Option<String>,
    /// Output format (CSV cells are escaped against CSV, log and formula injection)
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: ExportFormatArg,
    /// Write to FILE instead of standard output
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct WhoReadArgs {
    #[command(flatten)]
    pub conn: ConnOpts,
    #[command(flatten)]
    pub range: TimeRange,
    /// Secret path (secret/db/prod is read as secret/data/db/prod) or a glob
    #[arg(value_name = "PATH")]
    pub path: String,
    /// Match PATH exactly as given (no KV v2 `data/` insertion)
    #[arg(long)]
    pub exact: bool,
}

/// Runs `arca audit ...`.
pub fn run_audit(args: AuditArgs) -> ExitCode {
    let result = match args.command {
        AuditCommand::Verify(a) => run_verify(a),
        AuditCommand::Export(a) => run_export(a),
        AuditCommand::WhoRead(a) => run_who_read(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(CliError::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::from(1),
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Parses `SEQ:HASH`.
pub fn parse_head(s: &str) -> Result<(u64, String), CliError> {
    let bad = || CliError::Usage(format!("invalid --head {s:?}: expected SEQ:HASH"));
    let (seq, hash) = s.trim().split_once(':').ok_or_else(bad)?;
    let seq: u64 = seq.parse().map_err(|_| bad())?;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    Ok((seq, hash.to_ascii_lowercase()))
}

fn run_verify(a: VerifyArgs) -> Result<u8, CliError> {
    let key = match &a.public_key {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| CliError::Usage(format!("reading {}: {e}", p.display())))?;
            Some(parse_public_key(&text).map_err(|e| CliError::Usage(e.to_string()))?)
        }
        None => None,
    };
    let head = a.head.as_deref().map(parse_head).transpose()?;
    let inputs = if a.paths.is_empty() {
        match &a.data_dir {
            Some(d) => vec![d.join("audit")],
            None => {
                return Err(CliError::Usage(
                    "give segment files or directories, or --data-dir".into(),
                ))
            }
        }
    } else {
        a.paths.clone()
    };
    for p in &inputs {
        if !p.exists() {
            return Err(CliError::Usage(format!("{}: no such file", p.display())));
        }
    }
    let paths = segment_paths(&inputs).map_err(|e| CliError::Failed(e.to_string()))?;
    if paths.is_empty() {
        return Err(CliError::Usage("no segment file found".into()));
    }
    let report: VerifyReport = verify(&paths, key.as_ref(), head);
    let mut out = io::stdout().lock();
    if a.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::Failed(format!("encoding the report: {e}")))?;
        writeln!(out, "{text}")?;
    } else {
        out.write_all(report.render().as_bytes())?;
    }
    out.flush()?;
    Ok(if report.ok { 0 } else { 1 })
}

/// `30d` -> now - 30 days; an RFC 3339 time as is.
pub fn parse_time_arg(flag: &str, s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, CliError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = humantime::parse_duration(s.trim()).map_err(|_| {
        CliError::Usage(format!(
            "invalid --{flag} {s:?}: expected a duration (30d, 12h) or an RFC 3339 time"
        ))
    })?;
    let d = chrono::Duration::from_std(d)
        .map_err(|_| CliError::Usage(format!("--{flag} {s:?} is too large")))?;
    Ok(now - d)
}

fn query(range: &TimeRange, pairs: &[(&str, Option<&str>)]) -> Result<String, CliError> {
    let now = Utc::now();
    let mut q = form_urlencoded::Serializer::new(String::new());
    if let Some(s) = &range.since {
        let t = parse_time_arg("since", s, now)?;
        q.append_pair("from", &t.to_rfc3339_opts(SecondsFormat::Nanos, true));
    }
    if let Some(s) = &range.until {
        let t = parse_time_arg("until", s, now)?;
        q.append_pair("to", &t.to_rfc3339_opts(SecondsFormat::Nanos, true));
    }
    for (k, v) in pairs {
        if let Some(v) = v {
            q.append_pair(k, v);
        }
    }
    Ok(q.finish())
}

/// Sends the export request and returns the body as a stream. Long exports must not be cut by
/// the client's usual request timeout, so this uses its own HTTP client (same address, CA and
/// token rules as the other commands).
fn open_export(opts: &ClientOpts, query: &str) -> Result<reqwest::blocking::Response, CliError> {
    // Validates the address and CA file the same way as every other command.
    let client: Client = opts.client()?;
    let mut builder = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(None)
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("arca-client/", env!("CARGO_PKG_VERSION")));
    let ca = opts
        .ca_cert
        .clone()
        .or_else(|| crate::client::env_first(&["ARCA_CACERT", "VAULT_CACERT"]).map(PathBuf::from));
    if let Some(path) = ca {
        let certs = crate::client::ca_certs(&path).map_err(|e| CliError::Usage(e.to_string()))?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    let http = builder
        .build()
        .map_err(|e| CliError::Failed(format!("building the HTTP client: {e}")))?;
    let url = format!("{}/v1/sys/audit-log/export?{query}", client.address());
    let mut req = http.get(&url);
    if let Some(token) = Client::token_from_env() {
        let mut value = reqwest::header::HeaderValue::from_str(&token)
            .map_err(|_| CliError::Usage("the token contains invalid characters".into()))?;
        value.set_sensitive(true);
        req = req.header(crate::client::TOKEN_HEADER, value);
    }
    let resp = req.send().map_err(|e| CliError::Api {
        context: "exporting the audit log".into(),
        source: ClientError::Transport(e.without_url().to_string()),
    })?;
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let mut body = String::new();
    let _ = resp.take(64 * 1024).read_to_string(&mut body);
    let err = ApiResponse {
        status,
        headers,
        body,
    }
    .error_for_status()
    .err()
    .unwrap_or(ClientError::Http {
        status,
        errors: vec![],
    });
    Err(CliError::Api {
        context: "exporting the audit log".into(),
        source: err,
    })
}

fn progress_bar() -> Option<indicatif::ProgressBar> {
    if !io::stderr().is_terminal() {
        return None;
    }
    let pb =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} exporting: {bytes} ({binary_bytes_per_sec}, {elapsed})",
    ) {
        pb.set_style(style);
    }
    pb.enable_steady_tick(Duration::from_millis(120));
    Some(pb)
}

fn run_export(a: ExportArgs) -> Result<u8, CliError> {
    let format = match a.format {
        ExportFormatArg::Jsonl => "jsonl",
        ExportFormatArg::Csv => "csv",
    };
    let q = query(
        &a.range,
        &[
            ("path", a.path.as_deref()),
            ("actor", a.actor.as_deref()),
            ("operation", a.operation.as_deref()),
            ("outcome", a.outcome.as_deref()),
            ("format", Some(format)),
        ],
    )?;
    let mut body = open_export(&a.conn.client_opts(), &q)?;
    let mut out: Box<dyn Write> = match &a.output {
        Some(p) => {
            Box::new(io::BufWriter::new(File::create(p).map_err(|e| {
                CliError::Failed(format!("creating {}: {e}", p.display()))
            })?))
        }
        None => Box::new(io::BufWriter::new(io::stdout().lock())),
    };
    let pb = progress_bar();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(CliError::Failed(format!(
                    "reading the export after {total} bytes: {e}"
                )))
            }
        };
        out.write_all(&buf[..n])?;
        total += n as u64;
        if let Some(pb) = &pb {
            pb.set_position(total);
        }
    }
    out.flush()?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
        if let Some(p) = &a.output {
            eprintln!("exported {total} bytes to {}", p.display());
        }
    }
    Ok(0)
}

/// `secret/db/prod` -> `secret/data/db/prod`; a path already holding `data/` stays.
pub fn kv_read_path(path: &str) -> String {
    let p = path.trim_start_matches('/');
    match p.split_once('/') {
        Some((mount, rest)) if !rest.starts_with("data/") => format!("{mount}/data/{rest}"),
        _ => p.to_string(),
    }
}

fn text(v: Option<&Value>) -> String {
    let raw = match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    // Terminal safety: no control characters from the journal reach the terminal.
    raw.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// One row of `who-read`: time, actor, version, outcome, address.
pub fn who_read_row(rec: &Value) -> [String; 5] {
    let actor = rec.get("actor");
    let name = text(actor.and_then(|a| a.get("display_name")));
    let accessor = text(actor.and_then(|a| a.get("accessor")));
    let who = match (name.is_empty(), accessor.is_empty()) {
        (false, false) => format!("{name} ({accessor})"),
        (false, true) => name,
        (true, false) => accessor,
        (true, true) => "anonymous".into(),
    };
    let outcome = match (text(rec.get("outcome")), text(rec.get("status"))) {
        (o, s) if s.is_empty() => o,
        (o, s) => format!("{o} ({s})"),
    };
    [
        text(rec.get("time")),
        who,
        text(rec.get("version")),
        outcome,
        text(rec.get("remote_addr")),
    ]
}

/// Renders rows under a header, columns padded to their widest cell.
pub fn render_table(header: &[&str], rows: &[[String; 5]]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}    "));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    out.push_str(&line(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    ));
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

fn run_who_read(a: WhoReadArgs) -> Result<u8, CliError> {
    let path = if a.exact {
        a.path.clone()
    } else {
        kv_read_path(&a.path)
    };
    let q = query(
        &a.range,
        &[
            ("path", Some(path.as_str())),
            ("operation", Some("read")),
            ("format", Some("jsonl")),
        ],
    )?;
    let body = open_export(&a.conn.client_opts(), &q)?;
    let mut rows = Vec::new();
    for line in BufReader::new(body).lines() {
        let line = line.map_err(|e| CliError::Failed(format!("reading the export: {e}")))?;
        if let Ok(rec) = serde_json::from_str::<Value>(&line) {
            rows.push(who_read_row(&rec));
        }
    }
    let mut out = io::stdout().lock();
    if rows.is_empty() {
        writeln!(out, "No read of {path} recorded in that period.")?;
    } else {
        out.write_all(
            render_table(&["TIME", "ACTOR", "VERSION", "OUTCOME", "ADDRESS"], &rows).as_bytes(),
        )?;
    }
    out.flush()?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn clap_definitions_are_valid() {
        use clap::CommandFactory;
        #[derive(Debug, clap::Parser)]
        struct Top {
            #[command(subcommand)]
            cmd: AuditCommand,
        }
        Top::command().debug_assert();
        let t = <Top as clap::Parser>::try_parse_from([
            "audit",
            "export",
            "--since",
            "30d",
            "--path",
            "secret/data/db/*",
            "--format",
            "csv",
            "-o",
            "access.csv",
        ])
        .unwrap();
        assert!(matches!(
            t.cmd,
            AuditCommand::Export(ExportArgs {
                format: ExportFormatArg::Csv,
                ..
            })
        ));
    }

    #[test]
    fn heads_and_times() {
        let h = "a".repeat(64);
        assert_eq!(parse_head(&format!("12:{h}")).unwrap(), (12, h.clone()));
        assert!(parse_head("12").is_err());
        assert!(parse_head("x:abc").is_err());
        let now: DateTime<Utc> = "2024-05-31T00:00:00Z".parse().unwrap();
        assert_eq!(
            parse_time_arg("since", "30d", now).unwrap(),
            "2024-05-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            parse_time_arg("since", "2024-01-01T00:00:00Z", now).unwrap(),
            "2024-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert!(parse_time_arg("since", "yesterday", now).is_err());
    }

    #[test]
    fn who_read_rendering() {
        assert_eq!(kv_read_path("secret/db/prod"), "secret/data/db/prod");
        assert_eq!(kv_read_path("secret/data/db/prod"), "secret/data/db/prod");
        let rec = json!({"time": "t", "actor": {"display_name": "alice\u{1b}[2J", "accessor": "a1"},
                         "version": 3, "outcome": "allowed", "status": 200, "remote_addr": "10.0.0.1"});
        let row = who_read_row(&rec);
        assert_eq!(row[1], "alice?[2J (a1)");
        assert_eq!(row[2], "3");
        assert_eq!(row[3], "allowed (200)");
        let t = render_table(&["TIME", "ACTOR", "VERSION", "OUTCOME", "ADDRESS"], &[row]);
        assert_eq!(t.lines().count(), 3);
        assert_eq!(who_read_row(&json!({}))[1], "anonymous");
    }
}
