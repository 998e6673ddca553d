//! Ed25519 signing keys of the receipt issuer and their key ids.
//!
//! A key id is the first 16 lowercase hex characters (64 bits) of the BLAKE3 digest of the
//! 32-byte Ed25519 public key: `key_id = hex(blake3(public_key))[..16]`. It is derived, not
//! assigned, so anyone holding the public key can recompute it.
use ed25519_dalek::Signer;
use rand_core::OsRng;

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// The key id of an Ed25519 public key: the first 16 hex characters of BLAKE3(public key).
pub fn key_id_of(public_key: &[u8; 32]) -> String {
    let digest = blake3::hash(public_key);
    hex(&digest.as_bytes()[..8])
}

/// An Ed25519 signing key (RFC 8032, pure Ed25519, no prehash or context).
///
/// `Debug` prints only the key id; the seed never appears in logs.
#[derive(Clone)]
pub struct SigningKey {
    inner: ed25519_dalek::SigningKey,
    key_id: String,
}

impl SigningKey {
    /// A fresh key from the operating system's CSPRNG (getrandom).
    pub fn generate() -> Self {
        Self::wrap(ed25519_dalek::SigningKey::generate(&mut OsRng))
    }

    /// The key whose 32-byte secret seed (RFC 8032 "private key") is `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self::wrap(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    fn wrap(inner: ed25519_dalek::SigningKey) -> Self {
        let key_id = key_id_of(inner.verifying_key().as_bytes());
        Self { inner, key_id }
    }

    /// The 32-byte secret seed (store it with restrictive permissions).
    pub fn seed(&self) -> [u8; 32] {
        self.inner.to_bytes()
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.inner.verifying_key().to_bytes()
    }

    /// `hex(blake3(public_key))[..16]`, see the module docs.
    pub fn key_id(&self) -> String {
        self.key_id.clone()
    }

    pub(crate) fn key_id_str(&self) -> &str {
        &self.key_id
    }

    /// The 64-byte Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.inner.sign(message).to_bytes()
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}
