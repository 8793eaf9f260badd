//! A store wrapper that lets a test act between a handler's read and its append.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use eventfold::{EventStore, InMemoryStore, ReadStream, RecordedEvent, Revision};
use eventfold_core::{AllSlice, AppendResult, Position, ReadAll, Result, StreamWrite};

type Hook = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Delegates to an in-memory store; before an append it runs the queued hooks (one per
/// append: another writer acting "at the same time"), and it logs stream reads.
#[derive(Default)]
pub struct Hooked {
    pub inner: Arc<InMemoryStore>,
    hooks: Mutex<Vec<Hook>>,
    /// When set, appends run the hook every time (a stream that never stops changing).
    pub always: Mutex<Option<Box<dyn Fn() -> Hook + Send + Sync>>>,
    /// The next append is written but answered with an error (a lost answer).
    pub lose_next_answer: AtomicBool,
    pub reads: Mutex<Vec<(String, Option<Revision>)>>,
    pub appends: AtomicUsize,
    /// Runs once, before the next read of the named stream.
    read_hook: Mutex<Option<(String, Hook)>>,
}

impl Hooked {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Runs `hook` before the next append (hooks queue up, one per append).
    pub fn before_next_append(&self, hook: impl Future<Output = ()> + Send + 'static) {
        self.hooks.lock().unwrap().push(Box::pin(hook));
    }

    /// Runs `hook` before the next read of `stream` (another writer acting between a
    /// reader's reads of two streams).
    pub fn before_next_read_of(
        &self,
        stream: &str,
        hook: impl Future<Output = ()> + Send + 'static,
    ) {
        *self.read_hook.lock().unwrap() = Some((stream.to_string(), Box::pin(hook)));
    }

    pub fn reads_of(&self, stream: &str) -> Vec<Option<Revision>> {
        self.reads
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, _)| s == stream)
            .map(|(_, from)| *from)
            .collect()
    }
}

#[async_trait]
impl EventStore for Hooked {
    async fn append_multi(&self, writes: Vec<StreamWrite>) -> Result<Vec<AppendResult>> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        let hook = {
            let mut hooks = self.hooks.lock().unwrap();
            if hooks.is_empty() {
                None
            } else {
                Some(hooks.remove(0))
            }
        };
        let hook = hook.or_else(|| self.always.lock().unwrap().as_ref().map(|f| f()));
        if let Some(hook) = hook {
            hook.await;
        }
        let result = self.inner.append_multi(writes).await;
        if result.is_ok() && self.lose_next_answer.swap(false, Ordering::SeqCst) {
            return Err(eventfold_core::Error::Backend("connection reset".into()));
        }
        result
    }

    async fn read_stream_raw(
        &self,
        stream: &str,
        options: ReadStream,
    ) -> Result<Vec<RecordedEvent>> {
        let hook = {
            let mut hook = self.read_hook.lock().unwrap();
            match hook.as_ref() {
                Some((name, _)) if name == stream => hook.take().map(|(_, h)| h),
                _ => None,
            }
        };
        if let Some(hook) = hook {
            hook.await;
        }
        self.reads
            .lock()
            .unwrap()
            .push((stream.to_string(), options.from));
        self.inner.read_stream_raw(stream, options).await
    }

    async fn read_all(&self, options: ReadAll) -> Result<AllSlice> {
        self.inner.read_all(options).await
    }

    async fn stream_revision(&self, stream: &str) -> Result<Option<Revision>> {
        self.inner.stream_revision(stream).await
    }

    async fn head_position(&self) -> Result<Option<Position>> {
        self.inner.head_position().await
    }

    async fn wait_for(&self, position: Position) -> Result<()> {
        self.inner.wait_for(position).await
    }
}
