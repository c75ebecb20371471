//! Configuration: raw TOML file -> environment overrides -> validated `Config`.
//!
//! Every key can be overridden by an environment variable named `ARCA_` + the key in upper
//! case, with the table name as a prefix for nested keys: `listen` -> `ARCA_LISTEN`,
//! `[limits] max_body_bytes` -> `ARCA_LIMITS_MAX_BODY_BYTES`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::core::crypto::Algorithm;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: String,
    pub data_dir: PathBuf,
    pub tls_disable: bool,
    pub tls_cert_file: String,
    pub tls_key_file: String,
    /// PEM bundle of the CA(s) whose client certificates `auth/cert/login` accepts; empty =
    /// no client certificates are requested.
    pub tls_client_ca_file: String,
    pub encryption: String,
    pub cache_capacity_mb: u64,
    pub workers: usize,
    pub log_level: String,
    pub log_format: String,
    pub auto_unseal_key_file: String,
    /// Roles declared in a file (see config/roles.toml); empty = none.
    pub roles_file: String,
    pub limits: Limits,
    pub rotation: RotationConfig,
    pub audit: crate::audit_log::JournalConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_json_depth: usize,
    pub max_json_strings: usize,
    pub max_header_count: usize,
    pub max_header_bytes: usize,
    pub max_path_bytes: usize,
    pub head_timeout_ms: u64,
    pub body_timeout_ms: u64,
    pub shutdown_timeout_s: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1 << 20,
            max_json_depth: 32,
            max_json_strings: 10_000,
            max_header_count: 64,
            max_header_bytes: 16 * 1024,
            max_path_bytes: 1024,
            head_timeout_ms: 5_000,
            body_timeout_ms: 10_000,
            shutdown_timeout_s: 30,
        }
    }
}

/// `[rotation]`: secret rotation schedule and safety settings (see config/arca.toml).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RotationConfig {
    pub default_period: String,
    pub reconcile_cron: String,
    pub reconcile_interval: String,
    pub jitter_window: String,
    pub max_attempts: u32,
    pub backoff: String,
    pub backoff_max: String,
    pub test_login_attempts: u32,
    pub test_login_delay_ms: u64,
    pub lease_ttl: String,
    pub max_concurrent: usize,
    pub db_timeout: String,
    pub commands: std::collections::BTreeMap<String, RotationCommand>,
}

/// `[rotation.commands.NAME]`: an external rotation command (config file only).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationCommand {
    pub program: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default = "default_command_timeout")]
    pub timeout: String,
}

fn default_command_timeout() -> String {
    "30s".into()
}

impl Default for RotationConfig {
    fn default() -> Self {
        RotationConfig {
            default_period: "2160h".into(),
            reconcile_cron: "0 * * * * *".into(),
            reconcile_interval: String::new(),
            jitter_window: "1h".into(),
            max_attempts: 5,
            backoff: "30s".into(),
            backoff_max: "1h".into(),
            test_login_attempts: 5,
            test_login_delay_ms: 500,
            lease_ttl: "5m".into(),
            max_concurrent: 4,
            db_timeout: "10s".into(),
            commands: std::collections::BTreeMap::new(),
        }
    }
}

impl RotationConfig {
    /// The validated domain settings.
    pub fn settings(&self) -> Result<crate::core::rotation::Settings, ConfigError> {
        let dur = |key: &str, v: &str| {
            crate::core::duration::parse_seconds(v)
                .map_err(|e| ConfigError::Invalid(format!("rotation.{key}: {e}")))
        };
        let default_period_secs = dur("default_period", &self.default_period)?;
        if default_period_secs < crate::core::rotation::policy::MIN_PERIOD_SECS {
            return Err(ConfigError::Invalid(
                "rotation.default_period must be at least 60s".into(),
            ));
        }
        if !self.reconcile_interval.is_empty()
            && dur("reconcile_interval", &self.reconcile_interval)? == 0
        {
            return Err(ConfigError::Invalid(
                "rotation.reconcile_interval must be positive".into(),
            ));
        }
        if self.reconcile_interval.is_empty() && self.reconcile_cron.split_whitespace().count() < 6
        {
            return Err(ConfigError::Invalid(
                "rotation.reconcile_cron needs 6 fields (sec min hour day month weekday)".into(),
            ));
        }
        if self.max_attempts == 0 || self.max_concurrent == 0 {
            return Err(ConfigError::Invalid(
                "rotation.max_attempts and rotation.max_concurrent must be positive".into(),
            ));
        }
        let mut commands = std::collections::BTreeMap::new();
        for (name, c) in &self.commands {
            if c.program.is_empty() || !std::path::Path::new(&c.program).is_absolute() {
                return Err(ConfigError::Invalid(format!(
                    "rotation.commands.{name}.program must be an absolute path"
                )));
            }
            commands.insert(
                name.clone(),
                crate::core::rotation::CommandSpec {
                    program: c.program.clone(),
                    args: c.args.clone(),
                    timeout_secs: dur(&format!("commands.{name}.timeout"), &c.timeout)?,
                },
            );
        }
        Ok(crate::core::rotation::Settings {
            default_period_secs,
            jitter_secs: dur("jitter_window", &self.jitter_window)?,
            max_attempts: self.max_attempts,
            backoff_secs: dur("backoff", &self.backoff)?.max(1),
            backoff_max_secs: dur("backoff_max", &self.backoff_max)?,
            test_login_attempts: self.test_login_attempts.max(1),
            test_login_delay_ms: self.test_login_delay_ms,
            lease_ttl_secs: dur("lease_ttl", &self.lease_ttl)?.max(10),
            max_concurrent: self.max_concurrent,
            db_timeout_secs: dur("db_timeout", &self.db_timeout)?.max(1),
            commands,
            crash_at: None,
        })
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8200".into(),
            data_dir: PathBuf::from("/var/lib/arca"),
            tls_disable: false,
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            tls_client_ca_file: String::new(),
            encryption: "xchacha20-poly1305".into(),
            cache_capacity_mb: 64,
            workers: 0,
            log_level: "info".into(),
            log_format: "text".into(),
            auto_unseal_key_file: String::new(),
            roles_file: String::new(),
            limits: Limits::default(),
            rotation: RotationConfig::default(),
            audit: crate::audit_log::JournalConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads `path`, applies `ARCA_*` overrides from `env`, validates.
    pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        Self::from_table(table, env, path)
    }

    /// Dev mode: defaults with plain HTTP, plus `ARCA_*` overrides.
    pub fn dev(env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut t = toml::Table::new();
        t.insert("tls_disable".into(), toml::Value::Boolean(true));
        Self::from_table(t, env, Path::new("<dev defaults>"))
    }

    fn from_table(
        mut table: toml::Table,
        env: &dyn Fn(&str) -> Option<String>,
        path: &Path,
    ) -> Result<Config, ConfigError> {
        let defaults = toml::Table::try_from(Config::default())
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let mut used = Vec::new();
        apply_env(&mut table, &defaults, "ARCA_", env, &mut used)?;
        let cfg: Config = table.try_into().map_err(|e: toml::de::Error| {
            let mut message = e.to_string().trim().to_string();
            if !used.is_empty() {
                message.push_str(&format!(
                    " (environment overrides in effect: {})",
                    used.join(", ")
                ));
            }
            ConfigError::Parse {
                path: path.into(),
                message,
            }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.algorithm().is_none() {
            return Err(ConfigError::Invalid(format!(
                "encryption must be \"xchacha20-poly1305\" or \"aes-256-gcm\", not {:?}",
                self.encryption
            )));
        }
        if !self.tls_disable && (self.tls_cert_file.is_empty() || self.tls_key_file.is_empty()) {
            return Err(ConfigError::Invalid(
                "tls_cert_file and tls_key_file are required unless tls_disable = true".into(),
            ));
        }
        if self.tls_disable && !self.tls_client_ca_file.is_empty() {
            return Err(ConfigError::Invalid(
                "tls_client_ca_file needs TLS: remove it or set tls_disable = false".into(),
            ));
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid(
                "log_format must be \"text\" or \"json\"".into(),
            ));
        }
        if self.limits.max_body_bytes == 0 || self.limits.max_path_bytes == 0 {
            return Err(ConfigError::Invalid("limits must be positive".into()));
        }
        self.rotation.settings()?;
        Ok(())
    }

    pub fn algorithm(&self) -> Option<Algorithm> {
        Algorithm::parse(&self.encryption)
    }
}

/// For each key that the defaults know, an env var `PREFIX + KEY` replaces the file's value,
/// parsed as the default's type.
fn apply_env(
    table: &mut toml::Table,
    defaults: &toml::Table,
    prefix: &str,
    env: &dyn Fn(&str) -> Option<String>,
    used: &mut Vec<String>,
) -> Result<(), ConfigError> {
    for (key, def) in defaults {
        let var = format!("{prefix}{}", key.to_uppercase());
        if let toml::Value::Table(sub_defaults) = def {
            let sub = table
                .entry(key.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(sub) = sub {
                apply_env(sub, sub_defaults, &format!("{var}_"), env, used)?;
            }
            continue;
        }
        let Some(raw) = env(&var) else { continue };
        used.push(var.clone());
        let bad = |m: &str| ConfigError::Env {
            var: var.clone(),
            message: m.to_string(),
        };
        let v = match def {
            toml::Value::Boolean(_) => match raw.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => toml::Value::Boolean(true),
                "0" | "false" | "no" | "off" => toml::Value::Boolean(false),
                _ => return Err(bad("expected true or false")),
            },
            // Not a number: kept as text, for settings that also take a duration ("24h");
            // a plain integer setting then fails to parse, naming the key.
            toml::Value::Integer(_) => raw
                .parse()
                .map(toml::Value::Integer)
                .unwrap_or(toml::Value::String(raw)),
            _ => toml::Value::String(raw),
        };
        table.insert(key.clone(), v);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn shipped_config_parses() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/arca.toml");
        let cfg = Config::load(&p, &env_of(&[])).unwrap();
        assert!(!cfg.tls_disable);
        assert_eq!(cfg.algorithm(), Some(Algorithm::XChaCha20Poly1305));
        assert_eq!(cfg.roles_file, "");
        assert_eq!(cfg.tls_client_ca_file, "");
    }

    #[test]
    fn roles_file_and_client_ca() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.toml");
        std::fs::write(&p, "tls_cert_file = \"c\"\ntls_key_file = \"k\"\ntls_client_ca_file = \"ca.pem\"\nroles_file = \"r.toml\"\n").unwrap();
        let cfg =
            Config::load(&p, &env_of(&[("ARCA_ROLES_FILE", "/etc/arca/roles.toml")])).unwrap();
        assert_eq!(cfg.roles_file, "/etc/arca/roles.toml");
        assert_eq!(cfg.tls_client_ca_file, "ca.pem");
        let e = Config::load(&p, &env_of(&[("ARCA_TLS_DISABLE", "true")])).unwrap_err();
        assert!(e.to_string().contains("tls_client_ca_file"), "{e}");
    }

    #[test]
    fn env_overrides_every_kind_of_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.toml");
        std::fs::write(&p, "listen = \"0.0.0.0:1\"\ntls_disable = false\ntls_cert_file = \"c\"\ntls_key_file = \"k\"\n").unwrap();
        let cfg = Config::load(
            &p,
            &env_of(&[
                ("ARCA_LISTEN", "127.0.0.1:9"),
                ("ARCA_TLS_DISABLE", "true"),
                ("ARCA_LIMITS_MAX_BODY_BYTES", "77"),
                ("ARCA_ENCRYPTION", "aes-256-gcm"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:9");
        assert!(cfg.tls_disable);
        assert_eq!(cfg.limits.max_body_bytes, 77);
        assert_eq!(cfg.algorithm(), Some(Algorithm::Aes256Gcm));
    }

    #[test]
    fn bad_values_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.toml");
        std::fs::write(&p, "tls_disable = true\nnope = 1\n").unwrap();
        assert!(Config::load(&p, &env_of(&[]))
            .unwrap_err()
            .to_string()
            .contains("nope"));
        std::fs::write(&p, "tls_disable = true\n").unwrap();
        let e = Config::load(&p, &env_of(&[("ARCA_LIMITS_MAX_BODY_BYTES", "lots")])).unwrap_err();
        assert!(e.to_string().contains("ARCA_LIMITS_MAX_BODY_BYTES"));
        std::fs::write(&p, "tls_disable = false\n").unwrap();
        assert!(Config::load(&p, &env_of(&[]))
            .unwrap_err()
            .to_string()
            .contains("tls_cert_file"));
        std::fs::write(&p, "tls_disable = true\nencryption = \"rot13\"\n").unwrap();
        assert!(Config::load(&p, &env_of(&[])).is_err());
    }
}
