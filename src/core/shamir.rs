//! Shamir k-of-n over GF(256) through vsss-rs (constant-time field arithmetic, no lookup
//! tables). A share is `index byte | 32 bytes`, 33 bytes like OpenBao's.

use vsss_rs::Gf256;
use zeroize::Zeroizing;

use super::crypto::{Key, KEY_LEN};

pub const SHARE_LEN: usize = KEY_LEN + 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShamirError {
    #[error("invalid seal configuration: shares must be at least one")]
    NoShares,
    #[error("invalid seal configuration: threshold must be at least one")]
    NoThreshold,
    #[error("invalid seal configuration: threshold cannot be larger than shares")]
    ThresholdTooLarge,
    #[error("invalid seal configuration: shares cannot be more than 255")]
    TooManyShares,
    #[error("invalid seal configuration: threshold must be greater than one for multiple shares")]
    ThresholdOneOfMany,
    #[error("the shares could not be combined")]
    Combine,
}

pub fn validate(shares: u64, threshold: u64) -> Result<(), ShamirError> {
    if shares == 0 {
        return Err(ShamirError::NoShares);
    }
    if threshold == 0 {
        return Err(ShamirError::NoThreshold);
    }
    if threshold > shares {
        return Err(ShamirError::ThresholdTooLarge);
    }
    if shares > 255 {
        return Err(ShamirError::TooManyShares);
    }
    if threshold == 1 && shares > 1 {
        // Every share would equal the key itself; Vault refuses this too.
        return Err(ShamirError::ThresholdOneOfMany);
    }
    Ok(())
}

/// Splits `key` into `shares` shares, any `threshold` of which recover it.
pub fn split(
    key: &Key,
    shares: usize,
    threshold: usize,
) -> Result<Vec<Zeroizing<Vec<u8>>>, ShamirError> {
    validate(shares as u64, threshold as u64)?;
    if shares == 1 {
        let mut s = Zeroizing::new(Vec::with_capacity(SHARE_LEN));
        s.push(1);
        s.extend_from_slice(key.expose());
        return Ok(vec![s]);
    }
    let out = Gf256::split_array(threshold, shares, key.expose(), rand::rngs::OsRng)
        .map_err(|_| ShamirError::Combine)?;
    Ok(out.into_iter().map(Zeroizing::new).collect())
}

/// Recombines shares. With wrong or foreign shares this yields a wrong key (or an error);
/// the caller detects that by failing to open the keyring, and says nothing about which share.
pub fn combine(shares: &[Zeroizing<Vec<u8>>]) -> Result<Key, ShamirError> {
    if shares.is_empty() || shares.iter().any(|s| s.len() != SHARE_LEN || s[0] == 0) {
        return Err(ShamirError::Combine);
    }
    if shares.len() == 1 {
        return Key::from_slice(&shares[0][1..]).ok_or(ShamirError::Combine);
    }
    let plain: Vec<Vec<u8>> = shares.iter().map(|s| s.to_vec()).collect();
    let res = Gf256::combine_array(&plain);
    for s in plain {
        drop(Zeroizing::new(s));
    }
    let secret = Zeroizing::new(res.map_err(|_| ShamirError::Combine)?);
    Key::from_slice(&secret).ok_or(ShamirError::Combine)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_threshold_subset_recovers() {
        let k = Key::generate();
        let s = split(&k, 5, 3).unwrap();
        assert_eq!(s.len(), 5);
        assert!(s.iter().all(|x| x.len() == SHARE_LEN));
        for (a, b, c) in [(0, 1, 2), (4, 2, 0), (1, 3, 4)] {
            let got = combine(&[s[a].clone(), s[b].clone(), s[c].clone()]).unwrap();
            assert_eq!(got.expose(), k.expose());
        }
    }

    #[test]
    fn too_few_or_foreign_shares_do_not_recover() {
        let k = Key::generate();
        let s = split(&k, 5, 3).unwrap();
        let two = combine(&[s[0].clone(), s[1].clone()]);
        assert!(two.map(|g| g.expose() != k.expose()).unwrap_or(true));
        let other = split(&Key::generate(), 5, 3).unwrap();
        let mixed = combine(&[s[0].clone(), s[1].clone(), other[2].clone()]);
        assert!(mixed.map(|g| g.expose() != k.expose()).unwrap_or(true));
    }

    #[test]
    fn single_share() {
        let k = Key::generate();
        let s = split(&k, 1, 1).unwrap();
        assert_eq!(combine(&s).unwrap().expose(), k.expose());
    }

    #[test]
    fn validation_messages() {
        assert_eq!(validate(0, 0), Err(ShamirError::NoShares));
        assert_eq!(validate(2, 3), Err(ShamirError::ThresholdTooLarge));
        assert_eq!(validate(256, 3), Err(ShamirError::TooManyShares));
        assert!(validate(3, 2).is_ok());
        assert!(combine(&[Zeroizing::new(vec![1u8; 5])]).is_err());
    }
}
