//! The keys and the sealing of bytes: XChaCha20-Poly1305 (RustCrypto), 32-byte keys.
//!
//! - A [`MasterKey`] wraps data keys (random nonce, associated data naming what the
//!   wrapped key is for) and never touches event data.
//! - A [`DataKey`] belongs to one subject and seals that subject's personal values.
//!   Its nonces are *synthetic*: an HMAC-SHA-256, under a key derived from the data
//!   key, of the associated data and the plaintext. The associated data holds the
//!   event id, which is unique, so no two different messages share a nonce; and the
//!   same event sent twice (an idempotent re-send, with its id) seals to the same
//!   bytes, which the store's re-send check needs (it compares what was sent with
//!   what is stored).

use std::sync::Arc;

use chacha20poly1305::aead::{Aead, AeadInOut, KeyInit, Payload};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use eventfold_core::{Error, Result};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

/// Bytes of a key (master or data key).
pub const KEY_BYTES: usize = 32;
/// Bytes of a nonce.
pub const NONCE_BYTES: usize = 24;
/// Bytes the authentication tag adds to a sealed message.
pub const TAG_BYTES: usize = 16;

/// Fresh random bytes from the operating system.
pub(crate) fn random<const N: usize>() -> Result<Zeroizing<[u8; N]>> {
    let mut bytes = Zeroizing::new([0u8; N]);
    getrandom::fill(bytes.as_mut_slice()).map_err(|e| {
        Error::Backend(format!(
            "the operating system gave no random bytes for a key or nonce: {e}"
        ))
    })?;
    Ok(bytes)
}

/// The key that wraps every data key of a key store. It is given from outside (a file,
/// an environment variable) or created once beside the data directory's log; it is
/// never written into the log or the key store.
///
/// ```
/// use eventfold_privacy::MasterKey;
/// let key = MasterKey::from_hex(&"ab".repeat(32)).unwrap();
/// assert!(MasterKey::from_hex("abc").is_err());
/// # let _ = key;
/// ```
#[derive(Clone)]
pub struct MasterKey {
    cipher: Arc<XChaCha20Poly1305>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// A master key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; KEY_BYTES]) -> MasterKey {
        MasterKey {
            cipher: Arc::new(XChaCha20Poly1305::new(&(*bytes).into())),
        }
    }

    /// A master key from 64 hexadecimal digits (surrounding white space ignored).
    pub fn from_hex(text: &str) -> Result<MasterKey> {
        let mut bytes = Zeroizing::new([0u8; KEY_BYTES]);
        hex::decode_to_slice(text.trim(), bytes.as_mut_slice()).map_err(|e| {
            Error::InvalidSetting {
                setting: "master_key".into(),
                reason: format!(
                    "a master key is {} hexadecimal digits (32 bytes): {e}",
                    KEY_BYTES * 2
                ),
            }
        })?;
        Ok(MasterKey::from_bytes(&bytes))
    }

    /// A new random master key and its hexadecimal text (to be stored by the caller).
    pub fn generate() -> Result<(MasterKey, Zeroizing<String>)> {
        let bytes = random::<KEY_BYTES>()?;
        Ok((
            MasterKey::from_bytes(&bytes),
            Zeroizing::new(hex::encode(bytes.as_slice())),
        ))
    }

    /// `key` wrapped for the subject whose digest is `digest` ([`subject_digest`]): what
    /// a key store keeps. It opens only with this master key and this digest.
    pub fn wrap_data_key(&self, digest: &[u8; 32], key: &[u8; KEY_BYTES]) -> Result<Vec<u8>> {
        self.wrap(key, digest)
    }

    /// The data key [`MasterKey::wrap_data_key`] wrapped; `None` when it does not open
    /// (another master key, another subject, or damaged bytes).
    pub fn unwrap_data_key(&self, digest: &[u8; 32], wrapped: &[u8]) -> Option<DataKey> {
        let bytes = self.unwrap_bytes(wrapped, digest)?;
        let bytes: &[u8; KEY_BYTES] = bytes.as_slice().try_into().ok()?;
        Some(DataKey::from_bytes(bytes))
    }

    /// A value a key store keeps to tell, when it is opened, whether it is given the
    /// master key it was created with ([`MasterKey::opens_check_value`]).
    pub fn check_value(&self) -> Result<Vec<u8>> {
        self.wrap(CHECK_PLAINTEXT, CHECK_PLAINTEXT)
    }

    /// Whether `value` was made by [`MasterKey::check_value`] of this master key.
    pub fn opens_check_value(&self, value: &[u8]) -> bool {
        self.unwrap_bytes(value, CHECK_PLAINTEXT)
            .is_some_and(|v| v.as_slice() == CHECK_PLAINTEXT)
    }

    /// `plaintext` sealed with a random nonce: nonce, then ciphertext and tag.
    pub(crate) fn wrap(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let nonce = random::<NONCE_BYTES>()?;
        seal_with(&self.cipher, nonce.as_slice(), plaintext, aad)
    }

    /// What [`MasterKey::wrap`] sealed; `None` when it does not open (another master
    /// key, other associated data, or damaged bytes).
    pub(crate) fn unwrap_bytes(&self, sealed: &[u8], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        open_with(&self.cipher, sealed, aad)
    }
}

/// One subject's data key, ready to seal and open that subject's personal values.
#[derive(Clone)]
pub struct DataKey {
    inner: Arc<DataKeyInner>,
}

struct DataKeyInner {
    cipher: XChaCha20Poly1305,
    /// The HMAC of the synthetic nonces, keyed with a key derived from the data key
    /// (kept keyed: each seal starts from a copy of it).
    nonce_mac: Hmac<Sha256>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// A data key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; KEY_BYTES]) -> DataKey {
        let mut nonce_key = Zeroizing::new([0u8; KEY_BYTES]);
        let mut hasher = Sha256::new();
        hasher.update(b"eventfold synthetic nonce key v1\0");
        hasher.update(bytes);
        nonce_key.copy_from_slice(&hasher.finalize());
        // HMAC pads a key shorter than its block (64 bytes) with zeros: keying it with
        // the padded block is keying it with the 32 bytes themselves.
        let mut block = Zeroizing::new([0u8; 64]);
        block[..KEY_BYTES].copy_from_slice(nonce_key.as_slice());
        let nonce_mac = <Hmac<Sha256> as KeyInit>::new(&(*block).into());
        DataKey {
            inner: Arc::new(DataKeyInner {
                cipher: XChaCha20Poly1305::new(&(*bytes).into()),
                nonce_mac,
            }),
        }
    }

    /// A new random data key and its bytes (to be wrapped by the key store).
    pub fn generate() -> Result<(DataKey, Zeroizing<[u8; KEY_BYTES]>)> {
        let bytes = random::<KEY_BYTES>()?;
        Ok((DataKey::from_bytes(&bytes), bytes))
    }

    /// `plaintext` sealed under the synthetic nonce of (`aad`, `plaintext`): nonce,
    /// then ciphertext and tag.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let mut mac = self.inner.nonce_mac.clone();
        mac.update(&(aad.len() as u64).to_le_bytes());
        mac.update(aad);
        mac.update(plaintext);
        let tag = mac.finalize().into_bytes();
        seal_with(&self.inner.cipher, &tag[..NONCE_BYTES], plaintext, aad)
    }

    /// Opens what [`DataKey::seal`] sealed in `buffer` itself, leaving the plaintext
    /// there; whether it opened (when not: another key, other associated data, such as
    /// a value moved to another event or field, or damaged bytes; `buffer` then holds
    /// no plaintext).
    pub fn open_in_place(&self, buffer: &mut Vec<u8>, aad: &[u8]) -> bool {
        if buffer.len() < NONCE_BYTES + TAG_BYTES {
            return false;
        }
        let (nonce, rest) = buffer.split_at_mut(NONCE_BYTES);
        let (message, tag) = rest.split_at_mut(rest.len() - TAG_BYTES);
        let (Ok(nonce), Ok(tag)) = (XNonce::try_from(&*nonce), Tag::try_from(&*tag)) else {
            return false;
        };
        let length = message.len();
        let opened = self
            .inner
            .cipher
            .decrypt_inout_detached(&nonce, aad, message.into(), &tag)
            .is_ok();
        if opened {
            buffer.copy_within(NONCE_BYTES..NONCE_BYTES + length, 0);
            buffer[length..].zeroize();
            buffer.truncate(length);
        } else {
            buffer.clear();
        }
        opened
    }
}

fn seal_with(
    cipher: &XChaCha20Poly1305,
    nonce: &[u8],
    plaintext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>> {
    let nonce = XNonce::try_from(nonce)
        .map_err(|_| Error::Backend("a nonce of the wrong length".into()))?;
    let ciphertext = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| Error::Backend("XChaCha20-Poly1305 refused to seal a value".into()))?;
    let mut sealed = Vec::with_capacity(NONCE_BYTES + ciphertext.len());
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(&ciphertext);
    Ok(sealed)
}

fn open_with(cipher: &XChaCha20Poly1305, sealed: &[u8], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < NONCE_BYTES + TAG_BYTES {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
    let nonce = XNonce::try_from(nonce).ok()?;
    cipher
        .decrypt(
            &nonce,
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
        .map(Zeroizing::new)
}

/// What a key store's check value seals.
const CHECK_PLAINTEXT: &[u8] = b"eventfold key store check";

/// The digest a key store files a subject under (its id itself is not kept there).
pub fn subject_digest(subject: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"eventfold subject v1\0");
    hasher.update(subject.as_bytes());
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_key_seals_the_same_message_to_the_same_bytes_and_binds_the_associated_data() {
        let (key, _) = DataKey::generate().unwrap();
        let a = key.seal(b"alice@example.com", b"event-1/email").unwrap();
        assert_eq!(a, key.seal(b"alice@example.com", b"event-1/email").unwrap());
        assert_ne!(a, key.seal(b"alice@example.com", b"event-2/email").unwrap());
        let opened = |key: &DataKey, aad: &[u8]| {
            let mut buffer = a.clone();
            key.open_in_place(&mut buffer, aad).then_some(buffer)
        };
        assert_eq!(
            opened(&key, b"event-1/email").unwrap(),
            b"alice@example.com"
        );
        assert!(opened(&key, b"event-2/email").is_none());
        let (other, _) = DataKey::generate().unwrap();
        assert!(opened(&other, b"event-1/email").is_none());
    }

    #[test]
    fn a_master_key_wraps_with_fresh_nonces() {
        let (master, _) = MasterKey::generate().unwrap();
        let a = master.wrap(b"key", b"aad").unwrap();
        let b = master.wrap(b"key", b"aad").unwrap();
        assert_ne!(a, b);
        assert_eq!(master.unwrap_bytes(&b, b"aad").unwrap().as_slice(), b"key");
        let (other, _) = MasterKey::generate().unwrap();
        assert!(other.unwrap_bytes(&a, b"aad").is_none());
    }
}
