//! State-machine tests with a ManualClock and the in-memory fake database.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::Duration as CDuration;
use serde_json::json;

use super::fake::FakeDb;
use super::*;
use crate::core::clock::ManualClock;
use crate::core::crypto::Algorithm;
use crate::store::sled::SledStore;
use crate::store::Store;

const DAY: i64 = 86_400;

struct Fx {
    vault: Arc<Vault>,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

fn fx() -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path(), 8 << 20).unwrap());
    let clock = Arc::new(ManualClock::new(
        chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
    ));
    let kek = crate::core::crypto::Key::generate();
    let v = Vault::open(
        store,
        clock.clone(),
        Algorithm::XChaCha20Poly1305,
        Some(kek),
    )
    .unwrap();
    v.init(1, 1, None).unwrap();
    assert!(v.auto_unseal().unwrap());
    Fx {
        vault: Arc::new(v),
        clock,
        _dir: dir,
    }
}

fn settings() -> Settings {
    Settings {
        jitter_secs: 0,
        backoff_secs: 10,
        backoff_max_secs: 100,
        max_attempts: 3,
        test_login_attempts: 2,
        test_login_delay_ms: 1,
        ..Settings::default()
    }
}

fn engine(f: &Fx, s: Settings, fake: Option<Arc<FakeDb>>) -> Arc<Rotation> {
    let mut r = Rotation::new(f.vault.clone(), f.clock.clone(), s);
    r.fake = fake;
    Arc::new(r)
}

fn policy(v: serde_json::Value) -> Policy {
    Policy::from_json(v.as_object().unwrap(), 90 * DAY as u64, &BTreeMap::new()).unwrap()
}

fn current(f: &Fx, path: &str) -> (u64, Map<String, Value>) {
    match f.vault.kv_read("secret", path, None).unwrap() {
        ReadOutcome::Found {
            data: Value::Object(m),
            metadata,
        } => (metadata.version, m),
        other => panic!("{other:?}"),
    }
}

fn pw(m: &Map<String, Value>) -> String {
    m["password"].as_str().unwrap().to_string()
}

fn db_policy() -> Policy {
    policy(json!({"target":"postgres","connection":{"host":"h","username":"app"}}))
}

fn seed(f: &Fx, path: &str, user: &str, p: &str) {
    f.vault
        .kv_write(
            "secret",
            path,
            json!({"username": user, "password": p, "note": "kept"})
                .as_object()
                .unwrap(),
            None,
        )
        .unwrap();
}

#[test]
fn due_prefixes_cover_exactly_the_past() {
    let f = fx();
    let e = engine(&f, settings(), None);
    let p = policy(json!({"period":"1h"}));
    for (i, path) in ["a", "b", "c", "d"].iter().enumerate() {
        e.set_policy("secret", path, p.clone()).unwrap();
        f.clock.advance(CDuration::seconds(1000 * (i as i64 + 1)));
    }
    // a due at t0+3600, b at t0+1000+3600, c at t0+3000+3600, d at t0+6000+3600
    let t0 = 1_800_000_000;
    let got =
        |t: i64| -> Vec<String> { e.due_entries(t).unwrap().into_iter().map(|x| x.2).collect() };
    assert!(got(t0 + 3599).is_empty());
    assert_eq!(got(t0 + 3600), vec!["a"]);
    assert_eq!(got(t0 + 6600), vec!["a", "b", "c"]);
    assert_eq!(got(t0 + 100_000), vec!["a", "b", "c", "d"]);
    // prefixes: every key they match is <= now, and all keys <= now are matched
    for now in [0i64, 9, 10, 1_799_999_999, 1_800_000_000, 99_999] {
        let n = format!("{now:020}");
        for pre in due_prefixes(now) {
            let digits = &pre["rot/due/".len()..].trim_end_matches('/');
            assert!(digits.as_bytes() <= &n.as_bytes()[..digits.len()]);
        }
    }
}

#[test]
fn jitter_stays_in_window_and_is_stable() {
    for i in 0..1000 {
        let j = jitter("secret", &format!("db/{i}"), 1_800_000_000, 3600);
        assert!((0..3600).contains(&j));
        assert_eq!(j, jitter("secret", &format!("db/{i}"), 1_800_000_000, 3600));
    }
    assert_eq!(jitter("secret", "x", 5, 0), 0);
    let spread: std::collections::BTreeSet<i64> = (0..1000)
        .map(|i| jitter("secret", &format!("db/{i}"), 1, 3600) / 360)
        .collect();
    assert_eq!(spread.len(), 10, "jitter spreads over the whole window");
    let s = settings();
    assert_eq!(backoff(&s, 1), 10);
    assert_eq!(backoff(&s, 2), 20);
    assert_eq!(backoff(&s, 9), 100);
}

#[tokio::test]
async fn vault_only_rotation_keeps_previous_version() {
    let f = fx();
    let e = engine(&f, settings(), None);
    f.vault
        .kv_write(
            "secret",
            "api",
            json!({"password":"old","x":"1"}).as_object().unwrap(),
            None,
        )
        .unwrap();
    e.set_policy("secret", "api", policy(json!({"period":"24h"})))
        .unwrap();
    assert!(matches!(
        e.rotate("secret", "api", Trigger::Schedule).await,
        Err(RotateError::NotDue)
    ));
    let v = e.rotate("secret", "api", Trigger::Manual).await.unwrap();
    assert_eq!(v, 2);
    let (ver, m) = current(&f, "api");
    assert_eq!(ver, 2);
    assert_ne!(pw(&m), "old");
    assert_eq!(pw(&m).len(), 32);
    assert_eq!(m["x"], "1");
    match f.vault.kv_read("secret", "api", Some(1)).unwrap() {
        ReadOutcome::Found { data, .. } => assert_eq!(data["password"], "old"),
        o => panic!("{o:?}"),
    }
    let r = e.load("secret", "api").unwrap().unwrap();
    assert_eq!(r.phase, Phase::Idle);
    assert_eq!(r.next_rotation_at, e.now() + DAY);
    assert_eq!(r.history.len(), 1);
}

#[tokio::test]
async fn single_user_happy_path_old_password_stops_working() {
    let f = fx();
    let db = Arc::new(FakeDb::with_user("app", "pw0"));
    let e = engine(&f, settings(), Some(db.clone()));
    seed(&f, "db", "app", "pw0");
    e.set_policy("secret", "db", db_policy()).unwrap();
    let v = e.rotate("secret", "db", Trigger::Manual).await.unwrap();
    let (_, m) = current(&f, "db");
    assert_eq!(v, 2);
    assert!(db.login("app", &pw(&m)));
    assert!(!db.login("app", "pw0"));
    assert_eq!(m["note"], "kept");
}

#[tokio::test]
async fn alternating_users_keep_the_previous_credential_working() {
    let f = fx();
    let db = Arc::new(FakeDb::with_user("admin", "root"));
    db.users.lock().unwrap().insert("u1".into(), "p1".into());
    let e = engine(&f, settings(), Some(db.clone()));
    f.vault
        .kv_write(
            "secret",
            "admin",
            json!({"username":"admin","password":"root"})
                .as_object()
                .unwrap(),
            None,
        )
        .unwrap();
    seed(&f, "db", "u1", "p1");
    e.set_policy(
        "secret",
        "db",
        policy(json!({"target":"postgres","strategy":"alternating-users","connection":{"host":"h","users":["u1","u2"],"admin_secret":"admin"}})),
    )
    .unwrap();
    e.rotate("secret", "db", Trigger::Manual).await.unwrap();
    let (_, m) = current(&f, "db");
    assert_eq!(m["username"], "u2");
    assert!(db.login("u2", &pw(&m)));
    assert!(db.login("u1", "p1"), "previous credential still works");
    e.rotate("secret", "db", Trigger::Manual).await.unwrap();
    let (_, m2) = current(&f, "db");
    assert_eq!(m2["username"], "u1");
    assert!(db.login("u1", &pw(&m2)));
    assert!(db.login("u2", &pw(&m)));
}

/// A crash after each durable step (simulated: a new engine = a restart) resumes with the same
/// pending password, and the stored current credential logs in afterwards.
#[tokio::test]
async fn resume_after_crash_at_every_step() {
    for stop_after in [Phase::Pending, Phase::Set, Phase::Tested] {
        let f = fx();
        let db = Arc::new(FakeDb::with_user("app", "pw0"));
        let e = engine(&f, settings(), Some(db.clone()));
        seed(&f, "db", "app", "pw0");
        e.set_policy("secret", "db", db_policy()).unwrap();
        // run the steps by hand up to `stop_after`
        e.begin("secret", "db", Trigger::Schedule).unwrap();
        let pending = e.load("secret", "db").unwrap().unwrap().pending.unwrap();
        if stop_after != Phase::Pending {
            let req_logins = vec![Login {
                username: "app".into(),
                password: Secret::new("pw0".into()),
            }];
            db.set_password(&SetPassword {
                user: "app",
                new_password: &pending.password,
                logins: &req_logins,
                self_change: true,
                secret: "secret/db",
            })
            .await
            .unwrap();
            e.advance("secret", "db", Phase::Pending, Phase::Set)
                .unwrap();
        }
        if stop_after == Phase::Tested {
            e.advance("secret", "db", Phase::Set, Phase::Tested)
                .unwrap();
        }
        // a lease left behind by the dead process does not block the restarted one
        let dead = e.acquire("secret", "db").unwrap().unwrap();
        std::mem::forget(dead);
        drop(e);
        let e2 = engine(&f, settings(), Some(db.clone()));
        let r = e2.reconcile().await.unwrap();
        assert_eq!(r.rotated, 1, "{stop_after:?}");
        let (v, m) = current(&f, "db");
        assert_eq!(v, 2);
        assert_eq!(pw(&m), pending.password.expose(), "same pending password");
        assert!(db.login("app", &pw(&m)), "{stop_after:?}");
        let r = e2.load("secret", "db").unwrap().unwrap();
        assert_eq!(r.phase, Phase::Idle);
    }
}

#[tokio::test]
async fn database_down_retries_then_fails_then_resumes() {
    let f = fx();
    let db = Arc::new(FakeDb::with_user("app", "pw0"));
    db.fail_sets.store(100, Ordering::SeqCst);
    let e = engine(&f, settings(), Some(db.clone()));
    seed(&f, "db", "app", "pw0");
    e.set_policy("secret", "db", db_policy()).unwrap();
    assert!(matches!(
        e.rotate("secret", "db", Trigger::Manual).await,
        Err(RotateError::Attempt(_))
    ));
    let first = e.load("secret", "db").unwrap().unwrap();
    let p1 = first.pending.clone().unwrap().password;
    assert_eq!(first.attempts, 1);
    assert_eq!(first.due_at, Some(e.now() + 10));
    // not due during backoff
    assert_eq!(e.reconcile().await.unwrap().due, 0);
    f.clock.advance(CDuration::seconds(10));
    assert_eq!(e.reconcile().await.unwrap().failed, 1);
    f.clock.advance(CDuration::seconds(20));
    assert_eq!(e.reconcile().await.unwrap().failed, 1);
    let r = e.load("secret", "db").unwrap().unwrap();
    assert_eq!(r.phase, Phase::Failed);
    assert_eq!(
        r.pending.unwrap().password.expose(),
        p1.expose(),
        "one pending password"
    );
    assert!(r.last_error.contains("connection refused"));
    assert!(e.metrics().unwrap().contains("arca_rotation_failed 1"));
    assert_eq!(e.status().unwrap()[0].state, "failed");
    // failed stays out of the schedule
    f.clock.advance(CDuration::days(1));
    assert_eq!(e.reconcile().await.unwrap().due, 0);
    assert!(db.login("app", "pw0"), "current still works");
    db.fail_sets.store(0, Ordering::SeqCst);
    e.resume("secret", "db").unwrap();
    let v = e.rotate("secret", "db", Trigger::Manual).await.unwrap();
    assert_eq!(v, 2);
    let (_, m) = current(&f, "db");
    assert_eq!(pw(&m), p1.expose());
    assert!(db.login("app", p1.expose()));
}

#[tokio::test]
async fn a_slow_password_apply_is_retried_and_untested_is_never_promoted() {
    let f = fx();
    let db = Arc::new(FakeDb::with_user("app", "pw0"));
    db.fail_tests.store(1, Ordering::SeqCst);
    let e = engine(&f, settings(), Some(db.clone()));
    seed(&f, "db", "app", "pw0");
    e.set_policy("secret", "db", db_policy()).unwrap();
    e.rotate("secret", "db", Trigger::Manual).await.unwrap();
    // test login always failing: never promoted
    db.fail_tests.store(1000, Ordering::SeqCst);
    f.clock.advance(CDuration::days(91));
    for _ in 0..5 {
        let _ = e.reconcile().await;
        f.clock.advance(CDuration::seconds(200));
    }
    let (v, m) = current(&f, "db");
    assert_eq!(v, 2);
    assert_eq!(
        e.load("secret", "db").unwrap().unwrap().phase,
        Phase::Failed
    );
    // abort: back to idle, a period away, with a warning for single-user
    let w = e.abort("secret", "db").unwrap();
    assert_eq!(w.len(), 1);
    let r = e.load("secret", "db").unwrap().unwrap();
    assert_eq!(r.phase, Phase::Idle);
    assert!(r.pending.is_none());
    let _ = m;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_triggers_rotate_once() {
    let f = fx();
    let db = Arc::new(FakeDb::with_user("app", "pw0"));
    let e = engine(&f, settings(), Some(db.clone()));
    seed(&f, "db", "app", "pw0");
    e.set_policy("secret", "db", db_policy()).unwrap();
    db.delay_ms.store(200, Ordering::SeqCst);
    f.clock.advance(CDuration::days(91));
    let (e1, e2) = (e.clone(), e.clone());
    let a = tokio::spawn(async move { e1.rotate("secret", "db", Trigger::Manual).await });
    let c = tokio::spawn(async move { e2.rotate("secret", "db", Trigger::Manual).await });
    let b = e.reconcile().await;
    let (a, c) = (a.await.unwrap(), c.await.unwrap());
    let busy = [&a, &c]
        .iter()
        .filter(|r| matches!(r, Err(RotateError::Busy)))
        .count();
    let b = b.unwrap();
    assert_eq!(busy + b.busy, 2, "the others saw the lease");
    let ok = [a.is_ok(), c.is_ok()].iter().filter(|x| **x).count() + b.rotated;
    assert_eq!(ok, 1);
    assert_eq!(db.sets.load(Ordering::SeqCst), 1);
    assert_eq!(current(&f, "db").0, 2);
}

/// 100 days, restarted every day (a new engine), the reconciler waking every hour: exactly one
/// rotation on day 90, none before, and the due date never moves on restart.
#[tokio::test]
async fn daily_restarts_over_100_days_rotate_once_on_day_90() {
    let f = fx();
    seed(&f, "db", "app", "pw0");
    let mut s = settings();
    s.jitter_secs = 3600;
    let e = engine(&f, s.clone(), None);
    e.set_policy("secret", "db", policy(json!({}))).unwrap();
    let due = e.load("secret", "db").unwrap().unwrap().next_rotation_at;
    let start = e.now();
    drop(e);
    let mut rotated_on = Vec::new();
    for day in 0..100 {
        let e = engine(&f, s.clone(), None); // restart
        for hour in 0..24 {
            let r = e.reconcile().await.unwrap();
            if r.rotated > 0 {
                rotated_on.push((day, hour, e.now()));
            }
            f.clock.advance(CDuration::hours(1));
        }
    }
    assert_eq!(rotated_on.len(), 1, "{rotated_on:?}");
    let (day, _, t) = rotated_on[0];
    assert_eq!(day, 90);
    assert!(
        t >= due && t < due + 3600,
        "rotated within an hour of the due time"
    );
    assert!(due >= start + 90 * DAY && due < start + 90 * DAY + 3600);
    assert_eq!(current(&f, "db").0, 2);
}

#[tokio::test]
async fn server_down_on_due_day_rotates_once_at_start() {
    let f = fx();
    let e = engine(&f, settings(), None);
    e.set_policy("secret", "k", policy(json!({"period":"24h"})))
        .unwrap();
    drop(e);
    f.clock.advance(CDuration::days(5)); // down for 5 days
    let e = engine(&f, settings(), None);
    assert_eq!(e.reconcile().await.unwrap().rotated, 1);
    assert_eq!(e.reconcile().await.unwrap().rotated, 0);
    assert_eq!(current(&f, "k").0, 1);
}

#[test]
fn policy_changes_refused_while_in_progress_and_records_encrypted() {
    let f = fx();
    let db = Arc::new(FakeDb::with_user("app", "pw0"));
    let e = engine(&f, settings(), Some(db));
    seed(&f, "db", "app", "pw0");
    e.set_policy("secret", "db", db_policy()).unwrap();
    e.begin("secret", "db", Trigger::Manual).unwrap();
    let pending = e.load("secret", "db").unwrap().unwrap().pending.unwrap();
    assert!(e.set_policy("secret", "db", db_policy()).is_err());
    assert!(e.delete_policy("secret", "db").is_err());
    for (_, v) in f.vault.store.scan_prefix(b"").unwrap() {
        let needle = pending.password.expose().as_bytes();
        assert!(!v.windows(needle.len()).any(|w| w == needle));
    }
}
