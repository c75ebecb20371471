//! `[audit]` section of the server configuration.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where durable lines are copied, asynchronously and lossily (never blocks an append).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MirrorKind {
    #[default]
    None,
    /// One JSON line per record on the server's standard output.
    Stdout,
    /// RFC 3164 datagrams to `/dev/log` (facility authpriv, severity info).
    Syslog,
}

/// Settings of the journal. Durations are strings such as `"30s"`, `"24h"`, `"90d"` (or whole
/// seconds); sizes are bytes. `0` means "no limit" for the retention settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct JournalConfig {
    /// Directory of the segment files; `None`: `<data_dir>/audit`.
    #[serde(deserialize_with = "de_dir", serialize_with = "ser_dir")]
    pub dir: Option<PathBuf>,
    /// Start a new segment once the current one reaches this size.
    pub segment_max_bytes: u64,
    /// Start a new segment once the current one is this old.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub segment_max_age: Duration,
    /// Delete closed segments whose last write is older than this (0: keep).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub retain_max_age: Duration,
    /// Delete the oldest closed segments while all segments together exceed this (0: keep).
    pub retain_max_bytes: u64,
    /// Write a signed checkpoint after this many records.
    pub checkpoint_every: u64,
    /// ...or after this long, if records were written since the last one.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub checkpoint_interval: Duration,
    /// An append not durable within this time fails with `Unavailable` (hung disk).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub write_deadline: Duration,
    /// Appends waiting beyond this number are refused at once with `Unavailable`.
    pub max_pending: usize,
    /// Asynchronous copy of every durable line.
    pub mirror: MirrorKind,
    /// Open even when the journal ends before the head stored in the database (it was
    /// truncated), or when its last segment is damaged; the damage is marked and skipped.
    pub accept_truncation: bool,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            dir: None,
            segment_max_bytes: 128 << 20,
            segment_max_age: Duration::from_secs(24 * 3600),
            retain_max_age: Duration::from_secs(400 * 24 * 3600),
            retain_max_bytes: 0,
            checkpoint_every: 10_000,
            checkpoint_interval: Duration::from_secs(10),
            write_deadline: Duration::from_secs(5),
            max_pending: 65_536,
            mirror: MirrorKind::None,
            accept_truncation: false,
        }
    }
}

impl JournalConfig {
    /// Checks the values that would make the journal misbehave.
    pub fn validate(&self) -> Result<(), super::AuditError> {
        let bad = |m: &str| Err(super::AuditError::Invalid(format!("[audit] {m}")));
        if self.segment_max_bytes < 4096 {
            return bad("segment_max_bytes must be at least 4096");
        }
        if self.checkpoint_every == 0 {
            return bad("checkpoint_every must be at least 1");
        }
        if self.write_deadline.is_zero() {
            return bad("write_deadline must be positive");
        }
        if self.checkpoint_interval.is_zero() || self.segment_max_age.is_zero() {
            return bad("checkpoint_interval and segment_max_age must be positive");
        }
        if self.max_pending == 0 {
            return bad("max_pending must be at least 1");
        }
        Ok(())
    }
}

/// `""` (the default, so `ARCA_AUDIT_DIR` can override it) means `<data_dir>/audit`.
fn de_dir<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    Ok(s.filter(|s| !s.is_empty()).map(PathBuf::from))
}

fn ser_dir<S: Serializer>(dir: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(
        &dir.as_ref()
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_default(),
    )
}

fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) if t.trim() == "0" => Ok(Duration::ZERO),
        Raw::Text(t) => humantime::parse_duration(t.trim())
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {t:?}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_snippet() {
        let cfg: JournalConfig = toml::from_str(
            r#"
            dir = "/var/lib/arca/audit"
            segment_max_bytes = 134217728
            segment_max_age = "24h"
            retain_max_age = "400d"
            retain_max_bytes = 0
            checkpoint_every = 10000
            checkpoint_interval = "10s"
            write_deadline = "5s"
            mirror = "syslog"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.segment_max_age, Duration::from_secs(86400));
        assert_eq!(cfg.retain_max_age, Duration::from_secs(400 * 86400));
        assert_eq!(cfg.mirror, MirrorKind::Syslog);
        cfg.validate().unwrap();
        let d: JournalConfig = toml::from_str("write_deadline = 2").unwrap();
        assert_eq!(d.write_deadline, Duration::from_secs(2));
        assert!(toml::from_str::<JournalConfig>("bogus = 1").is_err());
        assert_eq!(
            toml::from_str::<JournalConfig>("").unwrap(),
            JournalConfig::default()
        );
    }
}
