//! New credentials: passwords from character classes, or random bytes as hex/base64.

use base64::Engine;
use rand::rngs::OsRng;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::Secret;

pub const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
pub const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
pub const DIGITS: &str = "0123456789";
/// Symbols that survive URLs, shells in double quotes and connection strings reasonably well.
pub const SYMBOLS: &str = "!#%*+-.:=?@^_~";

pub const MIN_LENGTH: usize = 8;
pub const MAX_LENGTH: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Generator {
    /// A password of `length` characters with at least one of each enabled class, minus the
    /// characters in `exclude`.
    Password {
        length: usize,
        lower: bool,
        upper: bool,
        digits: bool,
        symbols: bool,
        exclude: String,
    },
    /// `length` random bytes, encoded as `hex` or `base64`.
    Bytes { length: usize, encoding: String },
}

impl Default for Generator {
    fn default() -> Self {
        Generator::Password {
            length: 32,
            lower: true,
            upper: true,
            digits: true,
            symbols: false,
            exclude: String::new(),
        }
    }
}

impl Generator {
    /// The enabled classes after exclusions (empty classes dropped).
    fn classes(&self) -> Vec<Vec<char>> {
        let Generator::Password {
            lower,
            upper,
            digits,
            symbols,
            exclude,
            ..
        } = self
        else {
            return Vec::new();
        };
        [
            (*lower, LOWER),
            (*upper, UPPER),
            (*digits, DIGITS),
            (*symbols, SYMBOLS),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, set)| set.chars().filter(|c| !exclude.contains(*c)).collect())
        .filter(|v: &Vec<char>| !v.is_empty())
        .collect()
    }

    pub fn validate(&self) -> Result<(), String> {
        match self {
            Generator::Password {
                length,
                lower,
                upper,
                digits,
                symbols,
                ..
            } => {
                if !(MIN_LENGTH..=MAX_LENGTH).contains(length) {
                    return Err(format!(
                        "generator.length must be between {MIN_LENGTH} and {MAX_LENGTH}"
                    ));
                }
                if !(*lower || *upper || *digits || *symbols) {
                    return Err("generator: enable at least one character class".into());
                }
                let classes = self.classes();
                if classes.is_empty() {
                    return Err("generator.exclude removes every allowed character".into());
                }
                if classes.len() > *length {
                    return Err("generator.length is shorter than the number of classes".into());
                }
                Ok(())
            }
            Generator::Bytes { length, encoding } => {
                if !(MIN_LENGTH..=MAX_LENGTH).contains(length) {
                    return Err(format!(
                        "generator.length must be between {MIN_LENGTH} and {MAX_LENGTH}"
                    ));
                }
                if !matches!(encoding.as_str(), "hex" | "base64") {
                    return Err("generator.encoding must be \"hex\" or \"base64\"".into());
                }
                Ok(())
            }
        }
    }

    /// A fresh credential from the OS random generator. The generator must be valid.
    pub fn generate(&self) -> Secret {
        let mut rng = OsRng;
        match self {
            Generator::Password { length, .. } => {
                let classes = self.classes();
                let all: Vec<char> = classes.iter().flatten().copied().collect();
                if all.is_empty() {
                    // Unreachable for a validated generator; fall back to bytes rather than panic.
                    return Secret::new(hex::encode(rng.gen::<[u8; 16]>()));
                }
                let mut out: Vec<char> = classes
                    .iter()
                    .map(|c| c[rng.gen_range(0..c.len())])
                    .collect();
                while out.len() < *length {
                    out.push(all[rng.gen_range(0..all.len())]);
                }
                out.shuffle(&mut rng);
                let s: String = out.iter().collect();
                out.iter_mut().for_each(|c| *c = '\0');
                Secret::new(s)
            }
            Generator::Bytes { length, encoding } => {
                let mut b = zeroize::Zeroizing::new(vec![0u8; *length]);
                rng.fill(&mut b[..]);
                Secret::new(if encoding == "hex" {
                    hex::encode(&b[..])
                } else {
                    base64::engine::general_purpose::STANDARD.encode(&b[..])
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_have_every_class_and_no_excluded_char() {
        let g = Generator::Password {
            length: 12,
            lower: true,
            upper: true,
            digits: true,
            symbols: true,
            exclude: "aA0!".into(),
        };
        g.validate().unwrap();
        for _ in 0..200 {
            let p = g.generate();
            let s = p.expose();
            assert_eq!(s.chars().count(), 12);
            assert!(s.chars().any(|c| c.is_ascii_lowercase()));
            assert!(s.chars().any(|c| c.is_ascii_uppercase()));
            assert!(s.chars().any(|c| c.is_ascii_digit()));
            assert!(s.chars().any(|c| SYMBOLS.contains(c)));
            assert!(!s.contains(['a', 'A', '0', '!']));
        }
    }

    #[test]
    fn bytes_and_validation() {
        let g = Generator::Bytes {
            length: 16,
            encoding: "hex".into(),
        };
        assert_eq!(g.generate().expose().len(), 32);
        let g = Generator::Bytes {
            length: 16,
            encoding: "base64".into(),
        };
        assert_eq!(g.generate().expose().len(), 24);
        assert!(Generator::Bytes {
            length: 4,
            encoding: "hex".into()
        }
        .validate()
        .is_err());
        assert!(Generator::Password {
            length: 10,
            lower: false,
            upper: false,
            digits: true,
            symbols: false,
            exclude: DIGITS.into()
        }
        .validate()
        .is_err());
    }
}
