//! The keyring: data-key terms, stored encrypted under the root key.
//!
//! New writes use the active (newest) term; every term stays available to decrypt. Subkeys per
//! purpose and location come from HKDF (see `crypto::derive`). HMAC keys (token store, audit)
//! come from term 1 so they stay stable when terms are added.
//!
//! Encryptions under the active term are counted. The stored keyring holds, for each term, a
//! count the term may have reached (an upper bound): the count when it was written plus
//! `COUNT_RESERVE`, so a crash never makes the count go back. With AES-256-GCM (random
//! 96-bit nonces, safe for about 2^32 encryptions under one key) the vault adds a term
//! well before that (`Vault::keyring_maintain`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::clock::rfc3339;
use super::crypto::{self, label, Algorithm, CryptoError, Key, Location};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

struct Term {
    key: Key,
    installed_at: DateTime<Utc>,
    /// The stored upper bound of encryptions under this term (see the module docs).
    encryptions: u64,
}

/// Encryptions the stored count runs ahead of the live one (see the module docs).
pub const COUNT_RESERVE: u64 = 1 << 20;

/// Immutable once built: rotation builds a new keyring and swaps it in.
pub struct Keyring {
    terms: BTreeMap<u32, Term>,
    active: u32,
    alg: Algorithm,
    /// `stable_subkey(TOKEN_HMAC)`, derived once: every authenticated request needs it.
    token_hmac_key: Key,
    /// Encryptions under the active term: starts at the stored bound.
    count: AtomicU64,
    /// The bound stored for the active term (see `note_stored`).
    stored: AtomicU64,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("active", &self.active)
            .field("terms", &self.terms.len())
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct StoredTerm {
    term: u32,
    key: String,
    installed_at: DateTime<Utc>,
    /// Upper bound of encryptions under the term (absent in keyrings written before it was
    /// counted: 0).
    #[serde(default)]
    encryptions: u64,
}

#[derive(Serialize, Deserialize)]
struct StoredKeyring {
    active: u32,
    terms: Vec<StoredTerm>,
}

/// Where the keyring record lives, for its AAD.
const KEYRING_LOC: Location<'static> = Location {
    kind: "keyring",
    mount: "sys",
    path: "keyring",
    version: 0,
};

impl Keyring {
    fn build(terms: BTreeMap<u32, Term>, active: u32, alg: Algorithm) -> Keyring {
        let first = terms.values().next().expect("a keyring always has a term");
        let token_hmac_key = crypto::derive(&first.key, label::TOKEN_HMAC, "", "");
        let bound = terms.get(&active).map_or(0, |t| t.encryptions);
        Keyring {
            terms,
            active,
            alg,
            token_hmac_key,
            count: AtomicU64::new(bound),
            stored: AtomicU64::new(bound),
        }
    }

    /// HMAC-SHA256 of a token under the token store key (stable across rotation).
    pub fn token_hmac(&self, token: &[u8]) -> [u8; 32] {
        crypto::hmac_sha256(&self.token_hmac_key, token)
    }

    pub fn new(now: DateTime<Utc>, alg: Algorithm) -> Self {
        let mut terms = BTreeMap::new();
        terms.insert(
            1,
            Term {
                key: Key::generate(),
                installed_at: now,
                encryptions: 0,
            },
        );
        Keyring::build(terms, 1, alg)
    }

    pub fn active_term(&self) -> u32 {
        self.active
    }
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }
    pub fn installed_at(&self) -> String {
        self.terms
            .get(&self.active)
            .map(|t| rfc3339(t.installed_at))
            .unwrap_or_default()
    }
    pub fn term_count(&self) -> usize {
        self.terms.len()
    }

    /// Encryptions under the active term so far (at least; see the module docs).
    pub fn encryptions(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The bound in the stored keyring for the active term.
    pub fn stored_encryptions(&self) -> u64 {
        self.stored.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub(crate) fn add_encryptions(&self, n: u64) {
        self.count.fetch_add(n, Ordering::Relaxed);
    }

    /// Records that an envelope from `to_envelope` (with this `bound`) is now durable.
    pub fn note_stored(&self, bound: u64) {
        self.stored.fetch_max(bound, Ordering::Relaxed);
    }

    /// A new keyring with one more term, active from now on.
    pub fn rotated(&self, now: DateTime<Utc>) -> Keyring {
        let mut terms = BTreeMap::new();
        for (n, t) in &self.terms {
            let encryptions = if *n == self.active {
                self.encryptions()
            } else {
                t.encryptions
            };
            terms.insert(
                *n,
                Term {
                    key: t.key.clone(),
                    installed_at: t.installed_at,
                    encryptions,
                },
            );
        }
        let next = self.active + 1;
        terms.insert(
            next,
            Term {
                key: Key::generate(),
                installed_at: now,
                encryptions: 0,
            },
        );
        Keyring::build(terms, next, self.alg)
    }

    /// Encrypts a value for `loc` under the active term's subkey for `purpose`.
    pub fn seal(&self, purpose: &str, loc: &Location<'_>, plaintext: &[u8]) -> Vec<u8> {
        // invariant: `active` is always a key of `terms` (set together in every constructor)
        let term = &self.terms[&self.active];
        let sub = crypto::derive(&term.key, purpose, loc.mount, loc.path);
        self.count.fetch_add(1, Ordering::Relaxed);
        crypto::seal(self.alg, self.active, &sub, loc, plaintext)
    }

    /// Decrypts a value written by `seal` with any term of this keyring.
    pub fn open(
        &self,
        purpose: &str,
        loc: &Location<'_>,
        envelope: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let n = crypto::envelope_term(envelope)?;
        let term = self.terms.get(&n).ok_or(CryptoError::UnknownTerm(n))?;
        let sub = crypto::derive(&term.key, purpose, loc.mount, loc.path);
        crypto::open(&sub, loc, envelope)
    }

    /// A stable key for `purpose` (HMAC, signing seeds): derived from term 1.
    pub fn stable_subkey(&self, purpose: &str) -> Key {
        let first = self
            .terms
            .values()
            .next()
            .expect("a keyring always has a term");
        crypto::derive(&first.key, purpose, "", "")
    }

    /// Serializes and encrypts the keyring under the root key, with the active term's
    /// count stored as the live count plus `COUNT_RESERVE` (returned: pass it to
    /// `note_stored` once the envelope is durable).
    pub fn to_envelope(&self, root: &Key) -> (Vec<u8>, u64) {
        let bound = self.encryptions().saturating_add(COUNT_RESERVE);
        let stored = StoredKeyring {
            active: self.active,
            terms: self
                .terms
                .iter()
                .map(|(n, t)| StoredTerm {
                    term: *n,
                    key: B64.encode(t.key.expose()),
                    installed_at: t.installed_at,
                    encryptions: if *n == self.active {
                        bound
                    } else {
                        t.encryptions
                    },
                })
                .collect(),
        };
        let json = Zeroizing::new(serde_json::to_vec(&stored).expect("keyring serializes"));
        for t in stored.terms {
            drop(Zeroizing::new(t.key));
        }
        let sub = crypto::derive(root, label::KEYRING, "sys", "keyring");
        (crypto::seal(self.alg, 0, &sub, &KEYRING_LOC, &json), bound)
    }

    /// Decrypts the keyring with the root key. A wrong root key is `CryptoError::Auth`.
    pub fn from_envelope(
        root: &Key,
        envelope: &[u8],
        alg: Algorithm,
    ) -> Result<Keyring, CryptoError> {
        let sub = crypto::derive(root, label::KEYRING, "sys", "keyring");
        let json = crypto::open(&sub, &KEYRING_LOC, envelope)?;
        let stored: StoredKeyring =
            serde_json::from_slice(&json).map_err(|_| CryptoError::Malformed)?;
        let mut terms = BTreeMap::new();
        for t in stored.terms {
            let raw = Zeroizing::new(
                B64.decode(t.key.as_bytes())
                    .map_err(|_| CryptoError::Malformed)?,
            );
            let key = Key::from_slice(&raw).ok_or(CryptoError::Malformed)?;
            drop(Zeroizing::new(t.key));
            terms.insert(
                t.term,
                Term {
                    key,
                    installed_at: t.installed_at,
                    encryptions: t.encryptions,
                },
            );
        }
        if !terms.contains_key(&stored.active) {
            return Err(CryptoError::Malformed);
        }
        Ok(Keyring::build(terms, stored.active, alg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(v: u64) -> Location<'static> {
        Location::new("kv-data", "secret", "db/prod", v)
    }

    #[test]
    fn old_terms_decrypt_after_rotation_and_new_writes_use_new_term() {
        let now = Utc::now();
        let k1 = Keyring::new(now, Algorithm::XChaCha20Poly1305);
        let old = k1.seal(label::KV, &loc(1), b"v1");
        let k2 = k1.rotated(now);
        assert_eq!(k2.active_term(), 2);
        let new = k2.seal(label::KV, &loc(2), b"v2");
        assert_eq!(crypto::envelope_term(&new).unwrap(), 2);
        assert_eq!(&k2.open(label::KV, &loc(1), &old).unwrap()[..], b"v1");
        assert_eq!(
            k1.open(label::KV, &loc(2), &new).unwrap_err(),
            CryptoError::UnknownTerm(2)
        );
        // HMAC keys are stable across rotation
        assert_eq!(
            k1.stable_subkey(label::TOKEN_HMAC).expose(),
            k2.stable_subkey(label::TOKEN_HMAC).expose()
        );
    }

    #[test]
    fn switching_algorithm_keeps_old_values_readable() {
        let now = Utc::now();
        let x = Keyring::new(now, Algorithm::XChaCha20Poly1305);
        let by_x = x.seal(label::KV, &loc(1), b"chacha");
        // as at a restart with `encryption = "aes-256-gcm"`: the same terms, a new algorithm
        let root = Key::generate();
        let a =
            Keyring::from_envelope(&root, &x.to_envelope(&root).0, Algorithm::Aes256Gcm).unwrap();
        let by_a = a.seal(label::KV, &loc(1), b"aes");
        assert_eq!(&a.open(label::KV, &loc(1), &by_x).unwrap()[..], b"chacha");
        assert_eq!(&x.open(label::KV, &loc(1), &by_a).unwrap()[..], b"aes");
    }

    #[test]
    fn envelope_roundtrip_and_wrong_root() {
        let root = Key::generate();
        let k = Keyring::new(Utc::now(), Algorithm::XChaCha20Poly1305).rotated(Utc::now());
        let (env, _) = k.to_envelope(&root);
        let back = Keyring::from_envelope(&root, &env, Algorithm::XChaCha20Poly1305).unwrap();
        assert_eq!(back.active_term(), 2);
        let v = k.seal(label::KV, &loc(1), b"x");
        assert_eq!(&back.open(label::KV, &loc(1), &v).unwrap()[..], b"x");
        assert!(
            Keyring::from_envelope(&Key::generate(), &env, Algorithm::XChaCha20Poly1305).is_err()
        );
        assert!(!format!("{k:?}").contains(&hex::encode(&root.expose()[..4])));
    }

    #[test]
    fn encryptions_are_counted_and_the_stored_bound_runs_ahead() {
        let root = Key::generate();
        let k = Keyring::new(Utc::now(), Algorithm::Aes256Gcm);
        for i in 0..5 {
            k.seal(label::KV, &loc(i), b"x");
        }
        assert_eq!(k.encryptions(), 5);
        let v = k.seal(label::KV, &loc(9), b"y");
        k.open(label::KV, &loc(9), &v).unwrap();
        assert_eq!(k.encryptions(), 6, "opening counts nothing");
        let (env, bound) = k.to_envelope(&root);
        assert_eq!(bound, 6 + COUNT_RESERVE);
        assert_eq!(k.stored_encryptions(), 0, "not durable yet");
        k.note_stored(bound);
        assert_eq!(k.stored_encryptions(), bound);
        // a restart (or a crash) starts from the bound, never below the real count
        let back = Keyring::from_envelope(&root, &env, Algorithm::Aes256Gcm).unwrap();
        assert_eq!(back.encryptions(), bound);
        assert_eq!(back.stored_encryptions(), bound);
        // a new term counts from 0; the old term keeps its count in the record
        let next = back.rotated(Utc::now());
        assert_eq!(next.encryptions(), 0);
        let (env2, _) = next.to_envelope(&root);
        let again = Keyring::from_envelope(&root, &env2, Algorithm::Aes256Gcm).unwrap();
        assert_eq!(again.encryptions(), COUNT_RESERVE);
        assert_eq!(again.terms[&1].encryptions, bound);
    }

    #[test]
    fn a_keyring_stored_before_counting_opens_with_a_count_of_zero() {
        let root = Key::generate();
        let json = format!(
            r#"{{"active":1,"terms":[{{"term":1,"key":"{}","installed_at":"2026-01-01T00:00:00Z"}}]}}"#,
            B64.encode(Key::generate().expose())
        );
        let sub = crypto::derive(&root, label::KEYRING, "sys", "keyring");
        let env = crypto::seal(
            Algorithm::XChaCha20Poly1305,
            0,
            &sub,
            &KEYRING_LOC,
            json.as_bytes(),
        );
        let k = Keyring::from_envelope(&root, &env, Algorithm::XChaCha20Poly1305).unwrap();
        assert_eq!(k.encryptions(), 0);
        assert_eq!(k.active_term(), 1);
    }
}
