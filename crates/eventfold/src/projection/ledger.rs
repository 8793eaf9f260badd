//! The effect ledger: what became of a projection group's effects, kept in the event
//! store (stream `_effects-<group>`), where losing the read-model database cannot take
//! it.
//!
//! The outbox in the read-model database stays the working copy: effects are recorded
//! there in the batch's transaction and dispatched from there. The ledger keeps what
//! must outlive that database:
//! - `EffectsFinishedThrough {through, after}`: every effect of an event at or before
//!   `through` is finished (executed, or parked after its last failed attempt), and
//!   `after` lists those finished past it. The runner writes the first one before the
//!   batch that records the group's first effect (`through`: the checkpoint before
//!   it); the dispatcher moves it on, and trims the stream up to it now and then.
//! - `EffectFinished {key, position, parked}`: one effect finished.
//!
//! A group's first generation (a new database, or a lost one) replays only up to the
//! newest mark: the effects of later events are recorded again, and the dispatcher
//! skips those the ledger shows finished. So an effect recorded but never sent when the
//! database was lost is sent, and one sent is not sent again. A group that never
//! recorded an effect has no ledger, writes nothing to the store, and starts over as a
//! new group.

use std::collections::HashMap;

use eventfold_core::{
    Error, EventData, EventStore, ExpectedVersion, Position, ReadStream, Revision,
};
use serde::{Deserialize, Serialize};

use crate::process::{Trim, trim};
use crate::{PAGE_EVENTS, streams};

const FINISHED: &str = "EffectFinished";
const FINISHED_THROUGH: &str = "EffectsFinishedThrough";

/// One finished effect.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Finished {
    key: String,
    position: u64,
    parked: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct FinishedThrough {
    through: Option<u64>,
    after: Vec<Finished>,
}

/// Where a group's first generation ends its replay, and whether the group's ledger
/// is started: the ledger's newest mark, or, for a group without one, `head` (all of
/// the history: the group never recorded an effect).
pub(crate) async fn replay_until(
    store: &dyn EventStore,
    group: &str,
    head: Option<Position>,
) -> Result<(Option<Position>, bool), Error> {
    Ok(match newest_mark(store, &streams::effects(group)).await? {
        Some(through) => (through, true),
        None => (head, false),
    })
}

/// Starts group `group`'s ledger before its first effect, in the batch after `through`
/// (a runner of the group elsewhere may have started it already).
pub(crate) async fn start(
    store: &dyn EventStore,
    group: &str,
    through: Option<Position>,
) -> Result<(), Error> {
    let mark = FinishedThrough {
        through: through.map(Position::get),
        after: Vec::new(),
    };
    let data = EventData::json(FINISHED_THROUGH, &mark)?;
    match store
        .append(
            &streams::effects(group),
            ExpectedVersion::NoStream,
            vec![data],
        )
        .await
    {
        Ok(_) | Err(Error::WrongExpectedVersion { .. }) => Ok(()),
        Err(error) => Err(error),
    }
}

/// The newest mark of the ledger (`None`: no ledger, or no mark in it), reading it
/// backward.
async fn newest_mark(
    store: &dyn EventStore,
    stream: &str,
) -> Result<Option<Option<Position>>, Error> {
    let mut from = None;
    loop {
        let mut read = ReadStream::backward().limit(PAGE_EVENTS);
        if let Some(from) = from {
            read = read.from(from);
        }
        let page = match store.read_stream(stream, read).await {
            Ok(page) => page,
            Err(Error::StreamNotFound { .. }) => return Ok(None),
            Err(error) => return Err(error),
        };
        if let Some(mark) = page
            .iter()
            .find(|event| event.event_type == FINISHED_THROUGH)
        {
            let mark: FinishedThrough = mark.data_as()?;
            return Ok(Some(mark.through.map(Position)));
        }
        match page.last() {
            Some(last) if (page.len() as u64) == PAGE_EVENTS && last.revision.get() > 0 => {
                from = Some(Revision(last.revision.get() - 1));
            }
            _ => return Ok(None),
        }
    }
}

/// A dispatcher's copy of one group's ledger: the effects finished past the newest
/// mark, read from the store and kept up to date by what the dispatcher appends.
#[derive(Debug)]
pub(crate) struct Ledger {
    stream: String,
    /// The next revision to read from the store.
    next: Revision,
    through: Option<Position>,
    finished: HashMap<String, Finished>,
    /// Where the stream was last trimmed (up to a mark).
    trim: Trim,
}

impl Ledger {
    /// An empty copy of group `group`'s ledger; [`Ledger::catch_up`] reads it.
    pub(crate) fn new(group: &str) -> Self {
        Ledger {
            stream: streams::effects(group),
            next: Revision::FIRST,
            through: None,
            finished: HashMap::new(),
            trim: Trim::default(),
        }
    }

    /// Reads what was appended since the last read (by this dispatcher or another).
    pub(crate) async fn catch_up(&mut self, store: &dyn EventStore) -> Result<(), Error> {
        loop {
            let read = ReadStream::forward().from(self.next).limit(PAGE_EVENTS);
            let page = match store.read_stream(&self.stream, read).await {
                Ok(page) => page,
                Err(Error::StreamNotFound { .. }) => return Ok(()),
                Err(error) => return Err(error),
            };
            for event in &page {
                self.next = event.revision.next();
                match event.event_type.as_str() {
                    FINISHED => {
                        let finished: Finished = event.data_as()?;
                        self.finished.insert(finished.key.clone(), finished);
                    }
                    FINISHED_THROUGH => {
                        let mark: FinishedThrough = event.data_as()?;
                        self.forget_through(mark.through.map(Position));
                        for finished in mark.after {
                            self.finished.insert(finished.key.clone(), finished);
                        }
                    }
                    _ => {}
                }
            }
            if (page.len() as u64) < PAGE_EVENTS {
                return Ok(());
            }
        }
    }

    /// Whether effect `key` is finished: `Some(true)` parked, `Some(false)` executed.
    pub(crate) fn finished(&self, key: &str) -> Option<bool> {
        self.finished.get(key).map(|finished| finished.parked)
    }

    /// Records that effect `key` (caused at `position`) was executed, or parked.
    pub(crate) async fn finish(
        &mut self,
        store: &dyn EventStore,
        key: &str,
        position: Position,
        parked: bool,
    ) -> Result<(), Error> {
        let finished = Finished {
            key: key.to_string(),
            position: position.get(),
            parked,
        };
        let written = store
            .append(
                &self.stream,
                ExpectedVersion::Any,
                vec![EventData::json(FINISHED, &finished)?],
            )
            .await?;
        self.finished.insert(finished.key.clone(), finished);
        self.after_append(written.last_revision);
        Ok(())
    }

    /// Records that every effect caused at or before `through` is finished, when that
    /// moves the mark on; trims the stream up to the mark now and then.
    pub(crate) async fn finished_through(
        &mut self,
        store: &dyn EventStore,
        through: Position,
    ) -> Result<(), Error> {
        if self.through >= Some(through) {
            return Ok(());
        }
        let after: Vec<Finished> = self
            .finished
            .values()
            .filter(|finished| finished.position > through.get())
            .cloned()
            .collect();
        let mark = FinishedThrough {
            through: Some(through.get()),
            after,
        };
        let written = store
            .append(
                &self.stream,
                ExpectedVersion::Any,
                vec![EventData::json(FINISHED_THROUGH, &mark)?],
            )
            .await?;
        self.forget_through(Some(through));
        self.after_append(written.last_revision);
        if let Some(at) = self.trim.due(written.last_revision) {
            trim(store, &self.stream, at).await;
        }
        Ok(())
    }

    /// The finished effects at or before `through` are covered by the mark.
    fn forget_through(&mut self, through: Option<Position>) {
        self.through = self.through.max(through);
        if let Some(through) = self.through {
            self.finished
                .retain(|_, finished| finished.position > through.get());
        }
    }

    /// What this dispatcher appended need not be read back.
    fn after_append(&mut self, last: Revision) {
        if self.next == last {
            self.next = last.next();
        }
    }
}
