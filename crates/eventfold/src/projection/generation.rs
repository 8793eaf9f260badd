//! What happens inside the read model's transactions, written once for every read
//! model: opening a group, creating a generation, applying a batch (projections,
//! outbox, checkpoint) and the swap of a rebuilt generation.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use eventfold_core::{Position, RecordedEvent};

use super::history::Notice;
use super::outbox::{Effect, EffectState};
use super::read_model::ReadModel;
use super::read_model::rows::{GenerationRow, GenerationState};
use super::{Context, EffectRequest, Mode, Projection, ProjectionError, Reaction, Tables};
use crate::streams;

/// The projections of one group, as this process's code has them.
pub(crate) struct GroupCode<M: ReadModel> {
    pub(crate) name: String,
    pub(crate) projections: Vec<Arc<dyn Projection<M>>>,
    pub(crate) fingerprint: String,
}

impl<M: ReadModel> GroupCode<M> {
    pub(crate) fn new(
        name: String,
        projections: Vec<Arc<dyn Projection<M>>>,
    ) -> Result<Self, ProjectionError> {
        let invalid = |reason: String| ProjectionError::InvalidGroup {
            group: name.clone(),
            reason,
        };
        if projections.is_empty() {
            return Err(invalid("it has no projection".into()));
        }
        let mut names = HashSet::new();
        let mut tables = HashSet::new();
        for projection in &projections {
            if !names.insert(projection.name().to_string()) {
                return Err(invalid(format!(
                    "two projections are named '{}'",
                    projection.name()
                )));
            }
            for table in projection.tables() {
                if !tables.insert(table.to_string()) {
                    return Err(invalid(format!("two projections own table '{table}'")));
                }
            }
        }
        let mut parts: Vec<String> = projections
            .iter()
            .map(|p| format!("{}@{}", p.name(), p.version()))
            .collect();
        parts.sort();
        Ok(GroupCode {
            name,
            projections,
            fingerprint: parts.join(","),
        })
    }
}

/// A generation a track runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TrackStart {
    pub(crate) generation: u64,
    pub(crate) checkpoint: Option<Position>,
    pub(crate) replay_until: Option<Position>,
    pub(crate) live: bool,
}

impl TrackStart {
    fn of(row: &GenerationRow) -> Self {
        TrackStart {
            generation: row.generation,
            checkpoint: row.checkpoint,
            replay_until: row.replay_until,
            live: row.state == GenerationState::Live,
        }
    }
}

/// One page of `$all` as a track applies it: the events as corrected, and the
/// notices for the projections' hooks, by the position of the event carrying each.
pub(crate) struct Batch {
    pub(crate) events: Vec<RecordedEvent>,
    pub(crate) notices: HashMap<Position, Notice>,
}

/// What a batch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BatchOutcome {
    /// Applied and committed.
    Applied {
        /// Effects newly recorded in the outbox.
        recorded: usize,
        /// The generation is live after the batch.
        live: bool,
        /// The batch made the generation live, retiring this one (if any).
        swapped_out: Option<Option<u64>>,
        /// A projection asked for a rebuild (a compensation or a surgery's notice it
        /// could not handle in place).
        rebuild: bool,
    },
    /// The generation was retired by a swap: the track ends.
    Retired,
    /// The stored checkpoint is not where the track thought (another runner of the
    /// same generation, or a batch whose commit was not acknowledged): nothing was
    /// applied; continue from the stored checkpoint.
    Moved { checkpoint: Option<Position> },
}

/// Finds (or creates) the generations this code runs: the live one when it is this
/// code's, and the one being built for this code, if any. A group's first generation
/// replays the history up to `first_replay_until` (from the effect ledger).
pub(crate) fn open<M: ReadModel>(
    tx: &mut M::Tx<'_>,
    code: &GroupCode<M>,
    first_replay_until: Option<Position>,
) -> Result<Vec<TrackStart>, ProjectionError> {
    let generations = M::generations(tx, &code.name)?;
    let live = generations
        .iter()
        .find(|row| row.state == GenerationState::Live);
    let building = generations
        .iter()
        .rev()
        .find(|row| row.state == GenerationState::Building && row.fingerprint == code.fingerprint);
    let next = next_generation(&generations);
    let mut tracks = Vec::new();
    match live {
        Some(live) if live.fingerprint == code.fingerprint => {
            tracks.push(TrackStart::of(live));
            tracks.extend(building.map(TrackStart::of));
        }
        Some(live) => {
            // Other code owns the live generation: build ours beside it, replaying what
            // the live one has already seen (its effects are recorded).
            let row = match building {
                Some(row) => row.clone(),
                None => create(tx, code, next, GenerationState::Building, live.checkpoint)?,
            };
            tracks.push(TrackStart::of(&row));
        }
        None => {
            let row = match building {
                Some(row) => row.clone(),
                // The first generation of a group replays the history whose effects
                // are finished (for a new group: all of it, up to the head when it
                // started). No such history: live at once.
                None if first_replay_until.is_none() => {
                    create(tx, code, next, GenerationState::Live, None)?
                }
                None => create(
                    tx,
                    code,
                    next,
                    GenerationState::Building,
                    first_replay_until,
                )?,
            };
            tracks.push(TrackStart::of(&row));
        }
    }
    Ok(tracks)
}

/// Starts building a new generation of this code beside the live one.
pub(crate) fn start_rebuild<M: ReadModel>(
    tx: &mut M::Tx<'_>,
    code: &GroupCode<M>,
) -> Result<TrackStart, ProjectionError> {
    let generations = M::generations(tx, &code.name)?;
    if let Some(building) = generations
        .iter()
        .find(|row| row.state == GenerationState::Building && row.fingerprint == code.fingerprint)
    {
        return Err(ProjectionError::RebuildInProgress {
            group: code.name.clone(),
            generation: building.generation,
        });
    }
    let live = generations
        .iter()
        .find(|row| row.state == GenerationState::Live)
        .ok_or_else(|| ProjectionError::Bookkeeping {
            group: code.name.clone(),
            reason: "no live generation to rebuild beside".into(),
        })?;
    let replay_until = live.checkpoint;
    let row = create(
        tx,
        code,
        next_generation(&generations),
        GenerationState::Building,
        replay_until,
    )?;
    Ok(TrackStart::of(&row))
}

fn next_generation(generations: &[GenerationRow]) -> u64 {
    generations
        .iter()
        .map(|row| row.generation)
        .max()
        .unwrap_or(0)
        + 1
}

/// Creates generation `generation`: its row and its empty tables.
fn create<M: ReadModel>(
    tx: &mut M::Tx<'_>,
    code: &GroupCode<M>,
    generation: u64,
    state: GenerationState,
    replay_until: Option<Position>,
) -> Result<GenerationRow, ProjectionError> {
    let names = Tables::new(generation);
    let mut tables = Vec::new();
    for projection in &code.projections {
        projection
            .setup(tx, &names)
            .map_err(|source| ProjectionError::Setup {
                projection: projection.name().to_string(),
                generation,
                source,
            })?;
        tables.extend(
            projection
                .tables()
                .iter()
                .map(|logical| (logical.to_string(), names.name(logical))),
        );
    }
    let row = GenerationRow {
        group: code.name.clone(),
        generation,
        fingerprint: code.fingerprint.clone(),
        state,
        replay_until,
        checkpoint: None,
        tables,
    };
    M::put_generation(tx, &row)?;
    if state == GenerationState::Live {
        for (logical, physical) in &row.tables {
            M::point_view(tx, logical, Some(physical))?;
        }
    }
    Ok(row)
}

/// Applies `events` (upcast, in position order, all after `expected`) to generation
/// `generation`, records their live effects (refused while the group's effect ledger
/// is not started), moves the checkpoint to `through` (the
/// last position read, which may lie past the last event when a filter skipped some),
/// and swaps the generation in when it has caught up with the live one. All in the
/// caller's transaction.
pub(crate) fn apply_batch<M: ReadModel>(
    tx: &mut M::Tx<'_>,
    code: &GroupCode<M>,
    generation: u64,
    expected: Option<Position>,
    batch: &Batch,
    through: Position,
    ledger_started: bool,
) -> Result<BatchOutcome, ProjectionError> {
    let mut generations = M::generations(tx, &code.name)?;
    let Some(index) = generations
        .iter()
        .position(|row| row.generation == generation)
    else {
        return Err(ProjectionError::Bookkeeping {
            group: code.name.clone(),
            reason: format!("generation {generation} is not recorded"),
        });
    };
    let mut me = generations.swap_remove(index);
    if me.state == GenerationState::Retired {
        return Ok(BatchOutcome::Retired);
    }
    if me.checkpoint != expected {
        return Ok(BatchOutcome::Moved {
            checkpoint: me.checkpoint,
        });
    }

    let tables = Tables::new(generation);
    let mut requests: Vec<EffectRequest> = Vec::new();
    let mut rebuild = false;
    for event in batch
        .events
        .iter()
        .filter(|e| !streams::is_effect_ledger(&e.stream))
    {
        let mode = if me.replay_until.is_some_and(|until| event.position <= until) {
            Mode::Replay
        } else {
            Mode::Live
        };
        let forgotten =
            super::forgotten_subject(event).map_err(|source| ProjectionError::Handler {
                projection: code.name.clone(),
                position: event.position,
                source,
            })?;
        let notice = batch.notices.get(&event.position);
        for projection in &code.projections {
            let mut ctx = Context::new(mode, tables, &code.name, event, &mut requests);
            let handled = match (&forgotten, notice) {
                (Some(subject), _) => projection.forget(tx, subject, &mut ctx),
                (None, Some(Notice::Compensated(compensated))) => projection
                    .compensate(tx, compensated, &mut ctx)
                    .map(|reaction| rebuild |= reaction == Reaction::Rebuild),
                (None, Some(Notice::Invalidated(invalidation))) => projection
                    .invalidated(tx, invalidation, &mut ctx)
                    .map(|reaction| rebuild |= reaction == Reaction::Rebuild),
                (None, None) => projection.apply(tx, event, &mut ctx),
            };
            handled.map_err(|source| ProjectionError::Handler {
                projection: projection.name().to_string(),
                position: event.position,
                source,
            })?;
        }
    }
    if !requests.is_empty() && !ledger_started {
        // Rolls the batch back: the ledger must know where effects began first.
        return Err(ProjectionError::EffectLedgerNotStarted {
            group: code.name.clone(),
            through: expected.max(me.replay_until),
        });
    }
    let mut recorded = 0;
    for request in requests {
        let effect = Effect {
            key: request.key,
            group: code.name.clone(),
            name: request.name,
            payload: request.payload,
            position: request.position,
            state: EffectState::Pending,
            attempts: 0,
            last_error: None,
        };
        if M::record_effect(tx, &effect)? {
            recorded += 1;
        }
    }
    me.checkpoint = Some(through);

    let mut swapped_out = None;
    if me.state == GenerationState::Building {
        let live = generations
            .iter_mut()
            .find(|row| row.state == GenerationState::Live);
        // Caught up: with the live generation's checkpoint (it has seen no event past
        // it, so the read models match there), or, for a first generation, with the
        // history it replays.
        let caught_up = match &live {
            Some(live) => live.checkpoint <= me.checkpoint,
            None => me.replay_until <= me.checkpoint,
        };
        if caught_up {
            let keep: HashSet<&str> = me.tables.iter().map(|(l, _)| l.as_str()).collect();
            let mut retired = None;
            if let Some(old) = live {
                // Views first: PostgreSQL refuses to drop a table a view still shows.
                for (logical, _) in &old.tables {
                    if !keep.contains(logical.as_str()) {
                        M::point_view(tx, logical, None)?;
                    }
                }
                for (logical, physical) in &me.tables {
                    M::point_view(tx, logical, Some(physical))?;
                }
                for (_, physical) in &old.tables {
                    M::drop_table(tx, physical)?;
                }
                old.state = GenerationState::Retired;
                M::put_generation(tx, old)?;
                retired = Some(old.generation);
            } else {
                for (logical, physical) in &me.tables {
                    M::point_view(tx, logical, Some(physical))?;
                }
            }
            me.state = GenerationState::Live;
            swapped_out = Some(retired);
        }
    }
    M::put_generation(tx, &me)?;
    Ok(BatchOutcome::Applied {
        recorded,
        live: me.state == GenerationState::Live,
        swapped_out,
        rebuild,
    })
}

/// Whether generation `generation` of `group` was retired (by a swap, possibly in
/// another process).
pub(crate) fn is_retired<M: ReadModel>(
    tx: &mut M::Tx<'_>,
    group: &str,
    generation: u64,
) -> Result<bool, ProjectionError> {
    Ok(M::generations(tx, group)?
        .iter()
        .any(|row| row.generation == generation && row.state == GenerationState::Retired))
}
