//! Text rendering of the CLI: key/value tables and section headers in the style of the `vault`
//! CLI, so its users read arca's output at a glance.

use serde_json::{Map, Value};

/// Gap between the key and the value columns.
const GLUE: &str = "    ";

/// One cell: strings as they are, `null` as `<nil>`, other JSON values compact.
pub fn render_value(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Rows of a JSON object, sorted by key. Empty `*_time` strings read `n/a` (never happened).
pub fn object_rows(map: &Map<String, Value>) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = map
        .iter()
        .map(|(k, v)| {
            let cell = match v {
                Value::String(s) if s.is_empty() && k.ends_with("_time") => "n/a".to_string(),
                other => render_value(other),
            };
            (k.clone(), cell)
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

/// A two-column table with a `Key / Value` header. Rows keep their order.
pub fn table(rows: &[(String, String)]) -> String {
    two_columns(("Key", "Value"), rows)
}

fn two_columns(header: (&str, &str), rows: &[(String, String)]) -> String {
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .chain([header.0.chars().count()])
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    let dashes = (
        "-".repeat(header.0.chars().count()),
        "-".repeat(header.1.chars().count()),
    );
    let all = [(header.0.to_string(), header.1.to_string()), dashes];
    for (k, v) in all.iter().chain(rows) {
        let pad = width - k.chars().count();
        let line = format!("{k}{}{GLUE}{v}", " ".repeat(pad));
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A single-column list with a header (`Keys` / `----`).
pub fn list(header: &str, items: &[String]) -> String {
    let mut out = format!("{header}\n{}\n", "-".repeat(header.chars().count()));
    for item in items {
        out.push_str(item);
        out.push('\n');
    }
    out
}

/// A `====== Title ======` line as wide as `body`'s widest line (at least the title plus two
/// `=` on each side), followed by `body`.
pub fn section(title: &str, body: &str) -> String {
    let width = body.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    let inner = format!(" {title} ");
    let total = width.max(inner.chars().count() + 4);
    let pad = total - inner.chars().count();
    let left = pad / 2;
    format!(
        "{}{inner}{}\n{body}",
        "=".repeat(left),
        "=".repeat(pad - left)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rows(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(&rows(&[("password", "p"), ("u", "user")]));
        assert_eq!(
            t,
            "Key         Value\n---         -----\npassword    p\nu           user\n"
        );
    }

    #[test]
    fn table_trims_empty_values() {
        let t = table(&rows(&[("k", "")]));
        assert_eq!(t, "Key    Value\n---    -----\nk\n");
    }

    #[test]
    fn section_header_spans_the_table() {
        let body = table(&rows(&[("created_time", "2026-11-27T00:45:28Z")]));
        let s = section("Metadata", &body);
        let first = s.lines().next().unwrap();
        let widest = body.lines().map(str::len).max().unwrap();
        assert_eq!(first.len(), widest);
        assert!(first.contains(" Metadata "));
        assert!(first.starts_with("==") && first.ends_with("=="));
        // Short bodies still get a visible header.
        assert_eq!(section("Secret Path", "x\n"), "== Secret Path ==\nx\n");
    }

    #[test]
    fn values_render_like_vault() {
        assert_eq!(render_value(&json!(null)), "<nil>");
        assert_eq!(render_value(&json!("s")), "s");
        assert_eq!(render_value(&json!(3)), "3");
        assert_eq!(render_value(&json!({"a": 1})), r#"{"a":1}"#);
        let m = json!({"version": 1, "deletion_time": "", "created_time": "t", "custom_metadata": null});
        let r = object_rows(m.as_object().unwrap());
        assert_eq!(
            r,
            rows(&[
                ("created_time", "t"),
                ("custom_metadata", "<nil>"),
                ("deletion_time", "n/a"),
                ("version", "1"),
            ])
        );
    }

    #[test]
    fn list_of_keys() {
        assert_eq!(
            list("Keys", &["a".into(), "b/".into()]),
            "Keys\n----\na\nb/\n"
        );
    }
}
