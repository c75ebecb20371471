//! Envelope encryption and key derivation: the only place that touches AEADs and HKDF.
//!
//! Envelope layout (all stored values):
//! `format version (1) | algorithm id (1) | key term (u32 BE) | nonce (24 or 12) | ciphertext+tag`.
//! The AAD is the header plus the length-prefixed storage location (kind, mount, path, version),
//! so a ciphertext moved to another path, version or record kind fails to open.

use aes_gcm::Aes256Gcm;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::XChaCha20Poly1305;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

pub const FORMAT_VERSION: u8 = 1;
pub const KEY_LEN: usize = 32;
const HEADER_LEN: usize = 1 + 1 + 4;

/// HKDF labels: one per purpose, never reused for another.
pub mod label {
    pub const KEYRING: &str = "arca/keyring/v1";
    pub const AUTO_UNSEAL: &str = "arca/auto-unseal/v1";
    pub const KV: &str = "arca/kv/v1";
    pub const TOKEN_HMAC: &str = "arca/token-hmac/v1";
    pub const TOKEN_STORE: &str = "arca/token-store/v1";
    pub const AUDIT_HMAC: &str = "arca/audit-hmac/v1";
    pub const AUDIT_SIGNING: &str = "arca/audit-signing/v1";
    pub const SYS: &str = "arca/sys/v1";
}

/// A 256-bit key that zeroizes on drop and never prints.
#[derive(Clone)]
pub struct Key(Zeroizing<[u8; KEY_LEN]>);

impl Key {
    pub fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; KEY_LEN]);
        rand::rngs::OsRng.fill_bytes(&mut k[..]);
        Key(k)
    }
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        let arr: [u8; KEY_LEN] = b.try_into().ok()?;
        Some(Key(Zeroizing::new(arr)))
    }
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// The AEAD used for new envelopes. Both stay readable whatever is configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Algorithm {
    #[serde(rename = "xchacha20-poly1305")]
    XChaCha20Poly1305,
    #[serde(rename = "aes-256-gcm")]
    Aes256Gcm,
}

impl Algorithm {
    fn id(self) -> u8 {
        match self {
            Algorithm::XChaCha20Poly1305 => 1,
            Algorithm::Aes256Gcm => 2,
        }
    }
    fn from_id(id: u8) -> Option<Self> {
        match id {
            1 => Some(Algorithm::XChaCha20Poly1305),
            2 => Some(Algorithm::Aes256Gcm),
            _ => None,
        }
    }
    fn nonce_len(self) -> usize {
        match self {
            Algorithm::XChaCha20Poly1305 => 24,
            Algorithm::Aes256Gcm => 12,
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "xchacha20-poly1305" => Some(Algorithm::XChaCha20Poly1305),
            "aes-256-gcm" => Some(Algorithm::Aes256Gcm),
            _ => None,
        }
    }
}

/// Where a value is stored; bound into the AAD.
#[derive(Clone, Copy, Debug)]
pub struct Location<'a> {
    pub kind: &'a str,
    pub mount: &'a str,
    pub path: &'a str,
    pub version: u64,
}

impl<'a> Location<'a> {
    pub fn new(kind: &'a str, mount: &'a str, path: &'a str, version: u64) -> Self {
        Location {
            kind,
            mount,
            path,
            version,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("envelope is malformed")]
    Malformed,
    #[error("envelope uses an unknown format or algorithm")]
    Unsupported,
    #[error("key term {0} is not in the keyring")]
    UnknownTerm(u32),
    #[error("envelope failed authentication")]
    Auth,
}

fn push_lp(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

fn aad(header: &[u8], loc: &Location<'_>) -> Vec<u8> {
    let mut a = Vec::with_capacity(header.len() + 32 + loc.path.len());
    a.extend_from_slice(header);
    push_lp(&mut a, loc.kind.as_bytes());
    push_lp(&mut a, loc.mount.as_bytes());
    push_lp(&mut a, loc.path.as_bytes());
    a.extend_from_slice(&loc.version.to_be_bytes());
    a
}

/// HKDF-SHA256 (RFC 5869), extract-then-expand.
pub fn hkdf_sha256(salt: Option<&[u8]>, ikm: &[u8], info: &[u8], out: &mut [u8]) {
    let hk = Hkdf::<Sha256>::new(salt, ikm);
    // `expand` only fails when out.len() > 255 * 32; all callers ask for 32 bytes.
    hk.expand(info, out)
        .expect("HKDF output length within 255*HashLen");
}

/// Per-purpose subkey: HKDF(term key, info = lp(label) | lp(mount) | lp(path)).
pub fn derive(key: &Key, label: &str, mount: &str, path: &str) -> Key {
    let mut info = Vec::with_capacity(16 + label.len() + mount.len() + path.len());
    push_lp(&mut info, label.as_bytes());
    push_lp(&mut info, mount.as_bytes());
    push_lp(&mut info, path.as_bytes());
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    hkdf_sha256(None, key.expose(), &info, &mut out[..]);
    Key(out)
}

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac_sha256(key: &Key, data: &[u8]) -> [u8; 32] {
    let mut m =
        <Hmac<Sha256> as Mac>::new_from_slice(key.expose()).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

/// Encrypts `plaintext` with `key` (already the right subkey) for `loc`.
pub fn seal(alg: Algorithm, term: u32, key: &Key, loc: &Location<'_>, plaintext: &[u8]) -> Vec<u8> {
    let nlen = alg.nonce_len();
    let mut out = Vec::with_capacity(HEADER_LEN + nlen + plaintext.len() + 16);
    out.push(FORMAT_VERSION);
    out.push(alg.id());
    out.extend_from_slice(&term.to_be_bytes());
    let mut nonce = [0u8; 24];
    // The thread's CSPRNG (ChaCha12, seeded and periodically reseeded from the OS): a nonce
    // needs uniqueness and unpredictability, not a system call per value.
    rand::thread_rng().fill_bytes(&mut nonce[..nlen]);
    out.extend_from_slice(&nonce[..nlen]);
    let aad = aad(&out[..HEADER_LEN], loc);
    let payload = Payload {
        msg: plaintext,
        aad: &aad,
    };
    let ct = match alg {
        Algorithm::XChaCha20Poly1305 => {
            XChaCha20Poly1305::new(key.expose().into()).encrypt(nonce[..24].into(), payload)
        }
        Algorithm::Aes256Gcm => {
            Aes256Gcm::new(key.expose().into()).encrypt(nonce[..12].into(), payload)
        }
    }
    // Encryption with a valid key and in-memory buffers cannot fail.
    .expect("AEAD encryption");
    out.extend_from_slice(&ct);
    out
}

/// Reads the key term of an envelope without decrypting it.
pub fn envelope_term(envelope: &[u8]) -> Result<u32, CryptoError> {
    if envelope.len() < HEADER_LEN {
        return Err(CryptoError::Malformed);
    }
    if envelope[0] != FORMAT_VERSION {
        return Err(CryptoError::Unsupported);
    }
    Ok(u32::from_be_bytes([
        envelope[2],
        envelope[3],
        envelope[4],
        envelope[5],
    ]))
}

/// Decrypts an envelope with `key` (the subkey of the envelope's term) for `loc`.
pub fn open(
    key: &Key,
    loc: &Location<'_>,
    envelope: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    envelope_term(envelope)?;
    let alg = Algorithm::from_id(envelope[1]).ok_or(CryptoError::Unsupported)?;
    let nlen = alg.nonce_len();
    if envelope.len() < HEADER_LEN + nlen + 16 {
        return Err(CryptoError::Malformed);
    }
    let nonce = &envelope[HEADER_LEN..HEADER_LEN + nlen];
    let aad = aad(&envelope[..HEADER_LEN], loc);
    let payload = Payload {
        msg: &envelope[HEADER_LEN + nlen..],
        aad: &aad,
    };
    let pt = match alg {
        Algorithm::XChaCha20Poly1305 => {
            XChaCha20Poly1305::new(key.expose().into()).decrypt(nonce.into(), payload)
        }
        Algorithm::Aes256Gcm => Aes256Gcm::new(key.expose().into()).decrypt(nonce.into(), payload),
    }
    .map_err(|_| CryptoError::Auth)?;
    Ok(Zeroizing::new(pt))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(path: &str, v: u64) -> Location<'_> {
        Location::new("kv-data", "secret", path, v)
    }

    #[test]
    fn rfc5869_test_case_1() {
        let ikm = [0x0bu8; 22];
        let salt = hex::decode("000102030405060708090a0b0c").unwrap();
        let info = hex::decode("f0f1f2f3f4f5f6f7f8f9").unwrap();
        let mut okm = [0u8; 42];
        hkdf_sha256(Some(&salt), &ikm, &info, &mut okm);
        assert_eq!(
            hex::encode(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }

    #[test]
    fn rfc5869_test_case_3_no_salt_no_info() {
        let ikm = [0x0bu8; 22];
        let mut okm = [0u8; 42];
        hkdf_sha256(None, &ikm, &[], &mut okm);
        assert_eq!(
            hex::encode(okm),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
        );
    }

    #[test]
    fn derive_separates_labels_mounts_and_paths() {
        let k = Key::generate();
        let a = derive(&k, label::KV, "secret", "a/b");
        assert_eq!(a.expose(), derive(&k, label::KV, "secret", "a/b").expose());
        assert_ne!(
            a.expose(),
            derive(&k, label::TOKEN_HMAC, "secret", "a/b").expose()
        );
        assert_ne!(a.expose(), derive(&k, label::KV, "secret2", "a/b").expose());
        // length prefixes: ("ab","c") and ("a","bc") must differ
        assert_ne!(
            derive(&k, label::KV, "ab", "c").expose(),
            derive(&k, label::KV, "a", "bc").expose()
        );
    }

    #[test]
    fn roundtrip_both_algorithms() {
        let k = Key::generate();
        for alg in [Algorithm::XChaCha20Poly1305, Algorithm::Aes256Gcm] {
            let env = seal(alg, 7, &k, &loc("db/prod", 3), b"hunter2");
            assert_eq!(envelope_term(&env).unwrap(), 7);
            assert_eq!(&open(&k, &loc("db/prod", 3), &env).unwrap()[..], b"hunter2");
            assert!(!env.windows(7).any(|w| w == b"hunter2"));
        }
    }

    #[test]
    fn moved_ciphertext_fails() {
        let k = Key::generate();
        let env = seal(
            Algorithm::XChaCha20Poly1305,
            1,
            &k,
            &loc("db/prod", 3),
            b"x",
        );
        assert_eq!(open(&k, &loc("db/dev", 3), &env), Err(CryptoError::Auth));
        assert_eq!(open(&k, &loc("db/prod", 2), &env), Err(CryptoError::Auth));
        let other_kind = Location::new("kv-meta", "secret", "db/prod", 3);
        assert_eq!(open(&k, &other_kind, &env), Err(CryptoError::Auth));
        let other_mount = Location::new("kv-data", "other", "db/prod", 3);
        assert_eq!(open(&k, &other_mount, &env), Err(CryptoError::Auth));
    }

    #[test]
    fn every_flipped_byte_fails() {
        let k = Key::generate();
        for alg in [Algorithm::XChaCha20Poly1305, Algorithm::Aes256Gcm] {
            let env = seal(alg, 1, &k, &loc("p", 1), b"some secret value");
            for i in 0..env.len() {
                for bit in [0x01u8, 0x80] {
                    let mut bad = env.clone();
                    bad[i] ^= bit;
                    assert!(
                        open(&k, &loc("p", 1), &bad).is_err(),
                        "byte {i} bit {bit:#x} accepted"
                    );
                }
            }
            assert!(open(&k, &loc("p", 1), &env[..env.len() - 1]).is_err());
            assert!(open(&k, &loc("p", 1), &env[..3]).is_err());
        }
    }

    #[test]
    fn wrong_key_fails() {
        let env = seal(
            Algorithm::Aes256Gcm,
            1,
            &Key::generate(),
            &loc("p", 1),
            b"x",
        );
        assert_eq!(
            open(&Key::generate(), &loc("p", 1), &env),
            Err(CryptoError::Auth)
        );
    }

    #[test]
    fn keys_do_not_debug_print() {
        let k = Key::from_slice(&[0xAB; 32]).unwrap();
        let s = format!("{k:?}");
        assert!(!s.contains("ab") && !s.contains("171"), "{s}");
    }
}
