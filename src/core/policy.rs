//! ACL policies: parsing (Vault's HCL or JSON form) and the pure decision function.
//!
//! Semantics follow vault-api-subset.md §9: deny by default; for a request only the single
//! best-matching path pattern counts (no union across patterns); the same pattern in several
//! policies is merged (capabilities unioned, `deny` wins); `deny` on the winning pattern
//! overrides everything.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;

/// A set of capabilities.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Caps(u16);

impl Caps {
    pub const NONE: Caps = Caps(0);
    pub const CREATE: Caps = Caps(1);
    pub const READ: Caps = Caps(2);
    pub const UPDATE: Caps = Caps(4);
    pub const PATCH: Caps = Caps(8);
    pub const DELETE: Caps = Caps(16);
    pub const LIST: Caps = Caps(32);
    pub const SUDO: Caps = Caps(64);
    pub const DENY: Caps = Caps(128);
    const NAMES: [(&'static str, Caps); 8] = [
        ("create", Caps::CREATE),
        ("read", Caps::READ),
        ("update", Caps::UPDATE),
        ("patch", Caps::PATCH),
        ("delete", Caps::DELETE),
        ("list", Caps::LIST),
        ("sudo", Caps::SUDO),
        ("deny", Caps::DENY),
    ];

    pub fn contains(self, other: Caps) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn union(self, other: Caps) -> Caps {
        Caps(self.0 | other.0)
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn parse(name: &str) -> Option<Caps> {
        match name {
            "scan" => Some(Caps::LIST), // OpenBao's scan: a recursive list; treated as list
            _ => Caps::NAMES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, c)| *c),
        }
    }
    /// Names in Vault's order (for `sys/capabilities-self`).
    pub fn names(self) -> Vec<&'static str> {
        if self.contains(Caps::DENY) {
            return vec!["deny"];
        }
        let mut v: Vec<&'static str> = Caps::NAMES
            .iter()
            .filter(|(_, c)| self.contains(*c))
            .map(|(n, _)| *n)
            .collect();
        if v.is_empty() {
            v.push("deny");
        }
        v.sort_unstable();
        v
    }
}

impl fmt::Debug for Caps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.names())
    }
}

/// One `path "..." { capabilities = [...] }` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRule {
    pub pattern: String,
    pub caps: Caps,
}

/// A parsed policy; `text` is kept exactly as written (reads return it).
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub text: String,
    pub rules: Vec<PathRule>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("failed to parse policy: {0}")]
    Parse(String),
    #[error("invalid policy name: {0}")]
    Name(String),
}

/// The `default` policy: what every token may do to itself (OpenBao's grants, minus the
/// endpoints arca does not serve).
pub const DEFAULT_POLICY: &str = r#"# Allow tokens to look up their own properties
path "auth/token/lookup-self" {
    capabilities = ["read"]
}

# Allow tokens to renew themselves
path "auth/token/renew-self" {
    capabilities = ["update"]
}

# Allow tokens to revoke themselves
path "auth/token/revoke-self" {
    capabilities = ["update"]
}

# Allow a token to look up its own capabilities on a path
path "sys/capabilities-self" {
    capabilities = ["update"]
}

# Allow a token to manage its own cubbyhole
path "cubbyhole/*" {
    capabilities = ["create", "read", "update", "delete", "list"]
}

# Allow a token to wrap arbitrary values in a response-wrapping token
path "sys/wrapping/wrap" {
    capabilities = ["update"]
}

# Allow a token to look up the creation time and TTL of a given response-wrapping token
path "sys/wrapping/lookup" {
    capabilities = ["update"]
}

# Allow a token to unwrap a response-wrapping token
path "sys/wrapping/unwrap" {
    capabilities = ["update"]
}

# Allow general purpose tools
path "sys/tools/hash" {
    capabilities = ["update"]
}
path "sys/tools/hash/*" {
    capabilities = ["update"]
}
"#;

/// Lowercases and trims a policy name, and refuses names that cannot be stored.
pub fn normalize_name(name: &str) -> Result<String, PolicyError> {
    let n = name.trim().to_lowercase();
    if n.is_empty() {
        return Err(PolicyError::Name("policy name is empty".into()));
    }
    if n.len() > 128
        || n.chars()
            .any(|c| c.is_control() || c == '/' || c.is_whitespace())
    {
        return Err(PolicyError::Name(format!(
            "{n:?}: at most 128 characters, no '/', spaces or control characters"
        )));
    }
    Ok(n)
}

fn legacy(policy: &str) -> Option<Caps> {
    Some(match policy {
        "deny" => Caps::DENY,
        "read" => Caps::READ.union(Caps::LIST),
        "write" => Caps::READ
            .union(Caps::LIST)
            .union(Caps::CREATE)
            .union(Caps::UPDATE)
            .union(Caps::DELETE)
            .union(Caps::PATCH),
        "sudo" => Caps::READ
            .union(Caps::LIST)
            .union(Caps::CREATE)
            .union(Caps::UPDATE)
            .union(Caps::DELETE)
            .union(Caps::PATCH)
            .union(Caps::SUDO),
        _ => return None,
    })
}

/// One path block's body, independent of HCL or JSON.
enum Attr<'a> {
    Strings(Vec<&'a str>),
    Str(&'a str),
    Other,
}

fn rule_from_attrs<'a>(
    pattern: &str,
    attrs: impl Iterator<Item = (&'a str, Attr<'a>)>,
) -> Result<PathRule, PolicyError> {
    let err = |m: String| PolicyError::Parse(format!("path {pattern:?}: path {pattern:?}: {m}"));
    let mut caps = Caps::NONE;
    for (key, val) in attrs {
        match (key, val) {
            ("capabilities", Attr::Strings(list)) => {
                for c in list {
                    caps = caps.union(
                        Caps::parse(c).ok_or_else(|| err(format!("invalid capability {c:?}")))?,
                    );
                }
            }
            ("capabilities", _) => {
                return Err(err("capabilities must be a list of strings".into()))
            }
            ("policy", Attr::Str(p)) => {
                caps = caps.union(legacy(p).ok_or_else(|| err(format!("invalid policy {p:?}")))?);
            }
            ("policy", _) => return Err(err("policy must be a string".into())),
            // Parameter constraints are not enforced by arca: refusing them is safer than
            // silently granting more than the author meant.
            (k, _) => {
                return Err(err(format!(
                    "unsupported key {k:?} (arca enforces capabilities only)"
                )))
            }
        }
    }
    Ok(PathRule {
        pattern: pattern.to_string(),
        caps,
    })
}

/// Parses a policy in Vault's HCL form or the equivalent JSON.
pub fn parse(name: &str, text: &str) -> Result<Policy, PolicyError> {
    let name = normalize_name(name)?;
    let trimmed = text.trim_start();
    let rules = if trimmed.starts_with('{') {
        parse_json(text)?
    } else {
        parse_hcl(text)?
    };
    for r in &rules {
        if r.pattern.is_empty() || r.pattern.starts_with('/') {
            return Err(PolicyError::Parse(format!(
                "path {:?}: paths are API paths without a leading '/'",
                r.pattern
            )));
        }
    }
    Ok(Policy {
        name,
        text: text.to_string(),
        rules,
    })
}

fn parse_hcl(text: &str) -> Result<Vec<PathRule>, PolicyError> {
    let body =
        hcl::parse(text).map_err(|e| PolicyError::Parse(e.to_string().replace('\n', " ")))?;
    let mut rules = Vec::new();
    for s in body.iter() {
        match s {
            hcl::Structure::Block(b) if b.identifier() == "path" => {
                let [label] = b.labels() else {
                    return Err(PolicyError::Parse(
                        "a path block takes exactly one label".into(),
                    ));
                };
                let pattern = label.as_str();
                let attrs = b.body().attributes().map(|a| {
                    let v = match a.expr() {
                        hcl::Expression::Array(items) => {
                            let strs: Option<Vec<&str>> = items
                                .iter()
                                .map(|e| match e {
                                    hcl::Expression::String(s) => Some(s.as_str()),
                                    _ => None,
                                })
                                .collect();
                            strs.map(Attr::Strings).unwrap_or(Attr::Other)
                        }
                        hcl::Expression::String(s) => Attr::Str(s.as_str()),
                        _ => Attr::Other,
                    };
                    (a.key(), v)
                });
                if b.body().blocks().next().is_some() {
                    return Err(PolicyError::Parse(format!(
                        "path {pattern:?}: nested blocks are not supported"
                    )));
                }
                rules.push(rule_from_attrs(pattern, attrs)?);
            }
            hcl::Structure::Block(b) => {
                return Err(PolicyError::Parse(format!(
                    "unknown block {:?}",
                    b.identifier()
                )));
            }
            hcl::Structure::Attribute(a) => {
                return Err(PolicyError::Parse(format!(
                    "unknown top-level key {:?}",
                    a.key()
                )));
            }
        }
    }
    Ok(rules)
}

fn parse_json(text: &str) -> Result<Vec<PathRule>, PolicyError> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| PolicyError::Parse(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| PolicyError::Parse("expected a JSON object".into()))?;
    let mut rules = Vec::new();
    for (k, paths) in obj {
        if k != "path" {
            return Err(PolicyError::Parse(format!("unknown top-level key {k:?}")));
        }
        let paths = paths
            .as_object()
            .ok_or_else(|| PolicyError::Parse("\"path\" must be an object".into()))?;
        for (pattern, body) in paths {
            let body = body
                .as_object()
                .ok_or_else(|| PolicyError::Parse(format!("path {pattern:?} must be an object")))?;
            let attrs = body.iter().map(|(k, v)| {
                let a = match v {
                    serde_json::Value::Array(items) => {
                        let strs: Option<Vec<&str>> = items.iter().map(|x| x.as_str()).collect();
                        strs.map(Attr::Strings).unwrap_or(Attr::Other)
                    }
                    serde_json::Value::String(s) => Attr::Str(s.as_str()),
                    _ => Attr::Other,
                };
                (k.as_str(), a)
            });
            rules.push(rule_from_attrs(pattern, attrs)?);
        }
    }
    Ok(rules)
}

/// A compiled pattern.
#[derive(Debug, Clone)]
struct Pattern {
    text: String,
    glob: bool,
    segs: Vec<String>,
    plus_count: usize,
    first_wildcard: usize,
}

impl Pattern {
    fn new(text: &str) -> Pattern {
        let glob = text.ends_with('*');
        let base = if glob { &text[..text.len() - 1] } else { text };
        let segs: Vec<String> = base.split('/').map(str::to_string).collect();
        let plus_count = segs.iter().filter(|s| *s == "+").count();
        // byte offset of the first wildcard: a '+' segment or the trailing '*'
        let mut first_wildcard = if glob { text.len() - 1 } else { usize::MAX };
        let mut off = 0;
        for s in &segs {
            if s == "+" {
                first_wildcard = first_wildcard.min(off);
                break;
            }
            off += s.len() + 1;
        }
        Pattern {
            text: text.to_string(),
            glob,
            segs,
            plus_count,
            first_wildcard,
        }
    }

    fn matches(&self, path: &str) -> bool {
        if self.plus_count == 0 {
            let base = &self.text[..self.text.len() - usize::from(self.glob)];
            return if self.glob {
                path.starts_with(base)
            } else {
                path == base
            };
        }
        let parts: Vec<&str> = path.split('/').collect();
        let n = self.segs.len();
        if parts.len() < n || (!self.glob && parts.len() != n) {
            return false;
        }
        for (seg, part) in self.segs[..n - 1].iter().zip(&parts) {
            if seg != "+" && seg != part {
                return false;
            }
        }
        let last = &self.segs[n - 1];
        if self.glob {
            let rest = parts[n - 1..].join("/");
            last == "+" || rest.starts_with(last.as_str())
        } else {
            last == "+" || last == parts[n - 1]
        }
    }

    /// Higher is better (rules 1-5 of §9).
    fn priority_cmp(&self, other: &Pattern) -> Ordering {
        self.first_wildcard
            .cmp(&other.first_wildcard)
            .then_with(|| other.glob.cmp(&self.glob))
            .then_with(|| other.plus_count.cmp(&self.plus_count))
            .then_with(|| self.text.len().cmp(&other.text.len()))
            .then_with(|| self.text.cmp(&other.text))
    }
}

/// The merged rules of a set of policies, ready to answer requests.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    root: bool,
    exact: HashMap<String, Caps>,
    /// Best first.
    globs: Vec<(Pattern, Caps)>,
}

/// The answer of `Acl::check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The pattern that decided (None: no pattern matched, or root).
    pub rule: Option<String>,
}

fn merge(into: &mut Caps, add: Caps) {
    *into = if into.contains(Caps::DENY) || add.contains(Caps::DENY) {
        Caps::DENY
    } else {
        into.union(add)
    };
}

impl Acl {
    /// Builds the ACL of a token with these policies (`root` grants everything).
    pub fn new<'a>(policies: impl IntoIterator<Item = &'a Policy>, root: bool) -> Acl {
        let mut exact: HashMap<String, Caps> = HashMap::new();
        let mut globs: HashMap<String, Caps> = HashMap::new();
        for p in policies {
            for r in &p.rules {
                let is_wild = r.pattern.ends_with('*') || r.pattern.split('/').any(|s| s == "+");
                let map = if is_wild { &mut globs } else { &mut exact };
                merge(map.entry(r.pattern.clone()).or_default(), r.caps);
            }
        }
        let mut globs: Vec<(Pattern, Caps)> = globs
            .into_iter()
            .map(|(t, c)| (Pattern::new(&t), c))
            .collect();
        globs.sort_by(|a, b| b.0.priority_cmp(&a.0));
        Acl { root, exact, globs }
    }

    pub fn is_root(&self) -> bool {
        self.root
    }

    /// The capabilities the winning pattern grants on `path`, and that pattern.
    pub fn capabilities(&self, path: &str) -> (Caps, Option<&str>) {
        if let Some((k, c)) = self.exact.get_key_value(path) {
            return (*c, Some(k.as_str()));
        }
        for (p, c) in &self.globs {
            if p.matches(path) {
                return (*c, Some(p.text.as_str()));
            }
        }
        (Caps::NONE, None)
    }

    /// May this token use `cap` (plus `sudo` when `sudo` is set) on `path`?
    pub fn check(&self, path: &str, cap: Caps, sudo: bool) -> Decision {
        if self.root {
            return Decision {
                allowed: true,
                rule: Some("root".into()),
            };
        }
        let (caps, rule) = self.capabilities(path);
        let need = if sudo { cap.union(Caps::SUDO) } else { cap };
        let allowed = !caps.contains(Caps::DENY) && !need.is_empty() && caps.contains(need);
        Decision {
            allowed,
            rule: rule.map(str::to_string),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(texts: &[&str]) -> Acl {
        let ps: Vec<Policy> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| parse(&format!("p{i}"), t).unwrap())
            .collect();
        Acl::new(ps.iter(), false)
    }

    fn rule(path: &str, caps: &str) -> String {
        format!("path \"{path}\" {{ capabilities = [{caps}] }}\n")
    }

    #[test]
    fn parse_hcl_json_and_legacy() {
        let p = parse("X", &rule("secret/data/*", "\"read\", \"list\"")).unwrap();
        assert_eq!(p.name, "x");
        assert_eq!(p.rules[0].caps, Caps::READ.union(Caps::LIST));
        let j = parse("j", r#"{"path":{"secret/*":{"capabilities":["read"]}}}"#).unwrap();
        assert_eq!(
            j.rules,
            vec![PathRule {
                pattern: "secret/*".into(),
                caps: Caps::READ
            }]
        );
        let l = parse("l", "path \"a\" { policy = \"write\" }").unwrap();
        assert!(l.rules[0].caps.contains(Caps::UPDATE));
        assert!(parse("c", "# only a comment\n").unwrap().rules.is_empty());
        assert!(parse("e", &rule("a", "")).unwrap().rules[0].caps.is_empty());
    }

    #[test]
    fn parse_errors_are_clear() {
        let e = parse("x", "path \"x\" { capabilities = [\"fly\"] }").unwrap_err();
        assert_eq!(
            e.to_string(),
            "failed to parse policy: path \"x\": path \"x\": invalid capability \"fly\""
        );
        assert!(parse("x", "path \"x\" { capabilities = [\"read\"")
            .unwrap_err()
            .to_string()
            .starts_with("failed to parse policy: "));
        assert!(parse(
            "x",
            "path \"x\" { capabilities = [\"read\"] allowed_parameters = {} }"
        )
        .is_err());
        assert!(parse("x", "foo \"x\" {}").is_err());
        assert!(parse("", "").is_err());
        assert!(parse("a/b", "").is_err());
    }

    #[test]
    fn matching_rules_of_the_contract() {
        // (policies, path, capability, allowed)
        let table: Vec<(Vec<String>, &str, Caps, bool)> = vec![
            // no union across patterns
            (
                vec![
                    rule("secret/data/*", "\"read\""),
                    rule("secret/data/db/*", "\"create\",\"update\""),
                ],
                "secret/data/db/prod",
                Caps::READ,
                false,
            ),
            (
                vec![
                    rule("secret/data/*", "\"read\""),
                    rule("secret/data/db/*", "\"create\",\"update\""),
                ],
                "secret/data/other",
                Caps::READ,
                true,
            ),
            // + beats * at the same first-wildcard position
            (
                vec![
                    rule("secret/data/db/+", "\"read\""),
                    rule("secret/data/db/*", "\"create\""),
                ],
                "secret/data/db/prod",
                Caps::READ,
                true,
            ),
            // later first wildcard wins
            (
                vec![
                    rule("secret/data/+/prod", "\"read\""),
                    rule("secret/data/db/*", "\"deny\""),
                ],
                "secret/data/db/prod",
                Caps::READ,
                false,
            ),
            // exact beats glob
            (
                vec![
                    rule("secret/data/db/prod", "\"create\""),
                    rule("secret/data/db/pro*", "\"read\""),
                ],
                "secret/data/db/prod",
                Caps::READ,
                false,
            ),
            // fewer + wins
            (
                vec![
                    rule("secret/data/+/abc", "\"read\""),
                    rule("secret/data/+/+", "\"deny\""),
                ],
                "secret/data/x/abc",
                Caps::READ,
                true,
            ),
            // longer wins
            (
                vec![
                    rule("secret/data/+/ab*", "\"read\""),
                    rule("secret/data/+/a*", "\"deny\""),
                ],
                "secret/data/x/abc",
                Caps::READ,
                true,
            ),
            // * is a prefix match not bound to segments
            (
                vec![rule("secret/data/d*", "\"read\"")],
                "secret/data/db/prod",
                Caps::READ,
                true,
            ),
            (
                vec![rule("secret/data/d*", "\"read\"")],
                "secret/data/dx",
                Caps::READ,
                true,
            ),
            // * elsewhere is literal; no wildcard is exact
            (
                vec![rule("secret/*/x", "\"read\"")],
                "secret/a/x",
                Caps::READ,
                false,
            ),
            (
                vec![rule("secret/data/db", "\"read\"")],
                "secret/data/db/prod",
                Caps::READ,
                false,
            ),
            // + is exactly one segment
            (
                vec![rule("secret/data/+/prod", "\"read\"")],
                "secret/data/db/sub/prod",
                Caps::READ,
                false,
            ),
            (
                vec![rule("secret/data/+/*", "\"read\"")],
                "secret/data/db/sub/prod",
                Caps::READ,
                true,
            ),
            // a less specific deny does not block a more specific grant
            (
                vec![
                    rule("secret/data/*", "\"deny\""),
                    rule("secret/data/db/*", "\"read\""),
                ],
                "secret/data/db/x",
                Caps::READ,
                true,
            ),
            // deny on the winning pattern overrides a grant of the same pattern in another policy
            (
                vec![
                    rule("secret/data/db/*", "\"read\""),
                    rule("secret/data/db/*", "\"deny\""),
                ],
                "secret/data/db/x",
                Caps::READ,
                false,
            ),
            // same pattern in two policies: union
            (
                vec![
                    rule("secret/data/db/*", "\"read\""),
                    rule("secret/data/db/*", "\"update\""),
                ],
                "secret/data/db/x",
                Caps::UPDATE,
                true,
            ),
            // LIST on a folder is checked with a trailing '/': a deny on x/private/* covers LIST x/private
            (
                vec![
                    rule("secret/metadata/x/*", "\"list\""),
                    rule("secret/metadata/x/private/*", "\"deny\""),
                ],
                "secret/metadata/x/private/",
                Caps::LIST,
                false,
            ),
            (
                vec![
                    rule("secret/metadata/x/*", "\"list\""),
                    rule("secret/metadata/x/private/*", "\"deny\""),
                ],
                "secret/metadata/x/",
                Caps::LIST,
                true,
            ),
            // patch is separate from update
            (
                vec![rule("secret/data/*", "\"update\"")],
                "secret/data/a",
                Caps::PATCH,
                false,
            ),
            // nothing matches: deny
            (
                vec![rule("secret/data/a", "\"read\"")],
                "sys/seal",
                Caps::UPDATE,
                false,
            ),
        ];
        for (i, (texts, path, cap, want)) in table.iter().enumerate() {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let d = acl(&refs).check(path, *cap, false);
            assert_eq!(
                d.allowed, *want,
                "case {i}: {texts:?} {path} {cap:?} -> {d:?}"
            );
        }
    }

    #[test]
    fn sudo_and_root() {
        let a = acl(&[&rule("sys/seal", "\"update\"")]);
        assert!(!a.check("sys/seal", Caps::UPDATE, true).allowed);
        let a = acl(&[&rule("sys/seal", "\"update\", \"sudo\"")]);
        assert!(a.check("sys/seal", Caps::UPDATE, true).allowed);
        let root = Acl::new([], true);
        assert!(root.check("anything/at/all", Caps::DELETE, true).allowed);
    }

    #[test]
    fn decision_names_the_rule_and_caps_names() {
        let a = acl(&[
            &rule("secret/data/*", "\"read\""),
            &rule("secret/data/db/*", "\"deny\""),
        ]);
        assert_eq!(
            a.check("secret/data/db/x", Caps::READ, false)
                .rule
                .as_deref(),
            Some("secret/data/db/*")
        );
        assert_eq!(a.capabilities("secret/data/x").0.names(), vec!["read"]);
        assert_eq!(a.capabilities("nope").0.names(), vec!["deny"]);
    }

    #[test]
    fn default_policy_parses() {
        let p = parse("default", DEFAULT_POLICY).unwrap();
        let a = Acl::new([&p], false);
        assert!(a.check("auth/token/lookup-self", Caps::READ, false).allowed);
        assert!(!a.check("secret/data/x", Caps::READ, false).allowed);
    }
}
