//! An in-memory database for the pure state-machine tests (never used outside `cfg(test)`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use super::rotators::SetPassword;
use super::Secret;

#[derive(Default)]
pub struct FakeDb {
    pub users: Mutex<HashMap<String, String>>,
    /// Fail this many `set_password` calls (database down).
    pub fail_sets: AtomicU32,
    /// Fail this many `test_login` calls (password not applied yet).
    pub fail_tests: AtomicU32,
    pub sets: AtomicU32,
    /// Milliseconds each `set_password` takes (to overlap concurrent triggers).
    pub delay_ms: AtomicU32,
}

impl FakeDb {
    pub fn with_user(user: &str, pw: &str) -> FakeDb {
        let f = FakeDb::default();
        f.users
            .lock()
            .unwrap()
            .insert(user.to_string(), pw.to_string());
        f
    }

    pub fn login(&self, user: &str, pw: &str) -> bool {
        self.users.lock().unwrap().get(user).map(String::as_str) == Some(pw)
    }

    pub async fn set_password(&self, req: &SetPassword<'_>) -> Result<(), String> {
        let d = self.delay_ms.load(Ordering::SeqCst);
        if d > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(d as u64)).await;
        }
        if self.fail_sets.load(Ordering::SeqCst) > 0 {
            self.fail_sets.fetch_sub(1, Ordering::SeqCst);
            return Err("connection refused".into());
        }
        let authed = req
            .logins
            .iter()
            .any(|l| self.login(&l.username, l.password.expose()));
        if !authed {
            return Err("password authentication failed".into());
        }
        self.sets.fetch_add(1, Ordering::SeqCst);
        self.users
            .lock()
            .unwrap()
            .insert(req.user.to_string(), req.new_password.expose().to_string());
        Ok(())
    }

    pub async fn test_login(&self, user: &str, pw: &Secret, _secret: &str) -> Result<(), String> {
        if self.fail_tests.load(Ordering::SeqCst) > 0 {
            self.fail_tests.fetch_sub(1, Ordering::SeqCst);
            return Err("password authentication failed (not applied yet)".into());
        }
        if self.login(user, pw.expose()) {
            Ok(())
        } else {
            Err("password authentication failed".into())
        }
    }
}
