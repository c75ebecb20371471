//! Rotation benchmark (called by scripts/bench.sh): the reconciler's search for due secrets
//! among 100,000 secrets with rotation policies, and rotating 10,000 due vault-only secrets.
//! Prints one `name value unit` line per figure.
//!
//!     cargo run --release --example rotation_bench [-- TOTAL DUE]

use std::sync::Arc;
use std::time::Instant;

use arca::core::clock::{Clock, ManualClock};
use arca::core::crypto::{Algorithm, Key};
use arca::core::rotation::policy::Policy;
use arca::core::rotation::{Rotation, Settings};
use arca::core::Vault;
use arca::store::sled::SledStore;
use arca::store::Store;

fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let total = args.first().copied().unwrap_or(100_000);
    let due = args.get(1).copied().unwrap_or(10_000).min(total);
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("store"), 256 << 20)?);
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let vault = Arc::new(Vault::open(
        store,
        clock.clone(),
        Algorithm::XChaCha20Poly1305,
        Some(Key::generate()),
    )?);
    vault.init(1, 1, None)?;
    vault.auto_unseal()?;
    let settings = Settings {
        jitter_secs: 0,
        max_concurrent: 16,
        ..Settings::default()
    };
    let c: Arc<dyn Clock> = clock.clone();
    let engine = Arc::new(Rotation::new(vault, c, settings));
    let body = serde_json::json!({"period": "2160h"});
    let policy = Policy::from_json(
        body.as_object().expect("object"),
        90 * 86_400,
        &Default::default(),
    )
    .map_err(anyhow::Error::msg)?;
    // `due` secrets get their policy one day before the others, so after 90.5 days exactly
    // they are due.
    let mk = |r: std::ops::Range<usize>| -> Vec<(String, Policy)> {
        r.map(|i| (format!("bench/s{i:06}"), policy.clone()))
            .collect()
    };
    let t = Instant::now();
    engine.set_policies_bulk("secret", mk(0..due))?;
    clock.advance(chrono::Duration::days(1));
    engine.set_policies_bulk("secret", mk(due..total))?;
    eprintln!(
        "setup: {total} policies in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    clock.advance(chrono::Duration::hours(89 * 24 + 12));

    let t = Instant::now();
    let found = engine.due_entries(engine.now())?;
    let find_ms = t.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(
        found.len() == due,
        "found {} due, expected {due}",
        found.len()
    );
    println!(
        "rotation_find_due_ms {find_ms:.2} ms ({} due of {total})",
        found.len()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let t = Instant::now();
    let report = rt.block_on(engine.reconcile())?;
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(report.rotated == due, "rotated {} of {due}", report.rotated);
    println!(
        "rotation_vault_only_per_sec {:.0} rotations/s ({} in {secs:.2}s)",
        report.rotated as f64 / secs,
        report.rotated
    );
    let t = Instant::now();
    let again = engine.due_entries(engine.now())?;
    println!(
        "rotation_find_due_after_ms {:.2} ms ({} due)",
        t.elapsed().as_secs_f64() * 1e3,
        again.len()
    );
    Ok(())
}
