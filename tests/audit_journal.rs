//! Integration tests of the audit journal library: real files in temporary directories.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arca::audit_log::fs::FaultyFs;
use arca::audit_log::{
    export, hmac_value, redact, segment_paths, verify, AuditError, ExportFilter, ExportFormat,
    Journal, JournalConfig, TamperKind, VerifyReport,
};
use arca::store::sled::SledStore;
use arca::store::Store;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

const SEED: [u8; 32] = [42u8; 32];

fn key() -> SigningKey {
    SigningKey::from_bytes(&SEED)
}

fn vk() -> VerifyingKey {
    key().verifying_key()
}

struct Env {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    store: Arc<SledStore>,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let store = Arc::new(SledStore::open(&tmp.path().join("store"), 8 << 20).unwrap());
    Env {
        _tmp: tmp,
        dir,
        store,
    }
}

fn cfg() -> JournalConfig {
    JournalConfig {
        checkpoint_every: 20,
        ..JournalConfig::default()
    }
}

impl Env {
    fn open(&self, cfg: JournalConfig) -> Result<Journal, AuditError> {
        Journal::open(&self.dir, cfg, key(), self.store.clone())
    }
    fn open_faulty(&self, cfg: JournalConfig, fs: &FaultyFs) -> Journal {
        Journal::open_with_fs(
            &self.dir,
            cfg,
            key(),
            self.store.clone(),
            Arc::new(fs.clone()),
        )
        .unwrap()
    }
    fn paths(&self) -> Vec<PathBuf> {
        segment_paths(std::slice::from_ref(&self.dir)).unwrap()
    }
    fn verify(&self) -> VerifyReport {
        verify(&self.paths(), Some(&vk()), self.head())
    }
    fn head(&self) -> Option<(u64, String)> {
        self.store.get(b"audit/head").unwrap().map(|raw| {
            let v: Value = serde_json::from_slice(&raw).unwrap();
            (
                v["seq"].as_u64().unwrap(),
                v["hash"].as_str().unwrap().to_string(),
            )
        })
    }
}

fn rec(i: u64) -> Map<String, Value> {
    let v = json!({
        "type": "response",
        "request_id": format!("req-{i}"),
        "actor": {"accessor": format!("acc-{}", i % 3), "display_name": format!("user{}", i % 3),
                  "policies": ["default"], "auth_method": "token"},
        "operation": if i % 2 == 0 { "read" } else { "update" },
        "path": format!("secret/data/app/{}", i % 5),
        "remote_addr": "10.0.0.1",
        "outcome": if i % 7 == 0 { "denied" } else { "allowed" },
        "status": if i % 7 == 0 { 403 } else { 200 },
        "policy": "default",
        "version": i,
        "duration_ms": 1,
    });
    v.as_object().unwrap().clone()
}

/// A closed journal of `n` caller records.
fn journal_of(e: &Env, n: u64) {
    let j = e.open(cfg()).unwrap();
    for i in 0..n {
        j.append_blocking(rec(i)).unwrap();
    }
    j.close();
}

fn lines(p: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(p).unwrap();
    let mut v: Vec<Vec<u8>> = data.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
    if v.last().is_some_and(Vec::is_empty) {
        v.pop();
    }
    v
}

fn write_lines(p: &Path, lines: &[Vec<u8>]) {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    std::fs::write(p, out).unwrap();
}

fn parse(l: &[u8]) -> Map<String, Value> {
    serde_json::from_slice::<Value>(l)
        .unwrap()
        .as_object()
        .unwrap()
        .clone()
}

fn kind_of(l: &[u8]) -> String {
    parse(l)
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// Index (0-based) of the first caller record at or after `from`.
fn caller_line(ls: &[Vec<u8>], from: usize) -> usize {
    (from..ls.len())
        .find(|&i| kind_of(&ls[i]) == "response")
        .unwrap()
}

fn expect_bad(r: &VerifyReport, kind: TamperKind, line: u64) {
    assert!(!r.ok, "tampering not detected: {}", r.render());
    let e = r.first_error.as_ref().unwrap();
    assert_eq!(e.kind, kind, "{}", r.render());
    assert_eq!(e.line, line, "{}", r.render());
}

/// Recomputes `prev` of every line from `from` on, as an attacker without the key would.
fn rechain(ls: &mut [Vec<u8>], from: usize, fix_checkpoints: bool) {
    for i in from.max(1)..ls.len() {
        let prev = hex::encode(Sha256::digest(&ls[i - 1]));
        let mut m = parse(&ls[i]);
        if fix_checkpoints && m.get("type") == Some(&json!("checkpoint")) {
            m.insert("head".into(), json!(prev));
        }
        m.insert("prev".into(), json!(prev));
        ls[i] = serde_json::to_vec(&m).unwrap();
    }
}

#[test]
fn intact_journal_verifies() {
    let e = env();
    journal_of(&e, 100);
    let r = e.verify();
    assert!(r.ok, "{}", r.render());
    // 100 records + segment_start + checkpoints (open, every 20, close).
    assert!(r.records > 100);
    assert!(r.checkpoints >= 5);
    assert_eq!(r.unsigned_tail, 0);
    assert!(r.signatures_checked);
    assert_eq!(r.first_seq, Some(1));
    // Without a key: chain checked, signatures not.
    let r = verify(&e.paths(), None, None);
    assert!(r.ok && !r.signatures_checked);
    // Reopen continues the chain.
    journal_of(&e, 10);
    let r = e.verify();
    assert!(r.ok, "{}", r.render());
}

#[test]
fn edited_field_is_named() {
    let e = env();
    journal_of(&e, 50);
    let p = &e.paths()[0];
    let mut ls = lines(p);
    let i = caller_line(&ls, 10);
    let text = String::from_utf8(ls[i].clone()).unwrap();
    ls[i] = text
        .replace("\"outcome\":\"allowed\"", "\"outcome\":\"denied\"")
        .into_bytes();
    assert_ne!(ls[i], text.as_bytes());
    write_lines(p, &ls);
    expect_bad(&e.verify(), TamperKind::Modified, i as u64 + 1);
}

#[test]
fn deleted_record_is_named() {
    let e = env();
    journal_of(&e, 50);
    let p = &e.paths()[0];
    let mut ls = lines(p);
    let i = caller_line(&ls, 10);
    ls.remove(i);
    write_lines(p, &ls);
    expect_bad(&e.verify(), TamperKind::OutOfSequence, i as u64 + 1);
}

#[test]
fn inserted_records_are_named() {
    // A garbage line.
    let e = env();
    journal_of(&e, 50);
    let p = &e.paths()[0];
    let mut ls = lines(p);
    let i = caller_line(&ls, 10);
    ls.insert(i, b"{\"forged\":true}".to_vec());
    write_lines(p, &ls);
    expect_bad(&e.verify(), TamperKind::Malformed, i as u64 + 1);

    // A well-formed record with the right seq and prev.
    let e = env();
    journal_of(&e, 50);
    let p = &e.paths()[0];
    let mut ls = lines(p);
    let i = caller_line(&ls, 10);
    let mut forged = parse(&ls[i]);
    forged.insert("path".into(), json!("secret/data/forged"));
    ls.insert(i, serde_json::to_vec(&forged).unwrap());
    write_lines(p, &ls);
    let r = e.verify();
    expect_bad(&r, TamperKind::Inserted, i as u64 + 1);
    assert!(r
        .first_error
        .unwrap()
        .message
        .contains(&format!("line {}", i + 2)));
}

#[test]
fn reordered_and_duplicated_records_are_named() {
    let e = env();
    journal_of(&e, 50);
    let p = &e.paths()[0];
    let mut ls = lines(p);
    let i = caller_line(&ls, 10);
    ls.swap(i, i + 1);
    write_lines(p, &ls);
    expect_bad(&e.verify(), TamperKind::OutOfSequence, i as u64 + 1);

    let e = env();
    journal_of(&e, 50);
    let p = &e.paths()[0];
    let mut ls = lines(p);
    let i = caller_line(&ls, 10);
    let dup = ls[i].clone();
    ls.insert(i + 1, dup);
    write_lines(p, &ls);
    expect_bad(&e.verify(), TamperKind::Duplicate, i as u64 + 2);
}

#[test]
fn truncated_tail_is_detected_against_the_head() {
    let e = env();
    journal_of(&e, 50);
    let p = &e.paths()[0];
    let mut ls = lines(p);
    let n = ls.len();
    ls.truncate(n - 3);
    write_lines(p, &ls);
    let r = e.verify();
    expect_bad(&r, TamperKind::Truncated, n as u64 - 3);
    // Without the head, the chain itself is intact (that is why the head is kept).
    assert!(verify(&e.paths(), Some(&vk()), None).ok);
    // The server refuses to open on it...
    match e.open(cfg()) {
        Err(AuditError::Truncated(m)) => assert!(m.contains("removed from its tail"), "{m}"),
        other => panic!("expected Truncated, got {other:?}"),
    }
    // ...unless told to accept it.
    let j = e
        .open(JournalConfig {
            accept_truncation: true,
            ..cfg()
        })
        .unwrap();
    j.append_blocking(rec(1)).unwrap();
    j.close();
    assert!(verify(&e.paths(), Some(&vk()), e.head()).ok);
}

#[test]
fn recomputed_chain_without_the_key_fails() {
    // Chain recomputed, checkpoints left as they were: the checkpoint no longer matches.
    let e = env();
    journal_of(&e, 50);
    let p = &e.paths()[0];
    let mut ls = lines(p);
    let i = caller_line(&ls, 10);
    let mut m = parse(&ls[i]);
    m.insert("outcome".into(), json!("denied"));
    ls[i] = serde_json::to_vec(&m).unwrap();
    rechain(&mut ls, i + 1, false);
    let cp = (i + 1..ls.len())
        .find(|&k| kind_of(&ls[k]) == "checkpoint")
        .unwrap();
    write_lines(p, &ls);
    expect_bad(
        &verify(&e.paths(), Some(&vk()), None),
        TamperKind::CheckpointInvalid,
        cp as u64 + 1,
    );

    // Checkpoint heads recomputed too: the signature fails.
    let mut ls2 = ls.clone();
    rechain(&mut ls2, i + 1, true);
    write_lines(p, &ls2);
    expect_bad(
        &verify(&e.paths(), Some(&vk()), None),
        TamperKind::SignatureInvalid,
        cp as u64 + 1,
    );
    // Without the public key, such a rewrite cannot be told apart: say so.
    let r = verify(&e.paths(), None, None);
    assert!(r.ok && !r.signatures_checked);

    // Checkpoints removed and seqs renumbered: the last valid checkpoint's promise breaks.
    let mut ls3: Vec<Vec<u8>> = Vec::new();
    for (k, l) in ls.iter().enumerate() {
        if k > i && kind_of(l) == "checkpoint" {
            continue;
        }
        ls3.push(l.clone());
    }
    for (k, l) in ls3.iter_mut().enumerate().skip(i) {
        let mut m = parse(l);
        m.insert("seq".into(), json!(k as u64 + 1));
        *l = serde_json::to_vec(&m).unwrap();
    }
    // Make it long enough to pass the promise (checkpoint_every + batch slack).
    let last = ls3.last().unwrap().clone();
    for _ in 0..(20 + 4096 + 20) {
        let mut m = parse(&last);
        m.insert("seq".into(), json!(ls3.len() as u64 + 1));
        ls3.push(serde_json::to_vec(&m).unwrap());
    }
    rechain(&mut ls3, i, false);
    write_lines(p, &ls3);
    let r = verify(&e.paths(), Some(&vk()), None);
    assert_eq!(
        r.first_error.as_ref().map(|b| b.kind),
        Some(TamperKind::CheckpointMissing),
        "{}",
        r.render()
    );
}

fn multi_segment(e: &Env, n: u64, extra: JournalConfig) {
    let j = e
        .open(JournalConfig {
            segment_max_bytes: 4096,
            ..extra
        })
        .unwrap();
    for i in 0..n {
        j.append_blocking(rec(i)).unwrap();
    }
    j.close();
}

#[test]
fn removed_or_swapped_segments_are_detected() {
    let e = env();
    multi_segment(&e, 120, cfg());
    let paths = e.paths();
    assert!(paths.len() >= 4, "{paths:?}");
    assert!(e.verify().ok, "{}", e.verify().render());

    // A middle segment removed.
    let mut without: Vec<PathBuf> = paths.clone();
    without.remove(2);
    let r = verify(&without, Some(&vk()), None);
    expect_bad(&r, TamperKind::SegmentMismatch, 1);
    assert_eq!(r.first_error.unwrap().file, paths[3]);

    // The first segment removed without a retention record.
    let r = verify(&paths[1..], Some(&vk()), None);
    expect_bad(&r, TamperKind::SegmentMismatch, 1);
    assert!(r.first_error.unwrap().message.contains("retention"));

    // Two segments' contents swapped (names kept).
    let a = std::fs::read(&paths[1]).unwrap();
    let b = std::fs::read(&paths[2]).unwrap();
    std::fs::write(&paths[1], &b).unwrap();
    std::fs::write(&paths[2], &a).unwrap();
    let r = e.verify();
    expect_bad(&r, TamperKind::SegmentMismatch, 1);
    assert_eq!(r.first_error.unwrap().file, paths[1]);
}

#[test]
fn retention_keeps_verification_passing() {
    let e = env();
    multi_segment(
        &e,
        300,
        JournalConfig {
            retain_max_bytes: 4 * 4096,
            ..cfg()
        },
    );
    let paths = e.paths();
    let total: u64 = paths
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(total <= 6 * 4096, "retention did not remove: {total} bytes");
    let r = e.verify();
    assert!(r.ok, "{}", r.render());
    assert!(r.anchored_start.is_some_and(|s| s > 1));
    // Removing the oldest remaining segment by hand is still detected.
    let r = verify(&paths[1..], Some(&vk()), None);
    assert!(!r.ok);
}

#[test]
fn torn_tail_is_marked_skipped_and_verifies() {
    let e = env();
    journal_of(&e, 30);
    let p = e.paths()[0].clone();
    let before = e.head().unwrap().0;
    // A crash mid-append: half a line, no newline.
    let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
    f.write_all(br#"{"type":"response","path":"secret/data/x","se"#)
        .unwrap();
    drop(f);
    let r = e.verify();
    assert!(r.ok, "{}", r.render());
    assert!(r.unmarked_tail.is_some());

    let j = e.open(cfg()).unwrap();
    let receipt = j.append_blocking(rec(999)).unwrap();
    // torn_tail + checkpoint at open, then the record: the chain goes on without a gap.
    assert_eq!(receipt.seq, before + 3);
    j.close();
    let r = e.verify();
    assert!(r.ok, "{}", r.render());
    assert_eq!(r.torn_tails.len(), 1);
    assert!(r.torn_tails[0].marked);
    assert!(r.unmarked_tail.is_none());
    let marks: Vec<Vec<u8>> = lines(&p)
        .into_iter()
        .filter(|l| serde_json::from_slice::<Value>(l).is_ok() && kind_of(l) == "torn_tail")
        .collect();
    assert_eq!(marks.len(), 1);

    // A complete final record without its newline is kept, not skipped.
    let e = env();
    journal_of(&e, 5);
    let p = e.paths()[0].clone();
    let data = std::fs::read(&p).unwrap();
    std::fs::write(&p, &data[..data.len() - 1]).unwrap();
    let j = e.open(cfg()).unwrap();
    j.append_blocking(rec(6)).unwrap();
    j.close();
    let r = e.verify();
    assert!(r.ok && r.torn_tails.is_empty(), "{}", r.render());
}

#[test]
fn io_errors_fail_closed_then_recover_without_gap() {
    let e = env();
    let fs = FaultyFs::new();
    let j = e.open_faulty(cfg(), &fs);
    let first = j.append_blocking(rec(1)).unwrap();

    fs.fail_writes(true);
    assert!(matches!(
        j.append_blocking(rec(2)),
        Err(AuditError::Unavailable(_))
    ));
    fs.fail_writes(false);

    fs.partial_writes(true);
    let err = j.append_blocking(rec(3)).unwrap_err();
    assert!(err.is_unavailable());
    fs.partial_writes(false);

    fs.fail_syncs(true);
    assert!(j.append_blocking(rec(4)).unwrap_err().is_unavailable());
    fs.fail_syncs(false);

    let next = j.append_blocking(rec(5)).unwrap();
    assert_eq!(next.seq, first.seq + 1, "the failed records took no seq");
    j.close();
    let r = e.verify();
    assert!(r.ok, "{}", r.render());
    // None of the refused records is in the journal.
    let mut out = Vec::new();
    export(
        &e.paths(),
        &ExportFilter::default(),
        ExportFormat::Jsonl,
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    for refused in ["req-2", "req-3", "req-4"] {
        assert!(!text.contains(refused), "{refused} was written");
    }
    assert!(text.contains("req-1") && text.contains("req-5"));
}

#[test]
fn hung_disk_past_the_deadline_is_unavailable_then_recovers() {
    let e = env();
    let fs = FaultyFs::new();
    let j = e.open_faulty(
        JournalConfig {
            write_deadline: Duration::from_millis(150),
            ..cfg()
        },
        &fs,
    );
    j.append_blocking(rec(1)).unwrap();
    fs.sync_delay(Duration::from_millis(600));
    let t = Instant::now();
    assert!(j.append_blocking(rec(2)).unwrap_err().is_unavailable());
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "waited for the disk"
    );
    fs.sync_delay(Duration::ZERO);
    std::thread::sleep(Duration::from_millis(700));
    let r3 = j.append_blocking(rec(3)).unwrap();
    j.close();
    let r = e.verify();
    assert!(r.ok, "{}", r.render());
    let mut out = Vec::new();
    export(
        &e.paths(),
        &ExportFilter::default(),
        ExportFormat::Jsonl,
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains("\"req-2\""), "a refused record was kept");
    assert!(text.contains("\"req-3\""));
    assert!(r3.seq > 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_under_64_concurrent_appenders() {
    let e = env();
    let j = e.open(cfg()).unwrap();
    let before = j.stats();
    let mut tasks = Vec::new();
    for t in 0..64u64 {
        let j = j.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..20u64 {
                seqs.push(j.append(rec(t * 1000 + i)).await.unwrap().seq);
            }
            seqs
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.extend(t.await.unwrap());
    }
    let stats = j.stats();
    j.close();
    let n = seqs.len();
    assert_eq!(n, 64 * 20);
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), n, "duplicate seqs");
    let fsyncs = stats.fsyncs - before.fsyncs;
    assert!(
        fsyncs < n as u64,
        "no group commit: {fsyncs} fsyncs for {n} appends"
    );
    let r = e.verify();
    assert!(r.ok, "{}", r.render());
    // Gap-free: every seq of the range is a record of the journal.
    assert_eq!(r.records, r.last_seq.unwrap());
}

#[test]
fn redacted_canaries_never_reach_the_journal() {
    let e = env();
    let hkey = [9u8; 32];
    let body = json!({
        "password": "canary-string-5f3a",
        "pin": 918273645,
        "ratio": 0.123456789,
        "enabled": true,
        "nothing": null,
        "list": ["canary-in-array-77", 55512345, false],
        "nested": {"deep": {"token": "hvs.canary-token-x"}},
    });
    let redacted = redact(&body, &hkey);
    let mut r = rec(1);
    r.insert("request".into(), json!({"data": redacted, "headers": redact(&json!({"X-Vault-Token": "s.canary-hdr"}), &hkey)}));
    let j = e.open(cfg()).unwrap();
    j.append_blocking(r).unwrap();
    j.close();
    let mut all = Vec::new();
    for p in e.paths() {
        all.extend(std::fs::read(p).unwrap());
    }
    let text = String::from_utf8(all).unwrap();
    for canary in [
        "canary-string-5f3a",
        "918273645",
        "0.123456789",
        "canary-in-array-77",
        "55512345",
        "hvs.canary-token-x",
        "s.canary-hdr",
    ] {
        assert!(!text.contains(canary), "{canary} in clear");
    }
    // Booleans and nulls are replaced too, with distinct values per type.
    assert_eq!(redacted["enabled"], json!(hmac_value(&hkey, &json!(true))));
    assert_eq!(redacted["nothing"], json!(hmac_value(&hkey, &json!(null))));
    assert_eq!(redacted["list"][2], json!(hmac_value(&hkey, &json!(false))));
    // An auditor can find a known value.
    assert!(text.contains(&hmac_value(&hkey, &json!("canary-string-5f3a"))));
}

#[test]
fn export_filters_and_csv_quoting() {
    let e = env();
    let j = e.open(cfg()).unwrap();
    let nasty = [
        "secret/data/a,b",
        "secret/data/quo\"te",
        "secret/data/new\nline",
        "secret/data/bell\u{7}\r\u{1b}[31m",
        "=HYPERLINK(\"http://x\")",
        "+cmd",
        "-2+3",
        "@SUM(A1)",
    ];
    for (i, p) in nasty.iter().enumerate() {
        let mut r = rec(i as u64);
        r.insert("path".into(), json!(p));
        r.insert("operation".into(), json!("read"));
        r.insert(
            "time".into(),
            json!(format!("2024-03-0{}T12:00:00.000000001Z", i + 1)),
        );
        j.append_blocking(r).unwrap();
    }
    for i in 0..20 {
        j.append_blocking(rec(i)).unwrap();
    }
    j.close();
    let paths = e.paths();

    let mut out = Vec::new();
    let n = export(
        &paths,
        &ExportFilter {
            path: Some("secret/data/*".into()),
            operation: Some("read".into()),
            to: Some("2024-03-05T00:00:00Z".parse().unwrap()),
            ..ExportFilter::default()
        },
        ExportFormat::Csv,
        &mut out,
    )
    .unwrap();
    assert_eq!(n, 4);
    let text = String::from_utf8(out).unwrap();
    // One physical line per record (+ header): no injected row.
    assert_eq!(text.lines().count(), 5, "{text}");
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{text:?}"
    );
    let mut rd = csv::Reader::from_reader(text.as_bytes());
    let rows: Vec<csv::StringRecord> = rd.records().map(Result::unwrap).collect();
    let col = arca::audit_log::CSV_COLUMNS
        .iter()
        .position(|c| *c == "path")
        .unwrap();
    assert_eq!(&rows[0][col], "secret/data/a,b");
    assert_eq!(&rows[1][col], "secret/data/quo\"te");
    assert_eq!(&rows[2][col], "secret/data/new\\u000aline");
    assert_eq!(&rows[3][col], "secret/data/bell\\u0007\\u000d\\u001b[31m");

    // Formula prefixes neutralized.
    let mut out = Vec::new();
    export(
        &paths,
        &ExportFilter {
            from: Some("2024-03-05T00:00:00Z".parse().unwrap()),
            to: Some("2024-03-09T00:00:00Z".parse().unwrap()),
            ..ExportFilter::default()
        },
        ExportFormat::Csv,
        &mut out,
    )
    .unwrap();
    let mut rd = csv::Reader::from_reader(&out[..]);
    let cells: Vec<String> = rd.records().map(|r| r.unwrap()[col].to_string()).collect();
    assert_eq!(
        cells,
        ["'=HYPERLINK(\"http://x\")", "'+cmd", "'-2+3", "'@SUM(A1)"]
    );

    // Actor (accessor or display name) and outcome filters, JSONL keeps the exact lines.
    let mut out = Vec::new();
    let n = export(
        &paths,
        &ExportFilter {
            actor: Some("user1".into()),
            ..ExportFilter::default()
        },
        ExportFormat::Jsonl,
        &mut out,
    )
    .unwrap();
    let by_name = n;
    let mut out2 = Vec::new();
    let n2 = export(
        &paths,
        &ExportFilter {
            actor: Some("acc-1".into()),
            ..ExportFilter::default()
        },
        ExportFormat::Jsonl,
        &mut out2,
    )
    .unwrap();
    assert!(by_name > 0 && by_name == n2);
    assert_eq!(out, out2);
    for l in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        assert_eq!(parse(l)["actor"]["display_name"], "user1");
    }
    let mut out = Vec::new();
    let denied = export(
        &paths,
        &ExportFilter {
            outcome: Some("denied".into()),
            ..ExportFilter::default()
        },
        ExportFormat::Jsonl,
        &mut out,
    )
    .unwrap();
    assert!(denied > 0);
    assert!(String::from_utf8(out)
        .unwrap()
        .lines()
        .all(|l| l.contains("\"outcome\":\"denied\"")));
    // Journal records (checkpoints...) are not exported.
    let mut out = Vec::new();
    let all = export(
        &paths,
        &ExportFilter::default(),
        ExportFormat::Jsonl,
        &mut out,
    )
    .unwrap();
    assert_eq!(all, 28);
}

#[test]
fn reserved_types_are_refused() {
    let e = env();
    let j = e.open(cfg()).unwrap();
    let mut r = rec(1);
    r.insert("type".into(), json!("checkpoint"));
    assert!(matches!(
        j.append_blocking(r),
        Err(AuditError::InvalidRecord(_))
    ));
    j.close();
    assert!(matches!(j.append_blocking(rec(1)), Err(AuditError::Closed)));
}

/// Writes 1,000,000 records, then measures verify and export throughput against a plain read
/// of the same files. Run with `cargo test --test audit_journal -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput_one_million_records() {
    let e = env();
    let n: u64 = std::env::var("AUDIT_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let j = e
        .open(JournalConfig {
            checkpoint_every: 10_000,
            ..JournalConfig::default()
        })
        .unwrap();
    let t = Instant::now();
    let threads = 64;
    std::thread::scope(|s| {
        for k in 0..threads {
            let j = j.clone();
            s.spawn(move || {
                let mut i = k;
                while i < n {
                    j.append_blocking(rec(i)).unwrap();
                    i += threads;
                }
            });
        }
    });
    let write_s = t.elapsed().as_secs_f64();
    j.close();
    let paths = e.paths();
    let bytes: u64 = paths
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    let mb = bytes as f64 / 1e6;

    let t = Instant::now();
    for p in &paths {
        let mut f = std::fs::File::open(p).unwrap();
        std::io::copy(&mut f, &mut std::io::sink()).unwrap();
    }
    let cat_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let r = verify(&paths, Some(&vk()), e.head());
    let verify_s = t.elapsed().as_secs_f64();
    assert!(r.ok, "{}", r.render());

    let t = Instant::now();
    let mut sink = std::io::sink();
    let exported = export(
        &paths,
        &ExportFilter::default(),
        ExportFormat::Csv,
        &mut sink,
    )
    .unwrap();
    let export_s = t.elapsed().as_secs_f64();
    assert_eq!(exported, n);

    let t = Instant::now();
    let mut sink = std::io::sink();
    export(
        &paths,
        &ExportFilter::default(),
        ExportFormat::Jsonl,
        &mut sink,
    )
    .unwrap();
    let jsonl_s = t.elapsed().as_secs_f64();

    println!(
        "audit bench: {n} records, {mb:.1} MB in {} segments",
        paths.len()
    );
    println!("  append (64 threads): {:.0} records/s", n as f64 / write_s);
    println!("  read (cat ceiling):  {:.0} MB/s", mb / cat_s);
    println!(
        "  verify:              {:.0} records/s, {:.0} MB/s",
        r.records as f64 / verify_s,
        mb / verify_s
    );
    println!(
        "  export csv:          {:.0} records/s, {:.0} MB/s",
        n as f64 / export_s,
        mb / export_s
    );
    println!(
        "  export jsonl:        {:.0} records/s, {:.0} MB/s",
        n as f64 / jsonl_s,
        mb / jsonl_s
    );
}

/// A store whose sync the test opens or fails by hand (sled underneath for the head).
struct GatedStore {
    inner: Arc<SledStore>,
    /// 0 closed, 1 open, 2 failed
    gate: std::sync::atomic::AtomicU8,
}

impl Store for GatedStore {
    fn get(&self, k: &[u8]) -> arca::store::StoreResult<Option<Vec<u8>>> {
        self.inner.get(k)
    }
    fn put(&self, k: &[u8], v: &[u8]) -> arca::store::StoreResult<()> {
        self.inner.put(k, v)
    }
    fn delete(&self, k: &[u8]) -> arca::store::StoreResult<()> {
        self.inner.delete(k)
    }
    fn scan_prefix(&self, p: &[u8]) -> arca::store::StoreResult<Vec<(Vec<u8>, Vec<u8>)>> {
        self.inner.scan_prefix(p)
    }
    fn keys_with_prefix(&self, p: &[u8]) -> arca::store::StoreResult<Vec<Vec<u8>>> {
        self.inner.keys_with_prefix(p)
    }
    fn keys_in_range(&self, s: &[u8], e: &[u8]) -> arca::store::StoreResult<Vec<Vec<u8>>> {
        self.inner.keys_in_range(s, e)
    }
    fn cas(&self, k: &[u8], e: Option<&[u8]>, n: Option<&[u8]>) -> arca::store::StoreResult<bool> {
        self.inner.cas(k, e, n)
    }
    fn batch(&self, ops: Vec<arca::store::Op>) -> arca::store::StoreResult<()> {
        self.inner.batch(ops)
    }
    fn sync(&self) -> arca::store::StoreResult<()> {
        self.inner.sync()
    }
    fn sync_start(&self) -> arca::store::StoreResult<u64> {
        Ok(1)
    }
    fn synced(&self, _ticket: u64, wait: Duration) -> arca::store::StoreResult<bool> {
        use std::sync::atomic::Ordering;
        let deadline = Instant::now() + wait;
        loop {
            match self.gate.load(Ordering::SeqCst) {
                1 => return Ok(true),
                2 => return Err(arca::store::StoreError::Io("injected sync failure".into())),
                _ if Instant::now() >= deadline => return Ok(false),
                _ => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }
}

/// A record that reports a change waits for the store's sync, without holding up the
/// records behind it; a failed store sync means the record is never written.
#[test]
fn a_change_record_waits_for_the_store_and_others_pass_it() {
    use std::sync::atomic::Ordering;
    let e = env();
    let gated = Arc::new(GatedStore {
        inner: e.store.clone(),
        gate: std::sync::atomic::AtomicU8::new(0),
    });
    let j = Arc::new(Journal::open(&e.dir, cfg(), key(), gated.clone()).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let held = {
        let j = j.clone();
        rt.spawn(async move { j.append_after_store_sync(rec(1), 1).await })
    };
    std::thread::sleep(Duration::from_millis(50));
    j.append_blocking(rec(2)).unwrap();
    let written = |id: &str| {
        e.paths()
            .iter()
            .flat_map(|p| lines(p))
            .any(|l: Vec<u8>| parse(&l).get("request_id") == Some(&json!(id)))
    };
    assert!(
        written("req-2"),
        "a record behind the held one waited for it"
    );
    assert!(!written("req-1"), "written before the store was durable");
    gated.gate.store(1, Ordering::SeqCst);
    rt.block_on(held).unwrap().unwrap();
    assert!(written("req-1"));

    gated.gate.store(2, Ordering::SeqCst);
    let r = rt.block_on(j.append_after_store_sync(rec(3), 1));
    assert!(matches!(r, Err(AuditError::Unavailable(_))), "{r:?}");
    assert!(!written("req-3"));
    // the journal goes on, and its chain is intact
    j.append_blocking(rec(4)).unwrap();
    j.close();
    let report = e.verify();
    assert!(report.ok, "{}", report.render());
}
