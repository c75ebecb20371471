//! Checkpoint signatures: the signed message, key ids, public key text forms.

use base64::Engine;
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};

use super::AuditError;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the 32 key bytes follow.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The exact bytes a checkpoint's `sig` signs. Every field of the checkpoint that matters is
/// in it, one `name=value` per line after a version tag.
pub fn checkpoint_message(
    seq: u64,
    covers_seq: u64,
    head: &str,
    time: &str,
    next_by_seq: u64,
    key_id: &str,
) -> Vec<u8> {
    format!(
        "arca-audit-checkpoint-v1\nseq={seq}\ncovers_seq={covers_seq}\nhead={head}\n\
         time={time}\nnext_by_seq={next_by_seq}\nkey_id={key_id}\n"
    )
    .into_bytes()
}

/// First 16 hex digits of SHA-256 of the public key: names the key in checkpoints.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// The public key as a standard `-----BEGIN PUBLIC KEY-----` PEM (SubjectPublicKeyInfo,
/// readable by `openssl pkey -pubin`).
pub fn public_key_pem(key: &VerifyingKey) -> String {
    let mut der = SPKI_PREFIX.to_vec();
    der.extend_from_slice(key.as_bytes());
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(der)
    )
}

/// Parses a public key given as the PEM of [`public_key_pem`], 64 hex digits, or the base64
/// of the 32 bytes (surrounding whitespace ignored).
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, AuditError> {
    let bad = |m: &str| AuditError::Invalid(format!("invalid audit public key: {m}"));
    let t = text.trim();
    let bytes: Vec<u8> = if t.starts_with("-----BEGIN") {
        let body: String = t
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .map(str::trim)
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| bad("the PEM body is not base64"))?;
        match der.strip_prefix(&SPKI_PREFIX[..]) {
            Some(k) => k.to_vec(),
            None => return Err(bad("not an Ed25519 public key")),
        }
    } else if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(t).map_err(|_| bad("bad hex"))?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(t)
            .map_err(|_| bad("expected PEM, 64 hex digits or base64"))?
    };
    let arr: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| bad("an Ed25519 key is 32 bytes"))?;
    VerifyingKey::from_bytes(&arr).map_err(|_| bad("not a valid Ed25519 point"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    #[test]
    fn key_text_round_trips() {
        let sk = SigningKey::from_bytes(&[3u8; 32]);
        let vk = sk.verifying_key();
        assert_eq!(parse_public_key(&public_key_pem(&vk)).unwrap(), vk);
        assert_eq!(parse_public_key(&hex::encode(vk.as_bytes())).unwrap(), vk);
        assert!(parse_public_key("nope").is_err());
        assert_eq!(key_id(&vk).len(), 16);
    }
}
