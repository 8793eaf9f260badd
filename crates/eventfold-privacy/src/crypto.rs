//! The keys and the sealing of bytes (RustCrypto AEADs), 32-byte keys.
//!
//! - A [`MasterKey`] wraps data keys with XChaCha20-Poly1305 (random nonce, associated
//!   data naming what the wrapped key is for) and never touches event data.
//! - A [`DataKey`] belongs to one subject and seals that subject's personal values with
//!   AES-256-GCM-SIV (RFC 8452), under a key derived from the data key. Its nonce is
//!   taken from the event id and is not stored; GCM-SIV derives its IV from the
//!   associated data (which holds the whole event id and the field) and the plaintext,
//!   so even two values under one nonce only show whether they were the same message
//!   bound to the same event and field. The same event sent twice (an idempotent
//!   re-send, with its id) seals to the same bytes, which the store's re-send check
//!   needs (it compares what was sent with what is stored). AES-GCM-SIV runs on the
//!   CPU's AES and carry-less multiply instructions where it has them.
//! - Values sealed before GCM-SIV (XChaCha20-Poly1305 under a synthetic nonce stored
//!   in front of the ciphertext) still open: [`DataKey::open_legacy_in_place`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use aes_gcm_siv::AesGcmSiv;
use chacha20poly1305::aead::{Aead, AeadInOut, KeyInit, Payload};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use eventfold_core::{Error, Result};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::keys::FastHash;

/// Bytes of a key (master or data key).
pub const KEY_BYTES: usize = 32;
/// Bytes of a nonce of XChaCha20-Poly1305 (wrapped keys, values sealed before GCM-SIV).
pub const NONCE_BYTES: usize = 24;
/// Bytes of a nonce of AES-256-GCM-SIV (sealed values: taken from the event id).
pub const VALUE_NONCE_BYTES: usize = 12;
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

/// AES-256-GCM-SIV over the block cipher of the `aes` release this crate holds (see its
/// Cargo.toml: the later ones are slower at GCM-SIV's one-block calls).
type ValueCipher = AesGcmSiv<aes::Aes256>;

/// One subject's data key, ready to seal and open that subject's personal values.
#[derive(Clone)]
pub struct DataKey {
    inner: Arc<DataKeyInner>,
}

struct DataKeyInner {
    /// Seals and opens values: AES-256-GCM-SIV under a key derived from the data key
    /// (so that one key never serves two algorithms).
    cipher: ValueCipher,
    /// Opens values sealed before GCM-SIV: XChaCha20-Poly1305 under the data key.
    legacy: XChaCha20Poly1305,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// A data key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; KEY_BYTES]) -> DataKey {
        let mut value_key = Zeroizing::new([0u8; KEY_BYTES]);
        let mut hasher = Sha256::new();
        hasher.update(b"eventfold personal value key aes-256-gcm-siv\0");
        hasher.update(bytes);
        value_key.copy_from_slice(&hasher.finalize());
        DataKey {
            inner: Arc::new(DataKeyInner {
                cipher: ValueCipher::new(&(*value_key).into()),
                legacy: XChaCha20Poly1305::new(&(*bytes).into()),
            }),
        }
    }

    /// A new random data key and its bytes (to be wrapped by the key store).
    pub fn generate() -> Result<(DataKey, Zeroizing<[u8; KEY_BYTES]>)> {
        let bytes = random::<KEY_BYTES>()?;
        Ok((DataKey::from_bytes(&bytes), bytes))
    }

    /// `plaintext` sealed under `nonce` and `aad`, appended to `out`: ciphertext, then
    /// tag. The same (nonce, aad, plaintext) always seals to the same bytes.
    pub fn seal_into(
        &self,
        nonce: &[u8; VALUE_NONCE_BYTES],
        plaintext: &[u8],
        aad: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let start = out.len();
        out.extend_from_slice(plaintext);
        let tag = self
            .inner
            .cipher
            .encrypt_inout_detached(&(*nonce).into(), aad, (&mut out[start..]).into())
            .map_err(|_| Error::Backend("AES-256-GCM-SIV refused to seal a value".into()))?;
        out.extend_from_slice(&tag);
        Ok(())
    }

    /// Opens what [`DataKey::seal_into`] sealed (ciphertext and tag) in `buffer` itself,
    /// leaving the plaintext there; whether it opened (when not: another key, another
    /// nonce or associated data, such as a value moved to another event or field, or
    /// damaged bytes; `buffer` then holds no plaintext).
    pub fn open_in_place(
        &self,
        nonce: &[u8; VALUE_NONCE_BYTES],
        buffer: &mut Vec<u8>,
        aad: &[u8],
    ) -> bool {
        if buffer.len() < TAG_BYTES {
            return false;
        }
        let length = buffer.len() - TAG_BYTES;
        let (message, tag) = buffer.split_at_mut(length);
        let Ok(tag) = aes_gcm_siv::Tag::try_from(&*tag) else {
            return false;
        };
        let opened = self
            .inner
            .cipher
            .decrypt_inout_detached(&(*nonce).into(), aad, message.into(), &tag)
            .is_ok();
        finish_open(buffer, 0, length, opened)
    }

    /// Opens, in `buffer` itself, a value sealed before GCM-SIV (nonce of 24 bytes,
    /// ciphertext, tag: XChaCha20-Poly1305); as [`DataKey::open_in_place`].
    pub fn open_legacy_in_place(&self, buffer: &mut Vec<u8>, aad: &[u8]) -> bool {
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
            .legacy
            .decrypt_inout_detached(&nonce, aad, message.into(), &tag)
            .is_ok();
        finish_open(buffer, NONCE_BYTES, length, opened)
    }
}

/// Leaves in `buffer` only the `length` bytes of plaintext found at `start` when the
/// value `opened`, and nothing otherwise; the bytes dropped are wiped.
fn finish_open(buffer: &mut Vec<u8>, start: usize, length: usize, opened: bool) -> bool {
    if opened {
        buffer.copy_within(start..start + length, 0);
        buffer[length..].zeroize();
        buffer.truncate(length);
    } else {
        buffer.zeroize();
        buffer.clear();
    }
    opened
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
///
/// A read of a page of personal events looks up every subject the page names, and an
/// append every subject its events name: a SHA-256 per subject and call weighed more
/// than opening the values. The digests of recently seen subjects are kept per thread
/// (a digest is no secret: anyone who knows an id can compute it), at most
/// [`RECENT_DIGESTS`] of them.
pub fn subject_digest(subject: &str) -> [u8; 32] {
    thread_local! {
        static RECENT: RefCell<HashMap<Box<str>, [u8; 32], FastHash>> =
            RefCell::new(HashMap::default());
    }
    RECENT.with_borrow_mut(|recent| {
        if let Some(digest) = recent.get(subject) {
            return *digest;
        }
        let digest = compute_subject_digest(subject);
        if recent.len() >= RECENT_DIGESTS {
            recent.clear();
        }
        recent.insert(subject.into(), digest);
        digest
    })
}

/// How many subjects' digests each thread keeps ([`subject_digest`]).
pub const RECENT_DIGESTS: usize = 16_384;

fn compute_subject_digest(subject: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"eventfold subject v1\0");
    hasher.update(subject.as_bytes());
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened(key: &DataKey, nonce: &[u8; 12], sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        let mut buffer = sealed.to_vec();
        key.open_in_place(nonce, &mut buffer, aad).then_some(buffer)
    }

    fn sealed(key: &DataKey, nonce: &[u8; 12], plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        key.seal_into(nonce, plaintext, aad, &mut out).unwrap();
        out
    }

    #[test]
    fn a_data_key_seals_the_same_message_to_the_same_bytes_and_binds_nonce_and_associated_data() {
        let (key, _) = DataKey::generate().unwrap();
        let nonce = [3u8; 12];
        let a = sealed(&key, &nonce, b"alice@example.com", b"event-1/email");
        assert_eq!(a.len(), b"alice@example.com".len() + TAG_BYTES);
        assert_eq!(
            a,
            sealed(&key, &nonce, b"alice@example.com", b"event-1/email")
        );
        assert_ne!(
            a,
            sealed(&key, &nonce, b"alice@example.com", b"event-2/email")
        );
        assert_eq!(
            opened(&key, &nonce, &a, b"event-1/email").unwrap(),
            b"alice@example.com"
        );
        assert!(opened(&key, &nonce, &a, b"event-2/email").is_none());
        assert!(opened(&key, &[4u8; 12], &a, b"event-1/email").is_none());
        let (other, _) = DataKey::generate().unwrap();
        assert!(opened(&other, &nonce, &a, b"event-1/email").is_none());
        let mut flipped = a.clone();
        flipped[0] ^= 1;
        assert!(opened(&key, &nonce, &flipped, b"event-1/email").is_none());
    }

    #[test]
    fn a_failed_open_leaves_nothing_in_the_buffer() {
        let (key, _) = DataKey::generate().unwrap();
        let mut buffer = sealed(&key, &[0u8; 12], b"secret", b"aad");
        assert!(!key.open_in_place(&[1u8; 12], &mut buffer, b"aad"));
        assert!(buffer.is_empty());
        let mut short = vec![1u8; TAG_BYTES - 1];
        assert!(!key.open_in_place(&[0u8; 12], &mut short, b"aad"));
        let mut short = vec![1u8; NONCE_BYTES + TAG_BYTES - 1];
        assert!(!key.open_legacy_in_place(&mut short, b"aad"));
    }

    #[test]
    fn a_subject_digest_is_the_same_whether_remembered_or_not() {
        let first = subject_digest("customer-7f3a");
        assert_eq!(first, subject_digest("customer-7f3a"));
        assert_eq!(first, compute_subject_digest("customer-7f3a"));
        assert_ne!(first, subject_digest("customer-7f3b"));
        // Past the bound the memory starts afresh; digests stay right.
        for n in 0..RECENT_DIGESTS + 10 {
            let subject = format!("s-{n}");
            assert_eq!(subject_digest(&subject), compute_subject_digest(&subject));
        }
        assert_eq!(subject_digest("customer-7f3a"), first);
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
