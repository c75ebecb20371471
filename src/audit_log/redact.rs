//! Redaction: every leaf value becomes `hmac-sha256:<hex>` under the audit key.

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Canonical JSON text of `v`: no whitespace, object keys sorted (whatever the map order),
/// strings escaped as serde_json does, numbers as serde_json prints them.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                write_canonical(&m[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// `hmac-sha256:<hex>` of the canonical JSON text of `v` under `key`. The JSON text is
/// hashed, not the bare content, so the type counts: `1`, `"1"`, `1.0` and `true` all
/// differ, and `"abc"` is the HMAC of the 5 bytes `"abc"` with their quotes. This is what
/// `sys/audit-hash` returns for a value, so an auditor can search the journal for it.
pub fn hmac_value(key: &[u8; 32], v: &Value) -> String {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(canonical_json(v).as_bytes());
    format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
}

/// Replaces every leaf of `value` (string, number, boolean, null; inside objects and arrays,
/// element by element) with [`hmac_value`]; object keys and the shape are kept. A scalar
/// passed alone is replaced as a whole.
pub fn redact(value: &Value, key: &[u8; 32]) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), redact(v, key)))
                .collect::<Map<String, Value>>(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|v| redact(v, key)).collect()),
        leaf => Value::String(hmac_value(key, leaf)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const K: [u8; 32] = [7u8; 32];

    #[test]
    fn types_differ_and_keys_stay() {
        let a = hmac_value(&K, &json!(1));
        let b = hmac_value(&K, &json!("1"));
        let c = hmac_value(&K, &json!(true));
        let d = hmac_value(&K, &json!(null));
        assert!(a.starts_with("hmac-sha256:") && a.len() == 12 + 64);
        assert!(a != b && b != c && c != d && a != d);
        let r = redact(
            &json!({"password": "x", "n": [1, "1", null, {"deep": false}]}),
            &K,
        );
        assert_eq!(r["password"], json!(hmac_value(&K, &json!("x"))));
        assert_eq!(r["n"][0], json!(a));
        assert_eq!(r["n"][1], json!(b));
        assert_eq!(r["n"][3]["deep"], json!(hmac_value(&K, &json!(false))));
        assert_ne!(hmac_value(&[8u8; 32], &json!(1)), a);
    }

    #[test]
    fn canonical_sorts_keys() {
        assert_eq!(
            canonical_json(&json!({"b": 1, "a": [true, "x\n"]})),
            r#"{"a":[true,"x\n"],"b":1}"#
        );
    }
}
