//! [`PrivacyLayer`]: personal values sealed on their way into the store, opened (or
//! redacted) on their way out.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use eventfold_core::plan::NewIds;
use eventfold_core::{
    AllSlice, AppendResult, Error, EventData, EventStore, ExpectedVersion, RecordedEvent, Result,
    StoreLayer, StreamWrite, append_system,
};

use crate::crypto::DataKey;
use crate::json_span;
use crate::keys::{FastHash, KeyStore, SubjectKey, SubjectKeys};
use crate::sealed::{self, Personal, REDACTED_TEXT, Scratch, personal_of, sealed_text, splice};

pub use eventfold_core::{SUBJECT_FORGOTTEN_EVENT_TYPE, SUBJECTS_STREAM};

/// What reads hand out for a personal value whose subject is not forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reveal {
    /// The plaintext (reads, subscriptions, projections).
    Plaintext,
    /// The sealed value as stored (exports and archives: no plaintext leaves the
    /// store). A forgotten subject's values are redacted in both modes.
    Sealed,
}

/// Seals the values an event marks as personal (its `$personal` metadata) before the
/// append reaches the inner store, and opens them on every read; a forgotten
/// subject's values read as `{"$redacted": true}`.
///
/// Events without `$personal` pass untouched (a byte search of their metadata is all
/// they cost). An event with personal values gets an id here when it has none, since
/// its sealed values are bound to it.
///
/// ```
/// use std::sync::Arc;
/// use eventfold_core::{EventData, EventStore, ExpectedVersion, InMemoryStore, LayerExt, ReadStream};
/// use eventfold_privacy::{MemoryKeyStore, PrivacyLayer};
/// use serde_json::json;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let layer = PrivacyLayer::new(Arc::new(MemoryKeyStore::new()));
/// let store = InMemoryStore::new().layer(layer.clone());
/// let signed_up = EventData::json("SignedUp", &json!({"email": "ann@example.com", "plan": "pro"}))
///     .unwrap()
///     .with_metadata(&json!({"$personal": {"subject": "user-1", "fields": ["/email"]}}))
///     .unwrap();
/// store.append("user-1", ExpectedVersion::NoStream, vec![signed_up]).await.unwrap();
///
/// let stored = store.inner().read_stream("user-1", ReadStream::forward()).await.unwrap();
/// assert!(!String::from_utf8_lossy(&stored[0].data).contains("ann@example.com"));
/// let read = store.read_stream("user-1", ReadStream::forward()).await.unwrap();
/// assert_eq!(read[0].data_as::<serde_json::Value>().unwrap()["email"], "ann@example.com");
///
/// layer.forget(&store, "user-1").await.unwrap();
/// let read = store.read_stream("user-1", ReadStream::forward()).await.unwrap();
/// assert_eq!(
///     read[0].data_as::<serde_json::Value>().unwrap(),
///     json!({"email": {"$redacted": true}, "plan": "pro"})
/// );
/// # });
/// ```
#[derive(Clone)]
pub struct PrivacyLayer {
    keys: Arc<dyn KeyStore>,
    reveal: Reveal,
}

impl std::fmt::Debug for PrivacyLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivacyLayer")
            .field("reveal", &self.reveal)
            .finish_non_exhaustive()
    }
}

impl PrivacyLayer {
    /// A layer that seals with, and opens with, the keys of `keys`.
    pub fn new(keys: Arc<dyn KeyStore>) -> PrivacyLayer {
        PrivacyLayer {
            keys,
            reveal: Reveal::Plaintext,
        }
    }

    /// The same layer, handing out personal values as `reveal` says.
    pub fn revealing(mut self, reveal: Reveal) -> PrivacyLayer {
        self.reveal = reveal;
        self
    }

    /// The key store.
    pub fn keys(&self) -> &Arc<dyn KeyStore> {
        &self.keys
    }

    /// Forgets `subject`: destroys its key, then appends `$subject-forgotten` to
    /// `$subjects` through `store` (consumers holding copies drop them when they see
    /// it). From then on its values read as `{"$redacted": true}`. Forgetting again
    /// appends the notification again (so a forget whose append failed can be retried).
    pub async fn forget<S: EventStore + ?Sized>(
        &self,
        store: &S,
        subject: &str,
    ) -> Result<AppendResult> {
        forget(store, self.keys.as_ref(), subject).await
    }

    /// Seals the values `personal` names in `event`'s data, with `key` (the subject's).
    fn seal_event(
        &self,
        event: &mut EventData,
        personal: &Personal,
        key: &DataKey,
        new_ids: &mut NewIds,
        scratch: &mut Scratch,
    ) -> Result<()> {
        let id = *event.id.get_or_insert_with(|| new_ids.next());
        let not_json = |e: &dyn std::fmt::Display| Error::InvalidEvent {
            reason: format!("data is not valid JSON: {e}"),
        };
        // The data is checked by the store after this (as JSON, and so as UTF-8); the
        // values sealed here are checked before they are sealed.
        let mut data = Cow::Borrowed(&event.data[..]);
        for pointer in &personal.fields {
            let Some(found) = json_span::find(&data, pointer).map_err(|e| not_json(&e))? else {
                continue;
            };
            let range = found.range;
            let value = &data[range.clone()];
            if let Some(sealed) = sealed_text(value) {
                // Sealed already (an import of an export): it must open here.
                if let Some(reason) = sealed.unknown_cipher() {
                    return Err(Error::InvalidEvent {
                        reason: format!(
                            "event {id} carries a sealed value at '{pointer}' that cannot be \
                             opened: {reason}"
                        ),
                    });
                }
                let opens = sealed.subject == personal.subject
                    && sealed::open(key, id, pointer, &sealed, scratch).is_some();
                if !opens {
                    return Err(Error::InvalidEvent {
                        reason: format!(
                            "event {id} carries a sealed value at '{pointer}' that this store's \
                             key of subject '{}' does not open (written with another key store?)",
                            personal.subject
                        ),
                    });
                }
                continue;
            }
            if found.repeated {
                // Readers see the last of a repeated key, the one sealed here; the
                // others would be stored as they are, in plaintext.
                return Err(Error::InvalidEvent {
                    reason: format!(
                        "event {id}: the personal value at '{pointer}' is named more than once \
                         (a key on the way to it is repeated in its object); only one could be \
                         sealed and the others would be stored in plaintext"
                    ),
                });
            }
            // The value is sealed as it is written, so it is checked first: the store
            // checks the data after sealing, which no longer shows this value.
            sealed::json_text(value).map_err(|e| not_json(&e))?;
            let sealed = sealed::seal(key, &personal.subject, id, pointer, value, scratch)?;
            data = Cow::Owned(splice(&data, range, sealed.as_bytes()));
        }
        if let Cow::Owned(data) = data {
            event.data = Bytes::from(data);
        }
        Ok(())
    }

    /// Opens (or redacts) the personal values of `events`, with one key lookup for the
    /// subjects their markings name.
    async fn reveal_events(&self, events: &mut [RecordedEvent]) -> Result<()> {
        let mut marked = Vec::new();
        for (index, event) in events.iter().enumerate() {
            // What does not parse was stored without this layer: handed on as stored.
            if let Ok(Some(personal)) = personal_of(&event.metadata) {
                marked.push((index, personal));
            }
        }
        if marked.is_empty() {
            return Ok(());
        }
        let subjects = distinct_subjects(marked.iter().map(|(_, p)| p));
        let mut keys = self.keys.lookup(&subjects).await?;
        let mut scratch = Scratch::default();
        for (index, personal) in &marked {
            let event = &events[*index];
            if let Some(data) = self
                .reveal_data(event, personal, &mut keys, &mut scratch)
                .await?
            {
                events[*index].data = Bytes::from(data);
            }
        }
        Ok(())
    }

    /// One event's `data` with its sealed values opened (or redacted); `None` when
    /// nothing changed.
    async fn reveal_data(
        &self,
        event: &RecordedEvent,
        personal: &Personal,
        keys: &mut SubjectKeys,
        scratch: &mut Scratch,
    ) -> Result<Option<Vec<u8>>> {
        // What is not JSON was stored without this layer: handed on as stored (no
        // sealed value is found in it).
        let mut data = Cow::Borrowed(&event.data[..]);
        // In reverse: a value sealed inside another one (pointers that nest) was
        // sealed first, so it is opened last.
        for pointer in personal.fields.iter().rev() {
            let Ok(Some(found)) = json_span::find(&data, pointer) else {
                continue;
            };
            let range = found.range;
            let Some(sealed) = sealed_text(&data[range.clone()]) else {
                continue;
            };
            if let Some(reason) = sealed.unknown_cipher() {
                return Err(unreadable(
                    event,
                    format!("its personal value at '{pointer}' cannot be opened: {reason}"),
                ));
            }
            if !keys.contains_key(sealed.subject.as_ref()) {
                // Sealed for another subject than the marking names (rare): its key too.
                keys.extend(self.keys.lookup(&[sealed.subject.as_ref()]).await?);
            }
            let replacement = match keys.get(sealed.subject.as_ref()) {
                Some(SubjectKey::Active(key)) => {
                    let Some(opened) = sealed::open(key, event.id, pointer, &sealed, scratch)
                    else {
                        return Err(unreadable(
                            event,
                            format!(
                                "its personal value at '{pointer}' does not open with the key of \
                                 subject '{}': it was copied from another event or field, or it \
                                 is damaged",
                                sealed.subject
                            ),
                        ));
                    };
                    match self.reveal {
                        Reveal::Plaintext => splice(&data, range, opened.as_bytes()),
                        Reveal::Sealed => continue,
                    }
                }
                Some(SubjectKey::Forgotten) => splice(&data, range, REDACTED_TEXT),
                Some(SubjectKey::Unknown) | None => {
                    return Err(unreadable(
                        event,
                        format!(
                            "its personal value at '{pointer}' belongs to subject '{}', whose key \
                             the key store does not have (a key store that is not the one this \
                             log was written with: restore the key store from its backup); the \
                             value is neither opened nor redacted",
                            sealed.subject
                        ),
                    ));
                }
            };
            data = Cow::Owned(replacement);
        }
        Ok(match data {
            Cow::Owned(data) => Some(data),
            Cow::Borrowed(_) => None,
        })
    }
}

/// The subjects of `markings`, each once, in the order they first come.
fn distinct_subjects<'p>(markings: impl ExactSizeIterator<Item = &'p Personal>) -> Vec<&'p str> {
    let mut seen = HashSet::with_capacity_and_hasher(markings.len(), FastHash::default());
    markings
        .map(|p| p.subject.as_str())
        .filter(|subject| seen.insert(*subject))
        .collect()
}

fn unreadable(event: &RecordedEvent, reason: String) -> Error {
    Error::Corrupted {
        file: format!("event {} of stream '{}'", event.id, event.stream),
        offset: event.position.0,
        reason,
    }
}

/// Forgets `subject` in `keys` and appends `$subject-forgotten` to `$subjects` through
/// `store` (see [`PrivacyLayer::forget`]).
pub async fn forget<S: EventStore + ?Sized>(
    store: &S,
    keys: &dyn KeyStore,
    subject: &str,
) -> Result<AppendResult> {
    sealed::check_subject(subject)?;
    keys.forget(subject).await?;
    let notification = EventData::json(
        SUBJECT_FORGOTTEN_EVENT_TYPE,
        &serde_json::json!({ "subject": subject }),
    )?;
    append_system(
        store,
        SUBJECTS_STREAM,
        ExpectedVersion::Any,
        vec![notification],
    )
    .await
}

#[async_trait]
impl StoreLayer for PrivacyLayer {
    async fn before_append<S: EventStore + ?Sized>(
        &self,
        _inner: &S,
        mut writes: Vec<StreamWrite>,
    ) -> Result<Vec<StreamWrite>> {
        // The markings first, so that every subject's key is fetched (and the new ones
        // made, with one sync) in one call.
        let mut marked = Vec::new();
        for (w, write) in writes.iter().enumerate() {
            for (e, event) in write.events.iter().enumerate() {
                if let Some(personal) = personal_of(&event.metadata)? {
                    marked.push((w, e, personal));
                }
            }
        }
        if marked.is_empty() {
            return Ok(writes);
        }
        let subjects = distinct_subjects(marked.iter().map(|(_, _, p)| p));
        let keys: HashMap<&str, DataKey, FastHash> = subjects
            .iter()
            .copied()
            .zip(self.keys.keys_for_writing(&subjects).await?)
            .collect();
        let mut scratch = Scratch::default();
        let mut new_ids = NewIds::for_events(
            marked
                .iter()
                .filter(|(w, e, _)| writes[*w].events[*e].id.is_none())
                .count(),
        );
        for (w, e, personal) in &marked {
            let key = keys.get(personal.subject.as_str()).ok_or_else(|| {
                Error::Backend(format!(
                    "no key was fetched for subject '{}'",
                    personal.subject
                ))
            })?;
            self.seal_event(
                &mut writes[*w].events[*e],
                personal,
                key,
                &mut new_ids,
                &mut scratch,
            )?;
        }
        Ok(writes)
    }

    async fn after_read_stream(
        &self,
        _stream: &str,
        mut events: Vec<RecordedEvent>,
    ) -> Result<Vec<RecordedEvent>> {
        self.reveal_events(&mut events).await?;
        Ok(events)
    }

    async fn after_read_all(&self, mut slice: AllSlice) -> Result<AllSlice> {
        self.reveal_events(&mut slice.events).await?;
        Ok(slice)
    }
}
