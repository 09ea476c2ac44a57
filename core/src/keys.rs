//! The allow-list of trusted Ed25519 public keys.
//!
//! A valid signature only proves that *someone* holding the private key signed
//! the item. Deployments that care *who* signed configure an allow-list (one
//! comma-separated environment variable / Spin variable); deployments that do
//! not leave it empty and accept any well-formed key.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::VerifyingKey;

/// Allow-list of trusted Ed25519 public keys. Empty = accept any well-formed key.
///
/// Keys are compared by their 32 compressed bytes, so the same key written
/// with different (valid) base64 cannot slip past or be rejected by accident.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedKeys {
    /// Sorted and deduplicated, so equal configurations compare equal.
    keys: Vec<[u8; 32]>,
}

impl TrustedKeys {
    /// The empty allow-list: any well-formed key is accepted.
    pub fn any() -> Self {
        Self { keys: Vec::new() }
    }

    /// Parses a comma-separated list of standard-base64 (padded) public keys.
    ///
    /// Entries are whitespace-trimmed and empty entries are skipped, so that a
    /// configuration value of `""`, `" "` or `","` means [`TrustedKeys::any`]
    /// and a trailing comma is harmless. Every non-empty entry must be a valid
    /// Ed25519 public key; otherwise the whole list is rejected, because
    /// silently dropping a misspelt key would lock its owner out (and accepting
    /// an empty list by mistake would let everybody in).
    pub fn parse(csv: &str) -> Result<Self, KeyListError> {
        let mut keys = Vec::new();
        for (index, entry) in csv.split(',').enumerate() {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let key = decode_public_key(entry).map_err(|reason| KeyListError {
                index,
                entry: abbreviate(entry),
                reason,
            })?;
            keys.push(key.to_bytes());
        }
        keys.sort_unstable();
        keys.dedup();
        Ok(Self { keys })
    }

    /// Builds an allow-list from keys already in hand (tests, tools).
    pub fn from_keys(keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        let mut keys: Vec<[u8; 32]> = keys.into_iter().map(|k| k.to_bytes()).collect();
        keys.sort_unstable();
        keys.dedup();
        Self { keys }
    }

    /// True when no allow-list is configured and every well-formed key is accepted.
    pub fn is_any(&self) -> bool {
        self.keys.is_empty()
    }

    /// Number of distinct trusted keys (0 for [`TrustedKeys::any`]).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Same as [`TrustedKeys::is_any`]; present for the `len`/`is_empty` idiom.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether `key` may sign items under this configuration.
    pub fn allows(&self, key: &VerifyingKey) -> bool {
        self.keys.is_empty() || self.keys.binary_search(&key.to_bytes()).is_ok()
    }
}

/// A bad entry in a trusted-key list.
///
/// Names the entry by its 0-based position among the comma-separated entries
/// (and an abbreviated copy of it) so an operator can find the typo; it is a
/// startup/configuration error, never an item error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyListError {
    /// 0-based position of the entry in the comma-separated list.
    pub index: usize,
    /// The offending entry, trimmed and abbreviated.
    pub entry: String,
    /// Why it was rejected.
    pub reason: String,
}

impl fmt::Display for KeyListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "trusted key list: entry {} ({:?}) is not a valid Ed25519 public key: {}",
            self.index, self.entry, self.reason
        )
    }
}

impl std::error::Error for KeyListError {}

/// Decodes a standard-base64 (padded) Ed25519 public key and rejects keys that
/// cannot sign anything meaningful.
///
/// Shared by the allow-list and by signature checking so that "well-formed
/// key" means the same thing in both places. The `Err` is a human reason.
pub fn decode_public_key(b64: &str) -> Result<VerifyingKey, String> {
    let bytes = STANDARD
        .decode(b64)
        .map_err(|e| format!("not standard base64 with padding ({e})"))?;
    let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        format!(
            "decodes to {} bytes, an Ed25519 public key has 32",
            bytes.len()
        )
    })?;
    let key = VerifyingKey::from_bytes(&bytes)
        .map_err(|_| "not a point on the Ed25519 curve".to_owned())?;
    if key.is_weak() {
        return Err("is a weak (small-order) key".to_owned());
    }
    Ok(key)
}

fn abbreviate(s: &str) -> String {
    if s.chars().count() <= 60 {
        s.to_owned()
    } else {
        s.chars().take(60).collect::<String>() + "…"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn key(seed: u8) -> VerifyingKey {
        SigningKey::from_bytes(&[seed; 32]).verifying_key()
    }

    fn b64(k: &VerifyingKey) -> String {
        STANDARD.encode(k.to_bytes())
    }

    #[test]
    fn empty_and_blank_lists_mean_any() {
        for csv in ["", "   ", ",", " , ,\t,\n"] {
            let t = TrustedKeys::parse(csv).unwrap();
            assert!(t.is_any(), "{csv:?}");
            assert_eq!(t, TrustedKeys::any());
            assert!(t.allows(&key(1)));
        }
    }

    #[test]
    fn keys_are_trimmed_deduplicated_and_enforced() {
        let csv = format!(" {} ,{},\n{} ,", b64(&key(1)), b64(&key(2)), b64(&key(1)));
        let t = TrustedKeys::parse(&csv).unwrap();
        assert_eq!(t.len(), 2);
        assert!(t.allows(&key(1)) && t.allows(&key(2)));
        assert!(!t.allows(&key(3)));
        assert_eq!(t, TrustedKeys::from_keys([key(2), key(1)]));
    }

    #[test]
    fn bad_entry_is_named_by_index() {
        let csv = format!("{}, not-base64!", b64(&key(1)));
        let err = TrustedKeys::parse(&csv).unwrap_err();
        assert_eq!(err.index, 1);
        let text = err.to_string();
        assert!(text.contains("entry 1"), "{text}");
        assert!(text.contains("not-base64!"), "{text}");

        let short = STANDARD.encode([7u8; 16]);
        let err = TrustedKeys::parse(&format!(",,{short}")).unwrap_err();
        assert_eq!(err.index, 2);
        assert!(err.to_string().contains("16 bytes"), "{err}");
    }

    #[test]
    fn weak_keys_are_rejected() {
        // The identity point (y = 1) has small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let err = TrustedKeys::parse(&STANDARD.encode(identity)).unwrap_err();
        assert!(err.reason.contains("weak"), "{err}");
    }
}
