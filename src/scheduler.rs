//! The rotation scheduler: tokio-cron-scheduler wakes the reconciler (every minute by
//! default); the reconciler also runs once at start. This is the only module that imports
//! cron. Due dates live in the store (`core::rotation`), so cron only decides *when to look*,
//! never *what is due*: missed wake-ups and restarts neither skip nor double a rotation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::config::RotationConfig;
use crate::core::clock::Clock;
use crate::core::rotation::Rotation;
use crate::core::Vault;

/// TEST ONLY: abort the server right after this rotation step is durable (`pending`, `set`,
/// `tested`, `promoted`), to test crash recovery at every step boundary.
pub const ENV_TEST_CRASH_AT: &str = "ARCA_TEST_CRASH_AT";
/// TEST ONLY: shift the rotation engine's clock by this many seconds, to test 90-day
/// schedules across restarts without waiting.
pub const ENV_TEST_CLOCK_OFFSET: &str = "ARCA_TEST_CLOCK_OFFSET_SECS";

/// A clock shifted by a fixed offset (test-only, see `ENV_TEST_CLOCK_OFFSET`).
struct OffsetClock {
    inner: Arc<dyn Clock>,
    offset: chrono::Duration,
}

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        self.inner.now() + self.offset
    }
}

/// Builds the rotation engine of `vault`, makes it the engine of the HTTP endpoints, and
/// starts the reconciler on its own runtime thread (once at start, then on every wake-up).
pub fn start(vault: Arc<Vault>, cfg: &RotationConfig) -> anyhow::Result<Arc<Rotation>> {
    let mut settings = cfg.settings()?;
    settings.crash_at = std::env::var(ENV_TEST_CRASH_AT)
        .ok()
        .filter(|s| !s.is_empty());
    let mut clock: Arc<dyn Clock> = vault.clock.clone();
    if let Ok(v) = std::env::var(ENV_TEST_CLOCK_OFFSET) {
        let secs: i64 = v
            .trim()
            .parse()
            .with_context(|| format!("{ENV_TEST_CLOCK_OFFSET} must be an integer"))?;
        tracing::warn!(secs, "rotation clock offset in effect (test only)");
        clock = Arc::new(OffsetClock {
            inner: clock,
            offset: chrono::Duration::seconds(secs),
        });
    }
    if settings.crash_at.is_some() {
        tracing::warn!(
            "{ENV_TEST_CRASH_AT} is set: the server aborts at that rotation step (test only)"
        );
    }
    let engine = Arc::new(Rotation::new(vault, clock, settings));
    crate::http::rotation::install(engine.clone());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("arca-rotation")
        .enable_all()
        .build()
        .context("rotation runtime")?;
    engine.set_runtime(rt.handle().clone());
    let interval = if cfg.reconcile_interval.is_empty() {
        None
    } else {
        Some(Duration::from_secs(
            crate::core::duration::parse_seconds(&cfg.reconcile_interval)
                .map_err(anyhow::Error::msg)?,
        ))
    };
    let cron = cfg.reconcile_cron.clone();
    let e = engine.clone();
    std::thread::Builder::new()
        .name("arca-rotation".into())
        .spawn(move || {
            rt.block_on(async move {
                if let Err(err) = run(e, interval, cron).await {
                    tracing::error!(error = %err, "rotation scheduler stopped");
                }
            })
        })
        .context("starting the rotation thread")?;
    Ok(engine)
}

async fn run(
    engine: Arc<Rotation>,
    interval: Option<Duration>,
    cron: String,
) -> anyhow::Result<()> {
    let running = Arc::new(AtomicBool::new(false));
    pass(&engine, &running).await;
    let sched = JobScheduler::new().await.context("cron scheduler")?;
    let job = match interval {
        Some(i) => Job::new_repeated_async(i, waker(&engine, &running)),
        None => Job::new_async(cron.as_str(), waker(&engine, &running)),
    }
    .context("rotation reconcile schedule")?;
    sched.add(job).await.context("adding the reconcile job")?;
    sched.start().await.context("starting the cron scheduler")?;
    tracing::info!(interval = ?interval, cron = %cron, "rotation reconciler scheduled");
    std::future::pending::<()>().await;
    Ok(())
}

type Wake = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

fn waker(
    engine: &Arc<Rotation>,
    running: &Arc<AtomicBool>,
) -> impl FnMut(uuid::Uuid, JobScheduler) -> Wake + Send + Sync + 'static {
    let (e, r) = (engine.clone(), running.clone());
    move |_id, _sched| {
        let (e, r) = (e.clone(), r.clone());
        Box::pin(async move { pass(&e, &r).await })
    }
}

/// One reconciler pass; skipped when the previous one is still running.
async fn pass(engine: &Arc<Rotation>, running: &AtomicBool) {
    if running.swap(true, Ordering::AcqRel) {
        return;
    }
    if let Err(e) = engine.reconcile().await {
        tracing::warn!(error = %e, "rotation reconciler pass failed");
    }
    running.store(false, Ordering::Release);
}
