//! Audit journal benchmarks (called by scripts/bench.sh).
//!
//! `journal_bench [TASKS=32] [THREADS=2]`: appends from many concurrent tasks (as HTTP workers
//! do) for 3 s and prints records/s, so the journal's group commit can be measured alone:
//! `cargo run --release --example journal_bench`.
//!
//! `journal_bench fill DIR N [TASKS=1024] [THREADS=2]`: writes N records shaped like the
//! server's read records (actor, path, outcome, policy, version, HMAC'd request headers) into a
//! journal in DIR as fast as it can (TASKS concurrent appenders, so each group commit carries
//! a large batch), closes it, and prints one line with the rate, the size and the checkpoint
//! verification key (`public_key_hex=...`, for `arca audit verify --public-key`).
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arca::audit_log::{redact, Journal, JournalConfig};
use arca::store::sled::SledStore;
use arca::store::Store;
use serde_json::{json, Map, Value};

fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> T {
    args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default)
}

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("fill") {
        let dir = std::path::PathBuf::from(args.get(1).expect("usage: journal_bench fill DIR N"));
        let n: u64 = arg(&args, 2, 1_000_000);
        fill(&dir, n, arg(&args, 3, 1024), arg(&args, 4, 2));
    } else {
        concurrent(arg(&args, 0, 32), arg(&args, 1, 2));
    }
}

/// Appends for 3 s from `tasks` tasks.
fn concurrent(tasks: usize, threads: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("s"), 8 << 20).unwrap());
    let j = Journal::open(
        &dir.path().join("a"),
        JournalConfig::default(),
        ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
        store,
    )
    .unwrap();
    let rt = runtime(threads);
    let t0 = Instant::now();
    let n: u64 = rt.block_on(async {
        let mut hs = Vec::new();
        for _ in 0..tasks {
            let j = j.clone();
            hs.push(tokio::spawn(async move {
                let mut n = 0u64;
                while t0.elapsed() < Duration::from_secs(3) {
                    let mut m = serde_json::Map::new();
                    m.insert("type".into(), "response".into());
                    m.insert("path".into(), "secret/data/db/prod".into());
                    j.append(m).await.unwrap();
                    n += 1;
                }
                n
            }));
        }
        let mut t = 0;
        for h in hs {
            t += h.await.unwrap();
        }
        t
    });
    let s = j.stats();
    println!(
        "tasks={tasks} threads={threads} records_per_sec={:.0} stats={s:?}",
        n as f64 / t0.elapsed().as_secs_f64()
    );
}

/// A read record as the server writes it (`src/http/audit.rs`: the `outcome` record of a KV
/// read, which carries the request since a read has no intent record): header values
/// HMAC'd under `key`, body and query null, the deciding policy pattern, the version read.
fn read_record(i: u64, key: &[u8; 32], actors: &[Value]) -> Map<String, Value> {
    let headers = json!({
        "accept": "*/*",
        "host": "arca.internal:8200",
        "user-agent": format!("hvac/2.3.0 pipeline-{}", i % 50),
        "x-vault-token": format!("arca.{:064x}", i % 20),
    });
    let mut m = Map::new();
    m.insert("type".into(), json!("response"));
    m.insert(
        "time".into(),
        json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)),
    );
    m.insert("request_id".into(), json!(uuid::Uuid::new_v4().to_string()));
    m.insert(
        "actor".into(),
        actors[(i % actors.len() as u64) as usize].clone(),
    );
    m.insert("operation".into(), json!("read"));
    m.insert("method".into(), json!("GET"));
    m.insert(
        "path".into(),
        json!(format!("secret/data/app/{}", i % 1000)),
    );
    m.insert(
        "remote_addr".into(),
        json!(format!("10.0.{}.{}", i % 7, 10 + i % 200)),
    );
    m.insert("outcome".into(), json!("allowed"));
    m.insert("status".into(), json!(200));
    m.insert("policy".into(), json!("secret/data/app/*"));
    m.insert("version".into(), json!(1 + i % 5));
    m.insert("duration_ms".into(), json!(0.25 + (i % 97) as f64 / 100.0));
    m.insert(
        "request".into(),
        json!({"body": null, "headers": redact(&headers, key), "query": null}),
    );
    m
}

/// Writes `n` read records into a journal in `dir` from `tasks` tasks, then closes it.
fn fill(dir: &std::path::Path, n: u64, tasks: usize, threads: usize) {
    let head = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&head.path().join("s"), 8 << 20).unwrap());
    let signing = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let public_key_hex = hex::encode(signing.verifying_key().as_bytes());
    let j = Journal::open(dir, JournalConfig::default(), signing, store).unwrap();
    let hmac_key = [42u8; 32];
    let actors: Arc<Vec<Value>> = Arc::new(
        (0..20)
            .map(|k| {
                json!({
                    "accessor": format!("acc{:021x}", 0xacce55_u64 * (k + 1)),
                    "display_name": format!("approle-pipeline-{k}"),
                    "policies": ["default", "ml-pipeline"],
                    "role": format!("pipeline-{k}"),
                    "auth_method": "approle",
                })
            })
            .collect(),
    );
    let next = Arc::new(AtomicU64::new(0));
    let rt = runtime(threads);
    let t0 = Instant::now();
    rt.block_on(async {
        let mut hs = Vec::with_capacity(tasks);
        for _ in 0..tasks {
            let (j, next, actors) = (j.clone(), next.clone(), actors.clone());
            hs.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    j.append(read_record(i, &hmac_key, &actors)).await.unwrap();
                }
            }));
        }
        for h in hs {
            h.await.unwrap();
        }
    });
    let stats = j.stats();
    j.close();
    let secs = t0.elapsed().as_secs_f64();
    let segs = arca::audit_log::list_segments(dir).unwrap();
    let bytes: u64 = segs
        .iter()
        .map(|(_, p)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    println!(
        "journal_fill records={n} secs={secs:.1} records_per_sec={:.0} bytes={bytes} \
         bytes_per_record={:.0} mb_per_sec={:.1} segments={} batches={} fsyncs={} \
         public_key_hex={public_key_hex}",
        n as f64 / secs,
        bytes as f64 / n.max(1) as f64,
        bytes as f64 / 1e6 / secs,
        segs.len(),
        stats.batches,
        stats.fsyncs,
    );
}
