//! Given/when/then scenarios for aggregates and process managers, without a store.
//!
//! Every given event goes through its stored form (encoded, then decoded) before the
//! aggregate sees it, and every decided event is checked to come back equal from its
//! stored form, so a scenario also proves the events are stored faithfully.
//!
//! ```
//! # use eventfold::{Aggregate, Decision, DomainEvent, EventType};
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! # #[serde(tag = "type", content = "data")]
//! # enum DoorEvent { DoorOpened, DoorClosed }
//! # impl DomainEvent for DoorEvent {
//! #     const TYPES: &'static [EventType] = &[EventType::new("DoorOpened", 1), EventType::new("DoorClosed", 1)];
//! # }
//! # #[derive(Debug, Default)] struct Door { open: bool }
//! # #[derive(Debug, PartialEq)] enum DoorRejection { AlreadyOpen }
//! # impl std::fmt::Display for DoorRejection {
//! #     fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result { f.write_str("already open") }
//! # }
//! # impl Aggregate for Door {
//! #     const NAME: &'static str = "door";
//! #     type Command = ();
//! #     type Event = DoorEvent;
//! #     type Rejection = DoorRejection;
//! #     fn decide(&self, _: &()) -> Result<Decision<DoorEvent>, DoorRejection> {
//! #         if self.open { Err(DoorRejection::AlreadyOpen) } else { Ok(Decision::event(DoorEvent::DoorOpened)) }
//! #     }
//! #     fn evolve(&mut self, e: &DoorEvent) { self.open = *e == DoorEvent::DoorOpened }
//! # }
//! use eventfold::testkit::Scenario;
//!
//! Scenario::<Door>::given([]).when(()).then([DoorEvent::DoorOpened]);
//! Scenario::<Door>::given([DoorEvent::DoorOpened]).when(()).then_rejected(DoorRejection::AlreadyOpen);
//! Scenario::<Door>::given([DoorEvent::DoorOpened, DoorEvent::DoorClosed]).when(()).then([DoorEvent::DoorOpened]);
//! ```

use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use eventfold_core::{EventData, EventRef, Position, RecordedEvent, Revision};
use uuid::Uuid;

use crate::aggregate::{Aggregate, Decision};
use crate::compensation::{Compensation, Corrections};
use crate::event::DomainEvent;
use crate::process::{Context, Next, ProcessManager, Publisher};

/// An aggregate scenario: given past events, and the compensations written after
/// them.
#[derive(Debug)]
pub struct Scenario<A: Aggregate> {
    state: A,
    /// The given events as stored, at revisions 0, 1, ... of [`SCENARIO_STREAM`].
    given: Vec<RecordedEvent>,
    corrections: Corrections,
}

/// The stream a scenario's given events are in (what its compensations point at).
pub const SCENARIO_STREAM: &str = "scenario";

impl<A: Aggregate> Scenario<A> {
    /// The aggregate after `events` (each through its stored form).
    #[track_caller]
    pub fn given(events: impl IntoIterator<Item = A::Event>) -> Self {
        let given = events
            .into_iter()
            .enumerate()
            .map(|(n, event)| {
                let data = match event.encode() {
                    Ok(data) => data,
                    Err(error) => panic!("event does not encode: {error}"),
                };
                let n = n as u64;
                recorded(SCENARIO_STREAM, Revision(n), Position(n), data, Utc::now())
            })
            .collect();
        let mut scenario = Scenario {
            state: A::default(),
            given,
            corrections: Corrections::new(),
        };
        scenario.fold();
        scenario
    }

    /// And then a `$cancelled` of the given event at `revision` (from 0): the
    /// aggregate is folded without it, as the repository folds a stream.
    ///
    /// ```
    /// # use eventfold::{Aggregate, Decision, DomainEvent, EventType};
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    /// # #[serde(tag = "type", content = "data")]
    /// # enum AccountEvent { Deposited { amount: u64 }, Withdrawn { amount: u64 } }
    /// # impl DomainEvent for AccountEvent {
    /// #     const TYPES: &'static [EventType] = &[EventType::new("Deposited", 1), EventType::new("Withdrawn", 1)];
    /// # }
    /// # #[derive(Debug, Default)] struct Account { balance: u64 }
    /// # impl Aggregate for Account {
    /// #     const NAME: &'static str = "account";
    /// #     type Command = u64;
    /// #     type Event = AccountEvent;
    /// #     type Rejection = String;
    /// #     fn decide(&self, amount: &u64) -> Result<Decision<AccountEvent>, String> {
    /// #         if *amount > self.balance { return Err(format!("only {} left", self.balance)) }
    /// #         Ok(Decision::event(AccountEvent::Withdrawn { amount: *amount }))
    /// #     }
    /// #     fn evolve(&mut self, e: &AccountEvent) {
    /// #         match e { AccountEvent::Deposited { amount } => self.balance += amount,
    /// #                   AccountEvent::Withdrawn { amount } => self.balance -= amount }
    /// #     }
    /// # }
    /// use eventfold::testkit::Scenario;
    /// use AccountEvent::*;
    ///
    /// // A deposit booked twice, cancelled: 100 left, not 200.
    /// Scenario::<Account>::given([Deposited { amount: 100 }, Deposited { amount: 100 }])
    ///     .cancelled(1)
    ///     .when(150)
    ///     .then_rejected("only 100 left".to_string());
    /// // A deposit of 1000 that was 10, corrected.
    /// Scenario::<Account>::given([Deposited { amount: 1000 }])
    ///     .corrected(0, serde_json::json!({"amount": 10}))
    ///     .when(10)
    ///     .then([Withdrawn { amount: 10 }]);
    /// ```
    #[track_caller]
    pub fn cancelled(self, revision: u64) -> Self {
        let at = self.given_at(revision);
        self.compensated(Compensation::cancel(at, "scenario"))
    }

    /// And then a `$corrected` of the given event at `revision` by the JSON merge
    /// patch `patch` of its data: the aggregate folds its corrected form.
    #[track_caller]
    pub fn corrected(self, revision: u64, patch: serde_json::Value) -> Self {
        let at = self.given_at(revision);
        self.compensated(Compensation::correct(at, patch, "scenario"))
    }

    #[track_caller]
    fn given_at(&self, revision: u64) -> EventRef {
        assert!(
            revision < self.given.len() as u64,
            "no given event at revision {revision} (there are {})",
            self.given.len()
        );
        EventRef::new(SCENARIO_STREAM, Revision(revision))
    }

    #[track_caller]
    fn compensated(mut self, compensation: Compensation) -> Self {
        self.corrections.insert(Uuid::new_v4(), compensation);
        self.fold();
        self
    }

    /// Folds the given events as corrected into a fresh state.
    #[track_caller]
    fn fold(&mut self) {
        self.state = A::default();
        for event in &self.given {
            let corrected = match self.corrections.apply(event.clone()) {
                Ok(Some(corrected)) => corrected,
                Ok(None) => continue,
                Err(error) => panic!("event {} does not correct: {error}", event.revision),
            };
            match A::Event::decode(&corrected) {
                Ok(Some(decoded)) => self.state.evolve(&decoded),
                Ok(None) => panic!(
                    "event type '{}' is not listed in TYPES",
                    corrected.event_type
                ),
                Err(error) => panic!(
                    "event {} does not decode from its stored (corrected) form: {error}",
                    corrected.revision
                ),
            }
        }
    }

    /// When `command` is decided.
    pub fn when(self, command: A::Command) -> Then<A> {
        Then {
            result: self.state.decide(&command),
        }
    }
}

/// An aggregate scenario's outcome, to check.
#[derive(Debug)]
pub struct Then<A: Aggregate> {
    result: Result<Decision<A::Event>, A::Rejection>,
}

impl<A: Aggregate> Then<A>
where
    A::Event: PartialEq + Debug,
{
    /// Then exactly these events are decided (in order; targets not checked).
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = A::Event>) {
        let decision = self.decision();
        let expected: Vec<A::Event> = expected.into_iter().collect();
        let actual: Vec<&A::Event> = decision.events().collect();
        assert_eq!(
            actual,
            expected.iter().collect::<Vec<_>>(),
            "decided events"
        );
    }

    /// Then exactly this decision: events and their target streams.
    #[track_caller]
    pub fn then_decision(self, expected: Decision<A::Event>) {
        assert_eq!(self.decision(), expected, "decision");
    }

    /// Then the command is rejected with `expected`.
    #[track_caller]
    pub fn then_rejected(self, expected: A::Rejection)
    where
        A::Rejection: PartialEq,
    {
        match self.result {
            Err(reason) => assert_eq!(reason, expected, "rejection"),
            Ok(decision) => panic!("expected rejection {expected:?}, but decided {decision:?}"),
        }
    }

    /// The decision, each event checked to come back equal from its stored form.
    #[track_caller]
    fn decision(self) -> Decision<A::Event> {
        match self.result {
            Ok(decision) => {
                for event in decision.events() {
                    assert_eq!(
                        &stored_form(event),
                        event,
                        "event after a round trip through the store"
                    );
                }
                decision
            }
            Err(reason) => panic!("expected events, but the command was rejected: {reason}"),
        }
    }
}

/// `event` encoded as the store keeps it, then decoded back.
#[track_caller]
fn stored_form<E: DomainEvent>(event: &E) -> E {
    let data = match event.encode() {
        Ok(data) => data,
        Err(error) => panic!("event does not encode: {error}"),
    };
    let recorded = recorded("testkit", Revision(0), Position(0), data, Utc::now());
    match E::decode(&recorded) {
        Ok(Some(decoded)) => decoded,
        Ok(None) => panic!(
            "event type '{}' is not listed in TYPES",
            recorded.event_type
        ),
        Err(error) => panic!("event does not decode from its stored form: {error}"),
    }
}

fn recorded(
    stream: &str,
    revision: Revision,
    position: Position,
    data: EventData,
    at: DateTime<Utc>,
) -> RecordedEvent {
    RecordedEvent {
        stream: stream.to_string(),
        revision,
        position,
        id: data.id.unwrap_or_else(Uuid::now_v7),
        event_type: data.event_type,
        version: data.version,
        data: data.data,
        metadata: data.metadata,
        recorded_at: at,
    }
}

/// A process-manager scenario: given the messages it saw (their output goes to a fake
/// publisher that is cleared afterwards), when one more message (or its timeout), then
/// this output and this next step.
///
/// ```
/// # use std::time::Duration;
/// # use eventfold::{DomainEvent, EventType};
/// # use eventfold::process::{Context, Next, ProcessManager};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// # #[serde(tag = "type", content = "data")]
/// # enum In { OrderPlaced, PaymentReceived }
/// # impl DomainEvent for In { const TYPES: &'static [EventType] = &[EventType::new("OrderPlaced", 1), EventType::new("PaymentReceived", 1)]; }
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// # #[serde(tag = "type", content = "data")]
/// # enum Out { ShipOrder, CancelOrder }
/// # impl DomainEvent for Out { const TYPES: &'static [EventType] = &[EventType::new("ShipOrder", 1), EventType::new("CancelOrder", 1)]; }
/// # #[derive(Debug, Default)] struct Shipping;
/// # impl ProcessManager for Shipping {
/// #     const VERSION: u32 = 1;
/// #     type Message = In;
/// #     type Output = Out;
/// #     fn handle(&mut self, m: &In, ctx: &mut Context<Out>) -> Next {
/// #         match m { In::OrderPlaced => Next::Wait(Duration::from_secs(60)), In::PaymentReceived => { ctx.publish(Out::ShipOrder); Next::Done } }
/// #     }
/// #     fn on_timeout(&mut self, ctx: &mut Context<Out>) -> Next { ctx.publish(Out::CancelOrder); Next::Done }
/// #     fn on_takeover(&mut self, _: &mut Context<Out>) -> Next { Next::Wait(Duration::from_secs(60)) }
/// # }
/// use eventfold::testkit::ProcessScenario;
///
/// ProcessScenario::<Shipping>::given([In::OrderPlaced])
///     .when(In::PaymentReceived)
///     .then_publishes([Out::ShipOrder])
///     .then_next(Next::Done);
/// ProcessScenario::<Shipping>::given([In::OrderPlaced])
///     .when_timeout()
///     .then_publishes([Out::CancelOrder]);
/// ```
#[derive(Debug)]
pub struct ProcessScenario<P: ProcessManager> {
    process: P,
    publisher: RecordingPublisher,
    correlation_id: Uuid,
    deadline: Option<DateTime<Utc>>,
    time: DateTime<Utc>,
}

impl<P: ProcessManager> ProcessScenario<P> {
    /// The process after `messages`, handled live; the fake publisher is cleared after.
    #[track_caller]
    pub fn given(messages: impl IntoIterator<Item = P::Message>) -> Self {
        let mut scenario = ProcessScenario {
            process: P::default(),
            publisher: RecordingPublisher::new(),
            correlation_id: Uuid::now_v7(),
            deadline: None,
            time: Utc::now(),
        };
        for message in messages {
            let message = stored_form(&message);
            scenario.step(|p, ctx| p.handle(&message, ctx));
        }
        scenario.publisher.clear();
        scenario
    }

    /// When `message` arrives.
    #[track_caller]
    pub fn when(mut self, message: P::Message) -> ProcessThen<P> {
        let message = stored_form(&message);
        let next = self.step(|p, ctx| p.handle(&message, ctx));
        self.then(next)
    }

    /// When the deadline of the last wait passes.
    #[track_caller]
    pub fn when_timeout(mut self) -> ProcessThen<P> {
        let Some(deadline) = self.deadline else {
            panic!("the process is not waiting: no timeout can fire");
        };
        self.time = deadline;
        let next = self.step(|p, ctx| p.on_timeout(ctx));
        self.then(next)
    }

    /// When a newer version takes the instance over (call on the scenario of that
    /// version: the given messages were replayed through it).
    #[track_caller]
    pub fn when_taken_over(mut self) -> ProcessThen<P> {
        let next = self.step(|p, ctx| p.on_takeover(ctx));
        self.then(next)
    }

    fn step(&mut self, f: impl FnOnce(&mut P, &mut Context<P::Output>) -> Next) -> Next {
        let mut ctx = Context::new(self.correlation_id, self.time);
        let next = f(&mut self.process, &mut ctx);
        for output in ctx.into_outputs() {
            let data = match output.encode() {
                Ok(data) => data,
                Err(error) => panic!("output does not encode: {error}"),
            };
            self.publisher.record(vec![data]);
        }
        self.deadline = match next {
            Next::Wait(timeout) => Some(crate::process::deadline(self.time, timeout)),
            Next::Done => None,
        };
        next
    }

    fn then(self, next: Next) -> ProcessThen<P> {
        ProcessThen {
            published: self.publisher.take(),
            next,
            _process: std::marker::PhantomData,
        }
    }
}

/// A process-manager scenario's outcome, to check.
#[derive(Debug)]
pub struct ProcessThen<P: ProcessManager> {
    published: Vec<EventData>,
    next: Next,
    _process: std::marker::PhantomData<P>,
}

impl<P: ProcessManager> ProcessThen<P>
where
    P::Output: PartialEq + Debug,
{
    /// Then exactly these messages are published, in order.
    #[track_caller]
    pub fn then_publishes(self, expected: impl IntoIterator<Item = P::Output>) -> Self {
        let actual: Vec<P::Output> = self
            .published
            .iter()
            .map(|data| {
                let event = recorded(
                    "testkit",
                    Revision(0),
                    Position(0),
                    data.clone(),
                    Utc::now(),
                );
                match P::Output::decode(&event) {
                    Ok(Some(output)) => output,
                    _ => panic!("published '{}' does not decode", event.event_type),
                }
            })
            .collect();
        assert_eq!(
            actual,
            expected.into_iter().collect::<Vec<_>>(),
            "published"
        );
        self
    }

    /// Then the process's next step is `expected`.
    #[track_caller]
    pub fn then_next(self, expected: Next) -> Self {
        assert_eq!(self.next, expected, "next step");
        self
    }
}

/// A [`Publisher`] that keeps what it is given, for tests.
///
/// ```
/// use eventfold::testkit::RecordingPublisher;
/// let publisher = RecordingPublisher::new();
/// assert!(publisher.take().is_empty());
/// ```
#[derive(Debug, Clone, Default)]
pub struct RecordingPublisher {
    published: Arc<Mutex<Vec<EventData>>>,
}

impl RecordingPublisher {
    /// An empty publisher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything published so far, leaving it empty.
    pub fn take(&self) -> Vec<EventData> {
        std::mem::take(&mut *self.lock())
    }

    /// Forgets everything published so far.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The types of everything published so far, in order.
    pub fn types(&self) -> Vec<String> {
        self.lock().iter().map(|e| e.event_type.clone()).collect()
    }

    fn record(&self, messages: Vec<EventData>) {
        self.lock().extend(messages);
    }

    fn lock(&self) -> MutexGuard<'_, Vec<EventData>> {
        // A test that panicked while publishing leaves a usable list.
        self.published
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl Publisher for RecordingPublisher {
    async fn publish(&self, messages: Vec<EventData>) -> eventfold_core::Result<()> {
        self.record(messages);
        Ok(())
    }
}
