//! The versions of a process manager by start time ([`ProcessVersions`]), and the
//! type erasure that lets versions differ in state and message types.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use eventfold_core::{EventData, RecordedEvent};

use super::manager::{Context, Next, ProcessManager};
use crate::error::Result;
use crate::event::{DomainEvent, EventType, Upcaster};

/// The versions of one process manager, each with the cut-off from which new instances
/// start with it.
///
/// ```
/// # use std::time::Duration;
/// # use eventfold::{DomainEvent, EventType};
/// # use eventfold::process::{Context, Next, ProcessManager};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// # #[serde(tag = "type", content = "data")]
/// # enum In { OrderPlaced }
/// # impl DomainEvent for In { const TYPES: &'static [EventType] = &[EventType::new("OrderPlaced", 1)]; }
/// # macro_rules! version { ($name:ident, $v:expr) => {
/// # #[derive(Debug, Default)] struct $name;
/// # impl ProcessManager for $name {
/// #     const VERSION: u32 = $v;
/// #     type Message = In;
/// #     type Output = In;
/// #     fn handle(&mut self, _: &In, _: &mut Context<In>) -> Next { Next::Done }
/// #     fn on_timeout(&mut self, _: &mut Context<In>) -> Next { Next::Done }
/// #     fn on_takeover(&mut self, _: &mut Context<In>) -> Next { Next::Done }
/// # } } }
/// # version!(ShippingV1, 1);
/// # version!(ShippingV2, 2);
/// use eventfold::process::ProcessVersions;
///
/// let release = "2026-12-01T00:00:00Z".parse().unwrap();
/// let versions = ProcessVersions::new::<ShippingV1>().then::<ShippingV2>(release);
/// assert_eq!(versions.version_at("2026-11-30T23:59:59Z".parse().unwrap()), 1);
/// assert_eq!(versions.version_at(release), 2);
/// ```
#[derive(Clone)]
pub struct ProcessVersions {
    /// Sorted by cut-off; the first has none (it is in force from the beginning).
    versions: Vec<CutOff>,
}

/// A version with the start time from which new instances run it.
type CutOff = (Option<DateTime<Utc>>, Arc<dyn Version>);

impl std::fmt::Debug for ProcessVersions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.versions
                    .iter()
                    .map(|(cut_off, v)| (cut_off, v.number())),
            )
            .finish()
    }
}

impl ProcessVersions {
    /// `P` is the first version, in force for every instance started before the next
    /// version's cut-off.
    pub fn new<P: ProcessManager>() -> Self {
        ProcessVersions {
            versions: vec![(None, Arc::new(Typed::<P>(std::marker::PhantomData)))],
        }
    }

    /// Instances started at or after `cut_off` run `P`. Its version number must be
    /// larger than the previous ones' and `cut_off` later than theirs.
    ///
    /// # Panics
    ///
    /// When `P::VERSION` is not larger than every earlier version's number, or
    /// `cut_off` not later than every earlier cut-off: the versions are declared once,
    /// at start-up, and instances record version numbers, so a duplicate or a
    /// reordering would silently run the wrong code.
    pub fn then<P: ProcessManager>(mut self, cut_off: DateTime<Utc>) -> Self {
        // The list is kept in declaration order, which these checks make the order
        // of both cut-offs and numbers.
        if let Some((last_cut_off, last)) = self.versions.last() {
            assert!(
                P::VERSION > last.number(),
                "process version {} is declared after version {}: version numbers must be unique and increasing",
                P::VERSION,
                last.number()
            );
            assert!(
                last_cut_off.is_none_or(|last| cut_off > last),
                "the cut-off of process version {} ({cut_off}) is not later than the previous version's",
                P::VERSION
            );
        }
        self.versions.push((
            Some(cut_off),
            Arc::new(Typed::<P>(std::marker::PhantomData)),
        ));
        self
    }

    /// The version number an instance started at `started_at` runs.
    pub fn version_at(&self, started_at: DateTime<Utc>) -> u32 {
        self.at(started_at).number()
    }

    pub(super) fn at(&self, started_at: DateTime<Utc>) -> &Arc<dyn Version> {
        let mut chosen = &self.versions[0].1;
        for (cut_off, version) in &self.versions {
            if cut_off.is_none_or(|c| c <= started_at) {
                chosen = version;
            }
        }
        chosen
    }

    pub(super) fn get(&self, number: u32) -> Option<&Arc<dyn Version>> {
        self.versions
            .iter()
            .map(|(_, v)| v)
            .find(|v| v.number() == number)
    }

    pub(super) fn message_types(&self) -> Vec<String> {
        let mut types: Vec<String> = Vec::new();
        for (_, version) in &self.versions {
            for t in version.message_types() {
                if !types.iter().any(|known| known == t.name) {
                    types.push(t.name.to_string());
                }
            }
        }
        types
    }
}

/// One version, with its types erased so that versions can differ in state and
/// message types.
pub(super) trait Version: Send + Sync {
    fn number(&self) -> u32;
    fn message_types(&self) -> &'static [EventType];
    fn starts_with(&self, upcaster: &dyn Upcaster, message: &RecordedEvent) -> Result<bool>;
    fn instance(&self) -> Box<dyn Instance>;
    /// The state migrated from what version `from` exported, if this version can.
    fn migrate(&self, from: u32, state: &serde_json::Value) -> Option<Box<dyn Instance>>;
}

/// A running instance of one version.
pub(super) trait Instance: Send {
    /// Handles the message; `None` when this version does not know its type.
    fn handle(
        &mut self,
        upcaster: &dyn Upcaster,
        message: &RecordedEvent,
        ctx: &mut Context<EventData>,
    ) -> Result<Option<Next>>;
    fn on_timeout(&mut self, ctx: &mut Context<EventData>) -> Result<Next>;
    fn on_takeover(&mut self, ctx: &mut Context<EventData>) -> Result<Next>;
    fn on_takeover_requested(&mut self, ctx: &mut Context<EventData>) -> Result<()>;
    fn export_state(&self) -> Option<serde_json::Value>;
}

struct Typed<P>(std::marker::PhantomData<fn() -> P>);

impl<P: ProcessManager> Version for Typed<P> {
    fn number(&self) -> u32 {
        P::VERSION
    }

    fn message_types(&self) -> &'static [EventType] {
        P::Message::TYPES
    }

    fn starts_with(&self, upcaster: &dyn Upcaster, message: &RecordedEvent) -> Result<bool> {
        let mut starts = false;
        for event in upcaster.upcast(message.clone())? {
            if let Some(message) = P::Message::decode(&event)? {
                starts |= P::starts_with(&message);
            }
        }
        Ok(starts)
    }

    fn instance(&self) -> Box<dyn Instance> {
        Box::new(State(P::default()))
    }

    fn migrate(&self, from: u32, state: &serde_json::Value) -> Option<Box<dyn Instance>> {
        P::migrate_state(from, state).map(|state| Box::new(State(state)) as Box<dyn Instance>)
    }
}

struct State<P>(P);

impl<P: ProcessManager> State<P> {
    fn step(
        &mut self,
        ctx: &mut Context<EventData>,
        f: impl FnOnce(&mut P, &mut Context<P::Output>) -> Next,
    ) -> Result<Next> {
        let mut typed = Context::new(ctx.correlation_id(), ctx.time());
        let next = f(&mut self.0, &mut typed);
        for output in typed.into_outputs() {
            ctx.publish(output.encode()?);
        }
        Ok(next)
    }
}

impl<P: ProcessManager> Instance for State<P> {
    fn handle(
        &mut self,
        upcaster: &dyn Upcaster,
        message: &RecordedEvent,
        ctx: &mut Context<EventData>,
    ) -> Result<Option<Next>> {
        let mut next = None;
        for event in upcaster.upcast(message.clone())? {
            if let Some(message) = P::Message::decode(&event)? {
                next = Some(self.step(ctx, |p, ctx| p.handle(&message, ctx))?);
            }
        }
        Ok(next)
    }

    fn on_timeout(&mut self, ctx: &mut Context<EventData>) -> Result<Next> {
        self.step(ctx, |p, ctx| p.on_timeout(ctx))
    }

    fn on_takeover(&mut self, ctx: &mut Context<EventData>) -> Result<Next> {
        self.step(ctx, |p, ctx| p.on_takeover(ctx))
    }

    fn on_takeover_requested(&mut self, ctx: &mut Context<EventData>) -> Result<()> {
        self.step(ctx, |p, ctx| {
            p.on_takeover_requested(ctx);
            // Not a step of its own: the newer version's on_takeover says what is next.
            Next::Done
        })
        .map(|_| ())
    }

    fn export_state(&self) -> Option<serde_json::Value> {
        self.0.export_state()
    }
}
