//! Durable timeouts: deadlines are events in the timeouts stream, read by the runner
//! and fired when due, after a restart too.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use eventfold_core::Revision;
use uuid::Uuid;

use super::manager::Context;
use super::records::{Record, decode_record};
use super::runner::{ATTEMPTS_MAX, ProcessRunner};
use super::trim::{Trim, trim};
use crate::error::{Error, Result};
use crate::repository::read_from;
use crate::streams;

/// The scheduled timeouts read so far from the timeouts stream.
pub(super) struct Timeouts {
    /// The next revision of the timeouts stream to read.
    next: Revision,
    /// Pending: timeout id → (deadline, correlation id, revision that scheduled it).
    pending: BTreeMap<Uuid, (DateTime<Utc>, Uuid, Revision)>,
    /// How much of the stream is no longer needed (see [`Trim`]).
    trim: Trim,
}

impl Timeouts {
    /// Nothing read yet: the timeouts stream is read from its start.
    pub(super) fn new() -> Self {
        Timeouts {
            next: Revision::FIRST,
            pending: BTreeMap::new(),
            trim: Trim::default(),
        }
    }

    /// The first revision a restarted runner still needs: the oldest pending timeout's,
    /// or what comes next when none is pending.
    fn needed_from(&self) -> Revision {
        self.pending
            .values()
            .map(|(_, _, revision)| *revision)
            .min()
            .unwrap_or(self.next)
    }
}

impl ProcessRunner {
    /// Fires every pending timeout whose deadline is at or before `now`, reading newly
    /// scheduled ones from the store first. Returns how many fired. A timeout whose
    /// instance got another message (a newer wait) or completed meanwhile is dropped.
    pub async fn fire_due_timeouts(&self, now: DateTime<Utc>) -> Result<usize> {
        let timeouts_stream = streams::timeouts(&self.name);
        let next = self.lock_timeouts().next;
        let scheduled = read_from(self.store.as_ref(), &timeouts_stream, next, u64::MAX).await?;
        let due: Vec<(Uuid, DateTime<Utc>, Uuid)> = {
            let mut timeouts = self.lock_timeouts();
            for event in scheduled {
                // Decoded before the cursor moves past it: a record that does not
                // decode stops the runner here, every time, rather than being skipped
                // (and its timeout never firing).
                let record = decode_record(&event)?;
                timeouts.next = event.revision.next();
                if let Some(Record::TimeoutScheduled {
                    correlation_id,
                    timeout_id,
                    deadline,
                }) = record
                {
                    timeouts
                        .pending
                        .insert(timeout_id, (deadline, correlation_id, event.revision));
                }
            }
            timeouts
                .pending
                .iter()
                .filter(|(_, (deadline, _, _))| *deadline <= now)
                .map(|(id, (deadline, correlation, _))| (*id, *deadline, *correlation))
                .collect()
        };
        let mut fired = 0;
        for (timeout_id, deadline, correlation_id) in due {
            if self.fire(timeout_id, deadline, correlation_id).await? {
                fired += 1;
            }
            self.lock_timeouts().pending.remove(&timeout_id);
        }
        let due_trim = {
            let mut timeouts = self.lock_timeouts();
            let needed = timeouts.needed_from();
            timeouts.trim.due(needed)
        };
        if let Some(needed) = due_trim {
            trim(self.store.as_ref(), &timeouts_stream, needed).await;
        }
        Ok(fired)
    }

    /// Fires timeout `timeout_id` of the instance of `correlation_id`, unless the
    /// instance completed or waits for another timeout meanwhile; returns whether it fired.
    async fn fire(
        &self,
        timeout_id: Uuid,
        deadline: DateTime<Utc>,
        correlation_id: Uuid,
    ) -> Result<bool> {
        let stream = streams::process(&self.name, correlation_id);
        for _ in 0..ATTEMPTS_MAX {
            let Some(mut replayed) = self.replay(&stream).await? else {
                return Ok(false);
            };
            if replayed.completed || replayed.waiting.map(|(id, _)| id) != Some(timeout_id) {
                return Ok(false);
            }
            let mut ctx = Context::new(correlation_id, deadline);
            let next = replayed.state.on_timeout(&mut ctx)?;
            let records = vec![Record::TimeoutFired {
                timeout_id,
                deadline,
            }];
            if self
                .commit(&stream, &mut replayed, records, next, ctx, timeout_id)
                .await?
            {
                return Ok(true);
            }
        }
        Err(Error::Conflict {
            stream,
            attempts: ATTEMPTS_MAX,
        })
    }

    fn lock_timeouts(&self) -> std::sync::MutexGuard<'_, Timeouts> {
        // The map stays consistent between statements, so a poisoned lock is usable.
        self.timeouts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
