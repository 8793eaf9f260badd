//! The `Aggregate` trait and the decisions it returns.

use crate::event::DomainEvent;

/// A consistency boundary written as two pure, synchronous functions:
/// [`decide`](Aggregate::decide) (state and command → events or a typed rejection) and
/// [`evolve`](Aggregate::evolve) (state and event → state). The type itself is the
/// state; [`Default`] is the state before any event.
///
/// Neither function may look at a clock, a database or the network: what the outside
/// world said (a tax rate, a price, the time) comes in on the command and is stored on
/// the event, so replaying events always rebuilds the same state.
///
/// ```
/// use eventfold::{Aggregate, Decision, DomainEvent, EventType};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// #[serde(tag = "type", content = "data")]
/// enum CounterEvent { Incremented { by: u32 } }
/// impl DomainEvent for CounterEvent {
///     const TYPES: &'static [EventType] = &[EventType::new("Incremented", 1)];
/// }
///
/// #[derive(Debug, Default, Serialize, Deserialize)]
/// struct Counter { value: u32 }
///
/// impl Aggregate for Counter {
///     const NAME: &'static str = "counter";
///     type Command = u32;
///     type Event = CounterEvent;
///     type Rejection = String;
///
///     fn decide(&self, by: &u32) -> Result<Decision<CounterEvent>, String> {
///         if self.value.checked_add(*by).is_none() {
///             return Err(format!("{} + {by} overflows", self.value));
///         }
///         Ok(Decision::event(CounterEvent::Incremented { by: *by }))
///     }
///
///     fn evolve(&mut self, event: &CounterEvent) {
///         match event {
///             CounterEvent::Incremented { by } => self.value += by,
///         }
///     }
/// }
/// # let mut c = Counter::default();
/// # for (_, e) in c.decide(&2).unwrap().targets() { c.evolve(e) }
/// # assert_eq!(c.value, 2);
/// ```
pub trait Aggregate: Default + Send + Sync + 'static {
    /// A stable name, part of the names of the aggregate's snapshot streams. Two
    /// aggregates sharing a stream have different names.
    const NAME: &'static str;

    /// The schema version of the state as a snapshot. Change it whenever the state's
    /// shape or meaning changes: snapshots of another version are not read (the state
    /// is rebuilt from events and a fresh snapshot written).
    const SNAPSHOT_VERSION: u32 = 1;

    /// What the aggregate is asked to do.
    type Command: Send + Sync;
    /// The events it decides and evolves from.
    type Event: DomainEvent;
    /// Why it refuses a command.
    type Rejection: std::fmt::Display + std::fmt::Debug + Send + Sync + 'static;

    /// Decides what happens when `command` meets the current state: the events to
    /// append (none is a valid answer) or a rejection.
    fn decide(&self, command: &Self::Command) -> Result<Decision<Self::Event>, Self::Rejection>;

    /// Applies one event to the state. Events of a stream that this aggregate does not
    /// know never reach it.
    fn evolve(&mut self, event: &Self::Event);
}

/// The events an aggregate decided, each with its target stream: the aggregate's own
/// stream (the first it was loaded from) unless [`emit_to`](Decision::emit_to) names
/// another of the streams it was loaded from.
///
/// Events are stored grouped by target stream, in the order of each stream's first
/// event, which is also the order the aggregate evolves them in.
///
/// ```
/// use eventfold::Decision;
/// let one = Decision::event("Opened");
/// let two = Decision::none().emit("Withdrawn").emit_to("account-2", "Deposited");
/// assert_eq!(one.len(), 1);
/// assert_eq!(
///     two.targets().collect::<Vec<_>>(),
///     vec![(None, &"Withdrawn"), (Some("account-2"), &"Deposited")]
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<E> {
    events: Vec<(Option<String>, E)>,
}

impl<E> Decision<E> {
    /// No events: the command is accepted and changes nothing.
    pub fn none() -> Self {
        Decision { events: Vec::new() }
    }

    /// One event, to the aggregate's own stream.
    pub fn event(event: E) -> Self {
        Self::none().emit(event)
    }

    /// Adds an event to the aggregate's own stream.
    pub fn emit(mut self, event: E) -> Self {
        self.events.push((None, event));
        self
    }

    /// Adds an event to `stream`, one of the streams the aggregate was loaded from.
    pub fn emit_to(mut self, stream: impl Into<String>, event: E) -> Self {
        self.events.push((Some(stream.into()), event));
        self
    }

    /// Each event with its explicit target (`None`: the aggregate's own stream).
    pub fn targets(&self) -> impl Iterator<Item = (Option<&str>, &E)> {
        self.events.iter().map(|(s, e)| (s.as_deref(), e))
    }

    /// The events, in the order they were decided.
    pub fn events(&self) -> impl Iterator<Item = &E> {
        self.events.iter().map(|(_, e)| e)
    }

    /// How many events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub(crate) fn into_targets(self) -> Vec<(Option<String>, E)> {
        self.events
    }
}

impl<E> From<Vec<E>> for Decision<E> {
    /// These events, all to the aggregate's own stream.
    fn from(events: Vec<E>) -> Self {
        Decision {
            events: events.into_iter().map(|e| (None, e)).collect(),
        }
    }
}
