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
    pub encryption: String,
    pub cache_capacity_mb: u64,
    pub workers: usize,
    pub log_level: String,
    pub log_format: String,
    pub auto_unseal_key_file: String,
    pub limits: Limits,
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

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8200".into(),
            data_dir: PathBuf::from("/var/lib/arca"),
            tls_disable: false,
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            encryption: "xchacha20-poly1305".into(),
            cache_capacity_mb: 64,
            workers: 0,
            log_level: "info".into(),
            log_format: "text".into(),
            auto_unseal_key_file: String::new(),
            limits: Limits::default(),
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
        apply_env(&mut table, &defaults, "ARCA_", env)?;
        let cfg: Config = table
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: path.into(),
                message: e.to_string(),
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
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid(
                "log_format must be \"text\" or \"json\"".into(),
            ));
        }
        if self.limits.max_body_bytes == 0 || self.limits.max_path_bytes == 0 {
            return Err(ConfigError::Invalid("limits must be positive".into()));
        }
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
) -> Result<(), ConfigError> {
    for (key, def) in defaults {
        let var = format!("{prefix}{}", key.to_uppercase());
        if let toml::Value::Table(sub_defaults) = def {
            let sub = table
                .entry(key.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(sub) = sub {
                apply_env(sub, sub_defaults, &format!("{var}_"), env)?;
            }
            continue;
        }
        let Some(raw) = env(&var) else { continue };
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
            toml::Value::Integer(_) => {
                toml::Value::Integer(raw.parse().map_err(|_| bad("expected an integer"))?)
            }
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
