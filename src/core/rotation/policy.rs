//! The rotation policy of one secret, parsed once from its JSON form (HTTP body) and validated.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::generator::Generator;
use super::CommandSpec;
use crate::core::duration;

/// Shortest accepted period: rotating more often than every minute is a mistake.
pub const MIN_PERIOD_SECS: u64 = 60;
/// PostgreSQL truncates names at 63 bytes; MariaDB allows 80 characters.
pub const MAX_NAME_LEN: usize = 63;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The vault value alone.
    None,
    Postgres,
    Mysql,
    /// An external command declared in the config file, by name.
    Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    SingleUser,
    AlternatingUsers,
}

/// Where the credential lives. Never holds a secret: the admin credential is itself a KV secret
/// (`admin_secret`, a path in the same mount with `username` and `password`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Connection {
    pub host: String,
    pub port: u16,
    pub database: String,
    /// The user of a single-user rotation.
    pub username: String,
    /// The two users of an alternating-users rotation.
    pub users: Vec<String>,
    /// Path (in the same mount) of the secret holding the admin credential.
    pub admin_secret: String,
    /// MySQL/MariaDB account host part for `ALTER USER 'name'@'host'` (default `%`).
    pub user_host: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub period_secs: u64,
    pub generator: Generator,
    pub target: Target,
    /// Name of a `[rotation.commands.NAME]` entry when `target` is `command`.
    #[serde(default)]
    pub command: String,
    pub strategy: Strategy,
    #[serde(default)]
    pub connection: Connection,
}

fn conv(field: &str, why: impl std::fmt::Display) -> String {
    format!("error converting input for field \"{field}\": {why}")
}

fn get_str(m: &Map<String, Value>, field: &str, prefix: &str) -> Result<Option<String>, String> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(conv(&format!("{prefix}{field}"), "expected a string")),
    }
}

fn get_u64(m: &Map<String, Value>, field: &str, prefix: &str) -> Result<Option<u64>, String> {
    let name = format!("{prefix}{field}");
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| conv(&name, "expected an unsigned int")),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| conv(&name, format!("cannot parse '{s}' as int"))),
        Some(_) => Err(conv(&name, "expected an int")),
    }
}

fn get_bool(m: &Map<String, Value>, field: &str, prefix: &str) -> Result<Option<bool>, String> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) => match s.as_str() {
            "true" | "1" => Ok(Some(true)),
            "false" | "0" => Ok(Some(false)),
            _ => Err(conv(&format!("{prefix}{field}"), "expected a bool")),
        },
        Some(_) => Err(conv(&format!("{prefix}{field}"), "expected a bool")),
    }
}

fn check_keys(m: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<(), String> {
    for k in m.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(format!("unknown field {what}{k:?}"));
        }
    }
    Ok(())
}

/// A database role name: any characters (quoting makes them safe) except NUL and control
/// characters, 1 to 63 bytes.
pub fn validate_name(field: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!("{field} must be 1 to {MAX_NAME_LEN} bytes"));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(format!("{field} must not contain control characters"));
    }
    Ok(())
}

impl Policy {
    /// Parses the JSON body of `PUT secret/rotation/:path`. `commands` are the names the config
    /// file declares: a command can only be referred to, never defined, through the API.
    pub fn from_json(
        body: &Map<String, Value>,
        default_period_secs: u64,
        commands: &BTreeMap<String, CommandSpec>,
    ) -> Result<Policy, String> {
        check_keys(
            body,
            &[
                "period",
                "generator",
                "target",
                "command",
                "strategy",
                "connection",
            ],
            "",
        )?;
        let period_secs = match body.get("period") {
            None | Some(Value::Null) => default_period_secs,
            Some(Value::Number(n)) => n
                .as_u64()
                .ok_or_else(|| conv("period", "expected a non-negative duration"))?,
            Some(Value::String(s)) => duration::parse_seconds(s)?,
            Some(_) => return Err(conv("period", "expected a duration")),
        };
        if period_secs < MIN_PERIOD_SECS {
            return Err(format!("period must be at least {MIN_PERIOD_SECS}s"));
        }
        let generator = match body.get("generator") {
            None | Some(Value::Null) => Generator::default(),
            Some(Value::Object(g)) => parse_generator(g)?,
            Some(_) => return Err(conv("generator", "expected a map")),
        };
        generator.validate()?;
        let target = match get_str(body, "target", "")?.as_deref() {
            None | Some("none") | Some("") => Target::None,
            Some("postgres") | Some("postgresql") => Target::Postgres,
            Some("mysql") | Some("mariadb") => Target::Mysql,
            Some("command") => Target::Command,
            Some(other) => {
                return Err(format!(
                    "target must be none, postgres, mysql or command, not {other:?}"
                ))
            }
        };
        let strategy = match get_str(body, "strategy", "")?.as_deref() {
            None | Some("") | Some("single-user") => Strategy::SingleUser,
            Some("alternating-users") => Strategy::AlternatingUsers,
            Some(other) => {
                return Err(format!(
                    "strategy must be single-user or alternating-users, not {other:?}"
                ))
            }
        };
        let command = get_str(body, "command", "")?.unwrap_or_default();
        let mut connection = match body.get("connection") {
            None | Some(Value::Null) => Connection::default(),
            Some(Value::Object(c)) => parse_connection(c)?,
            Some(_) => return Err(conv("connection", "expected a map")),
        };
        match target {
            Target::None => {
                if strategy != Strategy::SingleUser {
                    return Err("target none supports only the single-user strategy".into());
                }
                if !command.is_empty() || connection != Connection::default() {
                    return Err("target none takes no command and no connection".into());
                }
            }
            Target::Command => {
                if command.is_empty() {
                    return Err("target command needs \"command\": the name of a [rotation.commands.NAME] entry of the config file".into());
                }
                if !commands.contains_key(&command) {
                    return Err(format!(
                        "no command {command:?} is declared in the config file ([rotation.commands.NAME])"
                    ));
                }
                if strategy != Strategy::SingleUser {
                    return Err("target command supports only the single-user strategy".into());
                }
                if !connection.username.is_empty() {
                    validate_name("connection.username", &connection.username)?;
                }
            }
            Target::Postgres | Target::Mysql => {
                if !command.is_empty() {
                    return Err("\"command\" is only for target command".into());
                }
                if connection.host.is_empty() {
                    return Err("connection.host is required for a database target".into());
                }
                if connection.port == 0 {
                    connection.port = if target == Target::Postgres {
                        5432
                    } else {
                        3306
                    };
                }
                if target == Target::Postgres && connection.database.is_empty() {
                    connection.database = "postgres".into();
                }
                if target == Target::Mysql && connection.user_host.is_empty() {
                    connection.user_host = "%".into();
                }
                match strategy {
                    Strategy::SingleUser => {
                        validate_name("connection.username", &connection.username)?;
                        if !connection.users.is_empty() {
                            return Err("connection.users is for alternating-users".into());
                        }
                    }
                    Strategy::AlternatingUsers => {
                        if connection.users.len() != 2 || connection.users[0] == connection.users[1]
                        {
                            return Err(
                                "alternating-users needs connection.users: two different users"
                                    .into(),
                            );
                        }
                        for u in &connection.users {
                            validate_name("connection.users", u)?;
                        }
                        if connection.admin_secret.is_empty() {
                            return Err("alternating-users needs connection.admin_secret (the path of the admin credential)".into());
                        }
                        if !connection.username.is_empty() {
                            return Err(
                                "connection.username is for single-user; use connection.users"
                                    .into(),
                            );
                        }
                    }
                }
                if !connection.admin_secret.is_empty() {
                    crate::core::kv::validate_key_path(&connection.admin_secret)
                        .map_err(|e| format!("connection.admin_secret: {e}"))?;
                }
            }
        }
        Ok(Policy {
            period_secs,
            generator,
            target,
            command,
            strategy,
            connection,
        })
    }

    /// The JSON form (`GET secret/rotation/:path`).
    pub fn to_json(&self) -> Value {
        json!({
            "period": crate::core::kv::go_duration(self.period_secs),
            "period_seconds": self.period_secs,
            "generator": self.generator,
            "target": self.target,
            "command": self.command,
            "strategy": self.strategy,
            "connection": self.connection,
        })
    }
}

fn parse_generator(g: &Map<String, Value>) -> Result<Generator, String> {
    check_keys(
        g,
        &[
            "type", "length", "lower", "upper", "digits", "symbols", "exclude", "encoding",
        ],
        "generator.",
    )?;
    let p = "generator.";
    match get_str(g, "type", p)?.as_deref() {
        None | Some("password") => {
            let Generator::Password {
                length,
                lower,
                upper,
                digits,
                symbols,
                exclude,
            } = Generator::default()
            else {
                return Err("internal: default generator".into());
            };
            if g.contains_key("encoding") {
                return Err("generator.encoding is for type bytes".into());
            }
            Ok(Generator::Password {
                length: get_u64(g, "length", p)?
                    .map(|v| v as usize)
                    .unwrap_or(length),
                lower: get_bool(g, "lower", p)?.unwrap_or(lower),
                upper: get_bool(g, "upper", p)?.unwrap_or(upper),
                digits: get_bool(g, "digits", p)?.unwrap_or(digits),
                symbols: get_bool(g, "symbols", p)?.unwrap_or(symbols),
                exclude: get_str(g, "exclude", p)?.unwrap_or(exclude),
            })
        }
        Some("bytes") => {
            for k in ["lower", "upper", "digits", "symbols", "exclude"] {
                if g.contains_key(k) {
                    return Err(format!("generator.{k} is for type password"));
                }
            }
            Ok(Generator::Bytes {
                length: get_u64(g, "length", p)?.map(|v| v as usize).unwrap_or(32),
                encoding: get_str(g, "encoding", p)?.unwrap_or_else(|| "hex".into()),
            })
        }
        Some(other) => Err(format!(
            "generator.type must be password or bytes, not {other:?}"
        )),
    }
}

fn parse_connection(c: &Map<String, Value>) -> Result<Connection, String> {
    check_keys(
        c,
        &[
            "host",
            "port",
            "database",
            "username",
            "users",
            "admin_secret",
            "user_host",
        ],
        "connection.",
    )?;
    let p = "connection.";
    let port = get_u64(c, "port", p)?.unwrap_or(0);
    if port > u16::MAX as u64 {
        return Err("connection.port must be at most 65535".into());
    }
    let users = match c.get("users") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(conv("connection.users", "expected a list of strings")),
            })
            .collect::<Result<_, _>>()?,
        Some(Value::String(s)) => s.split(',').map(|x| x.to_string()).collect(),
        Some(_) => return Err(conv("connection.users", "expected a list of strings")),
    };
    let host = get_str(c, "host", p)?.unwrap_or_default();
    if host.chars().any(|ch| ch.is_control() || ch.is_whitespace()) {
        return Err("connection.host must not contain spaces or control characters".into());
    }
    Ok(Connection {
        host,
        port: port as u16,
        database: get_str(c, "database", p)?.unwrap_or_default(),
        username: get_str(c, "username", p)?.unwrap_or_default(),
        users,
        admin_secret: get_str(c, "admin_secret", p)?.unwrap_or_default(),
        user_host: get_str(c, "user_host", p)?.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<Policy, String> {
        let mut cmds = BTreeMap::new();
        cmds.insert(
            "ldap".to_string(),
            CommandSpec {
                program: "/bin/true".into(),
                args: vec![],
                timeout_secs: 5,
            },
        );
        Policy::from_json(v.as_object().unwrap(), 7_776_000, &cmds)
    }

    #[test]
    fn defaults_and_errors() {
        let p = parse(json!({})).unwrap();
        assert_eq!(p.period_secs, 7_776_000);
        assert_eq!(p.target, Target::None);
        let p = parse(json!({"period":"720h","target":"postgres","connection":{"host":"h","username":"a\"; DROP ROLE x; --"}})).unwrap();
        assert_eq!(p.connection.port, 5432);
        assert_eq!(p.period_secs, 720 * 3600);
        for bad in [
            json!({"period":"1s"}),
            json!({"nope":1}),
            json!({"target":"oracle"}),
            json!({"target":"postgres","connection":{"username":"a"}}),
            json!({"target":"postgres","strategy":"alternating-users","connection":{"host":"h","users":["a","a"],"admin_secret":"x"}}),
            json!({"target":"postgres","strategy":"alternating-users","connection":{"host":"h","users":["a","b"]}}),
            json!({"target":"command","command":"rm -rf /"}),
            json!({"target":"command","command":"ldap","program":"/bin/sh"}),
            json!({"generator":{"type":"bytes","encoding":"rot13"}}),
            json!({"generator":{"length":4}}),
            json!({"target":"mysql","connection":{"host":"h","username":"a\u{0}b"}}),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
        assert!(parse(json!({"target":"command","command":"ldap"})).is_ok());
    }
}
