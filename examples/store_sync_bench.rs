//! Concurrent put + sync on the sled store (the durability step of every write), to see what
//! one grouped flush costs: `cargo run --release --example store_sync_bench [threads]`.
use std::sync::Arc;
use std::time::{Duration, Instant};

use arca::store::sled::SledStore;
use arca::store::Store;

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(32);
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(SledStore::open(dir.path(), 64 << 20).unwrap());
    let t0 = Instant::now();
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                let mut lat = Vec::new();
                while t0.elapsed() < Duration::from_secs(3) {
                    let a = Instant::now();
                    s.put(format!("k/{t}/{n}").as_bytes(), &[7u8; 200]).unwrap();
                    s.sync().unwrap();
                    lat.push(a.elapsed().as_micros() as u64);
                    n += 1;
                }
                (n, lat)
            })
        })
        .collect();
    let mut total = 0;
    let mut all = Vec::new();
    for h in hs {
        let (n, l) = h.join().unwrap();
        total += n;
        all.extend(l);
    }
    all.sort_unstable();
    println!(
        "threads={threads} syncs_per_sec={:.0} p50_us={} p99_us={}",
        total as f64 / 3.0,
        all[all.len() / 2],
        all[all.len() * 99 / 100]
    );
}
