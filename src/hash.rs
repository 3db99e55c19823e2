//! Content hashes: the identity of specs and their inputs.
//!
//! Same hash, no work: a spec hash covers the canonical spec JSON (keys sorted,
//! locations dropped, `${VAR}` unresolved) plus the hashes of its inputs, as DVC
//! and Nix do. Inputs are hashed before they are acted on, and what is recorded is
//! the hash of the exact bytes that were used.

/// Hex BLAKE3 of bytes.
pub fn hash_bytes(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Hash of a JSON value in canonical form (object keys sorted).
pub fn hash_json(value: &serde_json::Value) -> String {
    hash_bytes(value.to_string().as_bytes())
}

/// Hash of several parts, order-sensitive and unambiguous.
pub fn hash_parts<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// Hash of a file's bytes, streamed.
pub fn hash_file(path: &std::path::Path) -> std::io::Result<String> {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(path)?)?;
    Ok(h.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_ignores_key_order() {
        let a: serde_json::Value = serde_json::from_str(r#"{"a":1,"b":[1,2]}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{"b":[1,2],"a":1}"#).unwrap();
        assert_eq!(hash_json(&a), hash_json(&b));
        assert_ne!(hash_parts(["ab", "c"]), hash_parts(["a", "bc"]));
    }
}
