//! Appends from many concurrent tasks (as HTTP workers do) and prints records/s, so the
//! journal's group commit can be measured alone: `cargo run --release --example journal_bench`.
use std::sync::Arc;
use std::time::{Duration, Instant};

use arca::audit_log::{Journal, JournalConfig};
use arca::store::sled::SledStore;
use arca::store::Store;

fn main() {
    let tasks: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(32);
    let threads: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(2);
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("s"), 8 << 20).unwrap());
    let j = Journal::open(&dir.path().join("a"), JournalConfig::default(), ed25519_dalek::SigningKey::from_bytes(&[7; 32]), store).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build().unwrap();
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
    println!("tasks={tasks} threads={threads} records_per_sec={:.0} stats={s:?}", n as f64 / t0.elapsed().as_secs_f64());
}
