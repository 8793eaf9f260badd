//! A store layer that lets a test act between a handler's read and its append.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use eventfold::{EventStore, InMemoryStore, ReadStream, RecordedEvent, Revision};
use eventfold_core::{AppendResult, LayerExt, Layered, Result, StoreLayer, StreamWrite};

type Hook = Pin<Box<dyn Future<Output = ()> + Send>>;

/// An in-memory store (`inner()`, shared with other writers) under [`Hooks`]: the
/// layer runs before an append the queued hooks (one per append: another writer
/// acting "at the same time"), and it logs stream reads (`layer()`).
pub type Hooked = Layered<Hooks, Arc<InMemoryStore>>;

/// A fresh in-memory store under a layer of no hooks yet.
pub fn hooked() -> Arc<Hooked> {
    Arc::new(Arc::new(InMemoryStore::new()).layer(Hooks::default()))
}

/// What [`Hooked`] runs and records.
#[derive(Default)]
pub struct Hooks {
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

impl Hooks {
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
impl StoreLayer for Hooks {
    async fn append_multi<S: EventStore + ?Sized>(
        &self,
        inner: &S,
        writes: Vec<StreamWrite>,
    ) -> Result<Vec<AppendResult>> {
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
        let result = inner.append_multi(writes).await;
        if result.is_ok() && self.lose_next_answer.swap(false, Ordering::SeqCst) {
            return Err(eventfold_core::Error::Backend("connection reset".into()));
        }
        result
    }

    async fn read_stream<S: EventStore + ?Sized>(
        &self,
        inner: &S,
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
        inner.read_stream(stream, options).await
    }
}
