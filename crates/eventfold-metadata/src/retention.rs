//! What a scavenge may remove: per stream, the first revision its metadata leaves
//! visible. Computed here, over any store, with the rules reads apply, so that a
//! backend that reclaims space never has to understand metadata.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use eventfold_core::{EventStore, KeepFrom, Result, ScavengeSummary, Scavenger};

use crate::admin::read_metadata;
use crate::layer::first_visible;
use crate::types::{METADATA_STREAM_PREFIX, defaults_category, metadata_stream};

/// Streams listed per call while computing cuts.
const LIST_PAGE_STREAMS: usize = 1000;

/// For each stream whose metadata hides some of its events, its *cut*: the first
/// revision a read can still see. Every event below a stream's cut is hidden by a hard
/// delete (the cut is the tombstone's revision, so the tombstone stays), a soft
/// delete, `truncate_before`, `max_count` or `max_age`; a backend may remove exactly
/// those (see `LogStore::scavenge_blocking`).
///
/// ```
/// use eventfold_core::{EventData, EventStore, ExpectedVersion, InMemoryStore, Revision};
/// use eventfold_metadata::{StreamAdmin, StreamMetadata, retention_cuts};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = InMemoryStore::new();
/// let events = (0..5).map(|n| EventData::json("Counted", &serde_json::json!({"n": n})).unwrap()).collect();
/// store.append("counter-1", ExpectedVersion::NoStream, events).await.unwrap();
/// let metadata = StreamMetadata { max_count: Some(2), ..StreamMetadata::default() };
/// store.set_stream_metadata("counter-1", ExpectedVersion::Any, metadata).await.unwrap();
///
/// let cuts = retention_cuts(&store, chrono::Utc::now()).await.unwrap();
/// assert_eq!(cuts.keep_from("counter-1"), 3);
/// assert_eq!(cuts.keep_from("other"), 0);
/// # });
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionCuts {
    cuts: HashMap<String, u64>,
}

impl RetentionCuts {
    /// The first revision of `stream` to keep (0: keep every event).
    pub fn keep_from(&self, stream: &str) -> u64 {
        self.cuts.get(stream).copied().unwrap_or(0)
    }

    /// Streams with a cut above 0.
    pub fn len(&self) -> usize {
        self.cuts.len()
    }

    /// Whether no stream has anything to remove.
    pub fn is_empty(&self) -> bool {
        self.cuts.is_empty()
    }

    /// Each stream with its cut, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.cuts.iter().map(|(s, &c)| (s.as_str(), c))
    }
}

/// Computes the cut of every stream whose metadata, or whose category's default
/// retention (the metadata of `$ce-<category>`), hides some of its events, reading
/// `store` as stored: the backend itself, not the backend under the metadata layer.
/// `now` is the time `max_age` counts from.
pub async fn retention_cuts<S: EventStore + ?Sized>(
    store: &S,
    now: DateTime<Utc>,
) -> Result<RetentionCuts> {
    let mut cuts = HashMap::new();
    let mut categories = Vec::new();
    let mut pages = StreamPages::new(METADATA_STREAM_PREFIX);
    while let Some(page) = pages.next(store).await? {
        for summary in &page {
            let Some(stream) = summary.stream.strip_prefix(METADATA_STREAM_PREFIX) else {
                continue;
            };
            if let Some(category) = defaults_category(stream) {
                categories.push(category.to_string());
                continue;
            }
            // System streams are read as stored: their metadata hides nothing.
            if stream.is_empty() || stream.starts_with('$') {
                continue;
            }
            let Some(last) = store.stream_revision(stream).await? else {
                continue;
            };
            let metadata = read_metadata(store, stream).await?.metadata;
            let cut = if metadata.tombstoned {
                last.get()
            } else {
                first_visible(store, stream, &metadata, last.get() + 1, now).await?
            };
            if cut > 0 {
                cuts.insert(stream.to_string(), cut);
            }
        }
    }
    for category in categories {
        let defaults = read_metadata(store, &format!("$ce-{category}"))
            .await?
            .metadata;
        // The streams of the category: `<category>` itself and `<category>-…`.
        let mut pages = StreamPages::new(&format!("{category}-"));
        let mut bare = Some(category.clone());
        loop {
            let streams: Vec<String> = match bare.take() {
                Some(stream) => vec![stream],
                None => match pages.next(store).await? {
                    Some(page) => page.into_iter().map(|s| s.stream).collect(),
                    None => break,
                },
            };
            for stream in streams {
                // A stream's own metadata replaces the defaults (and was done above).
                if store
                    .stream_revision(&metadata_stream(&stream))
                    .await?
                    .is_some()
                {
                    continue;
                }
                let Some(last) = store.stream_revision(&stream).await? else {
                    continue;
                };
                let cut = first_visible(store, &stream, &defaults, last.get() + 1, now).await?;
                if cut > 0 {
                    cuts.insert(stream, cut);
                }
            }
        }
    }
    Ok(RetentionCuts { cuts })
}

/// The streams whose names start with a prefix, a page at a time.
struct StreamPages {
    prefix: String,
    after: Option<String>,
    done: bool,
}

impl StreamPages {
    fn new(prefix: &str) -> Self {
        StreamPages {
            prefix: prefix.to_string(),
            after: None,
            done: false,
        }
    }

    async fn next<S: EventStore + ?Sized>(
        &mut self,
        store: &S,
    ) -> Result<Option<Vec<eventfold_core::StreamSummary>>> {
        if self.done {
            return Ok(None);
        }
        let page = store
            .list_streams(&self.prefix, self.after.as_deref(), LIST_PAGE_STREAMS)
            .await?;
        match page.last() {
            Some(summary) if page.len() == LIST_PAGE_STREAMS => {
                self.after = Some(summary.stream.clone());
            }
            _ => self.done = true,
        }
        Ok((!page.is_empty()).then_some(page))
    }
}

/// A scavenge of `scavenger`'s storage by the rules of `store`'s metadata as they
/// are now: [`retention_cuts`], then the backend's removal. `store` and `scavenger`
/// are the same store seen two ways (its events, and its storage), as the server and
/// the CLI hold it.
pub async fn scavenge<S: EventStore + ?Sized>(
    store: &S,
    scavenger: &dyn Scavenger,
    dry_run: bool,
) -> Result<ScavengeSummary> {
    let cuts = retention_cuts(store, Utc::now()).await?;
    let keep_from: KeepFrom = std::sync::Arc::new(move |stream: &str| cuts.keep_from(stream));
    scavenger.scavenge(keep_from, dry_run).await
}
