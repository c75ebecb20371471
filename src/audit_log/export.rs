//! Export for auditors: filtered JSON Lines or CSV, streaming with constant memory.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{AuditError, RESERVED_TYPES};

/// Output format of [`export`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportFormat {
    /// The journal's own lines, byte for byte.
    #[default]
    Jsonl,
    /// Fixed columns ([`CSV_COLUMNS`]), one record per physical line.
    Csv,
}

impl std::str::FromStr for ExportFormat {
    type Err = AuditError;
    fn from_str(s: &str) -> Result<Self, AuditError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "jsonl" | "json" | "" => Ok(ExportFormat::Jsonl),
            "csv" => Ok(ExportFormat::Csv),
            other => Err(AuditError::Invalid(format!(
                "unknown export format {other:?}: expected jsonl or csv"
            ))),
        }
    }
}

/// The CSV header.
pub const CSV_COLUMNS: [&str; 15] = [
    "time",
    "request_id",
    "seq",
    "type",
    "actor_accessor",
    "actor_display_name",
    "auth_method",
    "operation",
    "path",
    "remote_addr",
    "outcome",
    "status",
    "policy",
    "version",
    "duration_ms",
];

/// Which records to export. Every set filter must match.
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    /// `time >= from`.
    pub from: Option<DateTime<Utc>>,
    /// `time < to`.
    pub to: Option<DateTime<Utc>>,
    /// Equal to `actor.accessor` or `actor.display_name`.
    pub actor: Option<String>,
    /// Glob on `path`: `*` matches any run of characters, `/` included; the rest is literal.
    pub path: Option<String>,
    pub operation: Option<String>,
    pub outcome: Option<String>,
    /// Also export the journal's own records (checkpoints, segment starts...): off by default.
    pub include_internal: bool,
}

impl ExportFilter {
    /// Builds a filter from query parameters (`from`, `to` as RFC 3339; `actor`, `path`,
    /// `operation`, `outcome`); unknown names are refused. `format` is ignored here.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<ExportFilter, AuditError> {
        let mut f = ExportFilter::default();
        let time = |k: &str, v: &str| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| AuditError::Invalid(format!("{k}: invalid RFC 3339 time {v:?}: {e}")))
        };
        for (k, v) in pairs {
            let nonempty = || (!v.is_empty()).then(|| v.to_string());
            match k {
                "from" => f.from = Some(time(k, v)?),
                "to" => f.to = Some(time(k, v)?),
                "actor" => f.actor = nonempty(),
                "path" => f.path = nonempty(),
                "operation" => f.operation = nonempty(),
                "outcome" => f.outcome = nonempty(),
                "format" => {}
                other => {
                    return Err(AuditError::Invalid(format!(
                        "unknown export filter {other:?}"
                    )))
                }
            }
        }
        Ok(f)
    }

    /// True when `rec` passes every filter.
    pub fn matches(&self, rec: &Value) -> bool {
        let s = |k: &str| rec.get(k).and_then(Value::as_str);
        if !self.include_internal {
            if let Some(t) = s("type") {
                if RESERVED_TYPES.contains(&t) {
                    return false;
                }
            }
        }
        if self.from.is_some() || self.to.is_some() {
            let Some(t) = s("time")
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
            else {
                return false;
            };
            if self.from.is_some_and(|f| t < f) || self.to.is_some_and(|to| t >= to) {
                return false;
            }
        }
        if let Some(a) = &self.actor {
            let actor = rec.get("actor");
            let field = |k: &str| actor.and_then(|x| x.get(k)).and_then(Value::as_str);
            if field("accessor") != Some(a.as_str()) && field("display_name") != Some(a.as_str()) {
                return false;
            }
        }
        if let Some(g) = &self.path {
            if !s("path").is_some_and(|p| glob_match(g, p)) {
                return false;
            }
        }
        if self
            .operation
            .as_deref()
            .is_some_and(|o| s("operation") != Some(o))
        {
            return false;
        }
        if self
            .outcome
            .as_deref()
            .is_some_and(|o| s("outcome") != Some(o))
        {
            return false;
        }
        true
    }
}

/// `*` matches any run of characters (including `/`); everything else is literal.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Makes a text cell safe for CSV readers, spreadsheets and terminals:
/// - `\` becomes `\\`, and every control character (C0, DEL, C1, including newline, carriage
///   return and tab) and the Unicode line separators and bidi overrides become `\uXXXX`, so a
///   record is always one physical line and cannot fake another row or hide text;
/// - a cell starting with `=`, `+`, `-` or `@` gets a `'` prefix, so a spreadsheet shows it as
///   text instead of running it as a formula.
///
/// Commas and quotes are left to the CSV writer's quoting.
pub fn sanitize_cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    if s.starts_with(['=', '+', '-', '@']) {
        out.push('\'');
    }
    for c in s.chars() {
        let u = c as u32;
        let escape = u < 0x20
            || (0x7f..=0x9f).contains(&u)
            || matches!(u, 0x200e | 0x200f | 0x2028 | 0x2029 | 0x202a..=0x202e | 0x2066..=0x2069);
        if c == '\\' {
            out.push_str("\\\\");
        } else if escape {
            out.push_str(&format!("\\u{u:04x}"));
        } else {
            out.push(c);
        }
    }
    out
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => sanitize_cell(s),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(other) => sanitize_cell(&other.to_string()),
    }
}

/// The CSV cells of a record, in [`CSV_COLUMNS`] order.
pub fn csv_row(rec: &Value) -> [String; 15] {
    let g = |k: &str| rec.get(k);
    let actor = |k: &str| rec.get("actor").and_then(|a| a.get(k));
    [
        cell(g("time")),
        cell(g("request_id")),
        cell(g("seq")),
        cell(g("type")),
        cell(actor("accessor")),
        cell(actor("display_name")),
        cell(actor("auth_method")),
        cell(g("operation")),
        cell(g("path")),
        cell(g("remote_addr")),
        cell(g("outcome")),
        cell(g("status")),
        cell(g("policy")),
        cell(g("version")),
        cell(g("duration_ms")),
    ]
}

/// Calls `f` with the raw line and the parsed record of every record of `paths` that passes
/// `filter`. Lines that are not JSON objects (torn tails) are skipped.
fn for_each_match(
    paths: &[PathBuf],
    filter: &ExportFilter,
    mut f: impl FnMut(&[u8], &Value) -> Result<(), AuditError>,
) -> Result<u64, AuditError> {
    let mut count = 0u64;
    let mut line = Vec::with_capacity(4096);
    for path in paths {
        let file = File::open(path)
            .map_err(|e| AuditError::io(format!("reading {}", path.display()), e))?;
        let mut r = BufReader::with_capacity(1 << 20, file);
        loop {
            line.clear();
            let n = r
                .read_until(b'\n', &mut line)
                .map_err(|e| AuditError::io(format!("reading {}", path.display()), e))?;
            if n == 0 {
                break;
            }
            let body = line.strip_suffix(b"\n").unwrap_or(&line);
            let Ok(rec) = serde_json::from_slice::<Value>(body) else {
                continue;
            };
            if !rec.is_object() || !filter.matches(&rec) {
                continue;
            }
            count += 1;
            f(body, &rec)?;
        }
    }
    Ok(count)
}

fn write_err(e: std::io::Error) -> AuditError {
    AuditError::io("writing the export", e)
}

/// Writes the records of `paths` (segment files, in the given order) that pass `filter` to
/// `out`, one at a time (constant memory). Lines that are not JSON objects (torn tails) are
/// skipped. Returns the number of records written.
pub fn export(
    paths: &[PathBuf],
    filter: &ExportFilter,
    format: ExportFormat,
    out: &mut dyn Write,
) -> Result<u64, AuditError> {
    let count = match format {
        ExportFormat::Jsonl => {
            let mut w = std::io::BufWriter::with_capacity(64 * 1024, &mut *out);
            let n = for_each_match(paths, filter, |body, _| {
                w.write_all(body).map_err(write_err)?;
                w.write_all(b"\n").map_err(write_err)
            })?;
            w.flush().map_err(write_err)?;
            n
        }
        ExportFormat::Csv => {
            let mut w = csv::WriterBuilder::new()
                .quote_style(csv::QuoteStyle::Necessary)
                .buffer_capacity(64 * 1024)
                .from_writer(&mut *out);
            let csv_err = |e: csv::Error| write_err(e.into());
            w.write_record(CSV_COLUMNS).map_err(csv_err)?;
            let n = for_each_match(paths, filter, |_, rec| {
                w.write_record(csv_row(rec)).map_err(csv_err)
            })?;
            w.flush().map_err(write_err)?;
            n
        }
    };
    out.flush().map_err(write_err)?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs() {
        assert!(glob_match("secret/data/db/*", "secret/data/db/prod"));
        assert!(glob_match("secret/data/db/*", "secret/data/db/a/b"));
        assert!(!glob_match("secret/data/db/*", "secret/data/dbx"));
        assert!(glob_match("*prod", "secret/data/db/prod"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exact2"));
    }

    #[test]
    fn cells_are_neutralized() {
        assert_eq!(sanitize_cell("=1+1"), "'=1+1");
        assert_eq!(sanitize_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(sanitize_cell("a\nb\u{7}c\\"), "a\\u000ab\\u0007c\\\\");
        assert_eq!(sanitize_cell("x\u{202e}y"), "x\\u202ey");
        assert_eq!(sanitize_cell("plain, \"quoted\""), "plain, \"quoted\"");
    }

    #[test]
    fn filter_from_pairs() {
        let f = ExportFilter::from_pairs([
            ("from", "2024-01-01T00:00:00Z"),
            ("path", "secret/*"),
            ("actor", "alice"),
        ])
        .unwrap();
        let rec = json!({"time": "2024-02-01T00:00:00.5Z", "path": "secret/x",
                         "actor": {"display_name": "alice", "accessor": "acc1"}});
        assert!(f.matches(&rec));
        let old = json!({"time": "2023-02-01T00:00:00Z", "path": "secret/x",
                         "actor": {"display_name": "alice"}});
        assert!(!f.matches(&old));
        assert!(ExportFilter::from_pairs([("bogus", "1")]).is_err());
        assert!(ExportFilter::from_pairs([("from", "yesterday")]).is_err());
    }
}
