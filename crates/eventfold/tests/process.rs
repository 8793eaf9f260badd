//! Process managers: output published once (replays are muted), redelivery harmless,
//! durable timeouts fired after a restart, versions chosen by start time, Takeover on
//! the same correlation id (the old version winding down, the state migrated, every
//! instance at once); and the process test kit.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use eventfold::process::{Context, Next, ProcessManager, ProcessRunner, ProcessVersions};
use eventfold::testkit::{ProcessScenario, RecordingPublisher};
use eventfold::{
    DomainEvent, EventData, EventStore, EventType, ExpectedVersion, InMemoryStore, Position,
    RecordedEvent,
};
use eventfold_metadata::StreamAdmin;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
enum OrderEvent {
    OrderPlaced { order: String },
    PaymentReceived { order: String },
}

impl DomainEvent for OrderEvent {
    const TYPES: &'static [EventType] = &[
        EventType::new("OrderPlaced", 1),
        EventType::new("PaymentReceived", 1),
    ];
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
enum ShippingCommand {
    RequestPayment { order: String, reminder: bool },
    ShipOrder { order: String },
    CancelOrder { order: String },
    WithdrawRequest { order: String },
}

impl DomainEvent for ShippingCommand {
    const TYPES: &'static [EventType] = &[
        EventType::new("RequestPayment", 1),
        EventType::new("ShipOrder", 1),
        EventType::new("CancelOrder", 1),
        EventType::new("WithdrawRequest", 1),
    ];
}

const WAIT_V1: Duration = Duration::from_secs(30 * 60);
const WAIT_V2: Duration = Duration::from_secs(60 * 60);

/// Version 1: ask for payment, ship when paid, cancel after 30 minutes.
#[derive(Debug, Default)]
struct ShippingV1 {
    order: String,
}

impl ProcessManager for ShippingV1 {
    const VERSION: u32 = 1;
    type Message = OrderEvent;
    type Output = ShippingCommand;

    fn starts_with(message: &OrderEvent) -> bool {
        matches!(message, OrderEvent::OrderPlaced { .. })
    }

    fn handle(&mut self, message: &OrderEvent, ctx: &mut Context<ShippingCommand>) -> Next {
        match message {
            OrderEvent::OrderPlaced { order } => {
                self.order = order.clone();
                ctx.publish(ShippingCommand::RequestPayment {
                    order: order.clone(),
                    reminder: false,
                });
                Next::Wait(WAIT_V1)
            }
            OrderEvent::PaymentReceived { order } => {
                ctx.publish(ShippingCommand::ShipOrder {
                    order: order.clone(),
                });
                Next::Done
            }
        }
    }

    fn on_timeout(&mut self, ctx: &mut Context<ShippingCommand>) -> Next {
        ctx.publish(ShippingCommand::CancelOrder {
            order: self.order.clone(),
        });
        Next::Done
    }

    fn on_takeover(&mut self, _: &mut Context<ShippingCommand>) -> Next {
        Next::Wait(WAIT_V1)
    }
}

/// Version 2: waits an hour, and reminds the customer when it takes an order over.
#[derive(Debug, Default)]
struct ShippingV2 {
    v1: ShippingV1,
}

impl ProcessManager for ShippingV2 {
    const VERSION: u32 = 2;
    type Message = OrderEvent;
    type Output = ShippingCommand;

    fn starts_with(message: &OrderEvent) -> bool {
        ShippingV1::starts_with(message)
    }

    fn handle(&mut self, message: &OrderEvent, ctx: &mut Context<ShippingCommand>) -> Next {
        match self.v1.handle(message, ctx) {
            Next::Wait(_) => Next::Wait(WAIT_V2),
            Next::Done => Next::Done,
        }
    }

    fn on_timeout(&mut self, ctx: &mut Context<ShippingCommand>) -> Next {
        self.v1.on_timeout(ctx)
    }

    fn on_takeover(&mut self, ctx: &mut Context<ShippingCommand>) -> Next {
        ctx.publish(ShippingCommand::RequestPayment {
            order: self.v1.order.clone(),
            reminder: true,
        });
        Next::Wait(WAIT_V2)
    }
}

struct World {
    store: Arc<InMemoryStore>,
    publisher: RecordingPublisher,
    runner: ProcessRunner,
    checkpoint: Position,
}

impl World {
    fn new(versions: ProcessVersions) -> Self {
        Self::on(Arc::new(InMemoryStore::new()), versions)
    }

    fn on(store: Arc<InMemoryStore>, versions: ProcessVersions) -> Self {
        let publisher = RecordingPublisher::new();
        let runner = ProcessRunner::new(
            "shipping",
            store.clone(),
            versions,
            Arc::new(publisher.clone()),
        );
        World {
            store,
            publisher,
            runner,
            checkpoint: Position::START,
        }
    }

    fn v1() -> Self {
        Self::new(ProcessVersions::new::<ShippingV1>())
    }

    /// Another service records `event` in the conversation `correlation`.
    async fn record(&self, correlation: Uuid, event: OrderEvent) -> RecordedEvent {
        let order = match &event {
            OrderEvent::OrderPlaced { order } | OrderEvent::PaymentReceived { order } => {
                order.clone()
            }
        };
        let data = event.encode().unwrap().with_correlation_id(correlation);
        let stream = format!("order-{order}");
        let written = self
            .store
            .append(&stream, ExpectedVersion::Any, vec![data])
            .await
            .unwrap();
        self.store
            .read_stream(
                &stream,
                eventfold::ReadStream::forward().from(written.last_revision),
            )
            .await
            .unwrap()
            .remove(0)
    }

    async fn run(&mut self) -> Vec<ShippingCommand> {
        self.checkpoint = self.runner.catch_up(self.checkpoint).await.unwrap();
        self.published()
    }

    fn published(&self) -> Vec<ShippingCommand> {
        self.publisher
            .take()
            .into_iter()
            .map(decode_output)
            .collect()
    }
}

fn decode_output(data: EventData) -> ShippingCommand {
    let event = RecordedEvent {
        stream: "out".into(),
        revision: eventfold::Revision(0),
        position: Position(0),
        id: data.id.unwrap(),
        event_type: data.event_type,
        version: data.version,
        data: data.data,
        metadata: data.metadata,
        recorded_at: Utc::now(),
    };
    ShippingCommand::decode(&event).unwrap().unwrap()
}

fn request(order: &str) -> ShippingCommand {
    ShippingCommand::RequestPayment {
        order: order.into(),
        reminder: false,
    }
}

fn placed(order: &str) -> OrderEvent {
    OrderEvent::OrderPlaced {
        order: order.into(),
    }
}

fn paid(order: &str) -> OrderEvent {
    OrderEvent::PaymentReceived {
        order: order.into(),
    }
}

fn after(time: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    time + TimeDelta::from_std(wait).unwrap()
}

#[tokio::test]
async fn output_is_published_once_because_replays_are_muted() {
    let mut world = World::v1();
    let correlation = Uuid::now_v7();

    let order = world.record(correlation, placed("7")).await;
    let first = world.run().await;
    let payment = world.record(correlation, paid("7")).await;
    let publisher = world.publisher.clone();
    world.checkpoint = world.runner.catch_up(world.checkpoint).await.unwrap();
    let published = publisher.take();

    assert_eq!(first, [request("7")]);
    assert_eq!(
        published.len(),
        1,
        "the replay of OrderPlaced published nothing"
    );
    assert_eq!(
        decode_output(published[0].clone()),
        ShippingCommand::ShipOrder { order: "7".into() }
    );
    assert_eq!(published[0].correlation_id(), Some(correlation));
    assert_eq!(published[0].causation_id(), Some(payment.id));
    assert_ne!(order.id, payment.id);
}

#[tokio::test]
async fn delivering_the_same_messages_again_publishes_nothing() {
    let mut world = World::v1();
    let correlation = Uuid::now_v7();
    world.record(correlation, placed("7")).await;
    world.run().await;

    world.checkpoint = Position::START;
    let again = world.run().await;

    assert_eq!(again, []);
}

#[tokio::test]
async fn a_message_that_does_not_start_the_process_starts_no_instance() {
    let mut world = World::v1();
    let correlation = Uuid::now_v7();

    world.record(correlation, paid("7")).await;
    let published = world.run().await;

    assert_eq!(published, []);
    assert_eq!(
        world.runner.instance_version(correlation).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn a_timeout_is_durable_and_fires_once_after_a_restart() {
    let mut world = World::v1();
    let correlation = Uuid::now_v7();
    let order = world.record(correlation, placed("7")).await;
    world.run().await;

    let early = world
        .runner
        .fire_due_timeouts(after(order.recorded_at, WAIT_V1 - Duration::from_secs(1)))
        .await
        .unwrap();
    // A new runner (a restart) finds the timeout in the store.
    let restarted = ProcessRunner::new(
        "shipping",
        world.store.clone(),
        ProcessVersions::new::<ShippingV1>(),
        Arc::new(world.publisher.clone()),
    );
    let due = after(order.recorded_at, WAIT_V1);
    let fired = restarted.fire_due_timeouts(due).await.unwrap();
    let cancelled = world.published();
    let fired_again = restarted.fire_due_timeouts(due).await.unwrap();
    world.record(correlation, paid("7")).await;
    let after_completion = world.run().await;

    assert_eq!((early, fired, fired_again), (0, 1, 0));
    assert_eq!(
        cancelled,
        [ShippingCommand::CancelOrder { order: "7".into() }]
    );
    assert_eq!(
        after_completion,
        [],
        "a completed process ignores later messages"
    );
}

#[tokio::test]
async fn a_timeout_superseded_by_a_message_does_not_fire() {
    let mut world = World::v1();
    let correlation = Uuid::now_v7();
    let order = world.record(correlation, placed("7")).await;
    world.record(correlation, paid("7")).await;
    world.run().await;

    let fired = world
        .runner
        .fire_due_timeouts(after(order.recorded_at, WAIT_V1 * 2))
        .await
        .unwrap();

    assert_eq!(fired, 0);
    assert_eq!(world.published(), []);
}

#[tokio::test]
async fn each_instance_runs_the_version_in_force_when_it_started() {
    let store = Arc::new(InMemoryStore::new());
    let placed_first = {
        let data = placed("1").encode().unwrap();
        store
            .append("order-1", ExpectedVersion::Any, vec![data])
            .await
            .unwrap();
        store
            .read_stream("order-1", eventfold::ReadStream::forward())
            .await
            .unwrap()
            .remove(0)
    };
    let cut_off = placed_first.recorded_at + TimeDelta::microseconds(1);
    // Wait for the clock to pass the cut-off: the next event is recorded after it.
    while Utc::now() <= cut_off {
        std::hint::spin_loop();
    }
    let mut world = World::on(
        store,
        ProcessVersions::new::<ShippingV1>().then::<ShippingV2>(cut_off),
    );
    let second = Uuid::now_v7();
    world.record(second, placed("2")).await;

    world.run().await;

    assert_eq!(
        world
            .runner
            .instance_version(placed_first.id)
            .await
            .unwrap(),
        Some(1)
    );
    assert_eq!(
        world.runner.instance_version(second).await.unwrap(),
        Some(2)
    );
}

#[tokio::test]
async fn takeover_hands_an_instance_to_the_new_version_on_the_same_correlation_id() {
    let future = Utc::now() + TimeDelta::days(365);
    let mut world = World::new(ProcessVersions::new::<ShippingV1>().then::<ShippingV2>(future));
    let correlation = Uuid::now_v7();
    world.record(correlation, placed("7")).await;
    world.run().await;

    world.runner.take_over(correlation, 2).await.unwrap();
    let reminded = world.published();
    world.runner.take_over(correlation, 2).await.unwrap();
    let second_takeover = world.published();
    world.record(correlation, paid("7")).await;
    let shipped = world.run().await;

    // The order id comes from v2's state, rebuilt from what v1 saw.
    assert_eq!(
        reminded,
        [ShippingCommand::RequestPayment {
            order: "7".into(),
            reminder: true
        }]
    );
    assert_eq!(second_takeover, []);
    assert_eq!(
        world.runner.instance_version(correlation).await.unwrap(),
        Some(2)
    );
    assert_eq!(shipped, [ShippingCommand::ShipOrder { order: "7".into() }]);
}

#[tokio::test]
async fn after_a_takeover_the_new_versions_deadline_applies() {
    let future = Utc::now() + TimeDelta::days(365);
    let mut world = World::new(ProcessVersions::new::<ShippingV1>().then::<ShippingV2>(future));
    let correlation = Uuid::now_v7();
    let order = world.record(correlation, placed("7")).await;
    world.run().await;
    world.runner.take_over(correlation, 2).await.unwrap();
    world.published();

    // v1's deadline (30 min after the order) no longer applies; v2's (1 h after the
    // takeover) does.
    let at_v1_deadline = world
        .runner
        .fire_due_timeouts(after(order.recorded_at, WAIT_V1))
        .await
        .unwrap();
    let at_v2_deadline = world
        .runner
        .fire_due_timeouts(after(Utc::now(), WAIT_V2))
        .await
        .unwrap();

    assert_eq!((at_v1_deadline, at_v2_deadline), (0, 1));
    assert_eq!(
        world.published(),
        [ShippingCommand::CancelOrder { order: "7".into() }]
    );
}

// ---- the process test kit ----

#[test]
fn given_a_placed_order_when_paid_then_it_ships_and_completes() {
    ProcessScenario::<ShippingV1>::given([placed("7")])
        .when(paid("7"))
        .then_publishes([ShippingCommand::ShipOrder { order: "7".into() }])
        .then_next(Next::Done);
}

#[test]
fn given_a_placed_order_when_the_deadline_passes_then_it_is_cancelled() {
    ProcessScenario::<ShippingV1>::given([placed("7")])
        .when_timeout()
        .then_publishes([ShippingCommand::CancelOrder { order: "7".into() }])
        .then_next(Next::Done);
}

#[test]
fn given_nothing_when_an_order_is_placed_then_payment_is_requested_with_a_deadline() {
    ProcessScenario::<ShippingV1>::given([])
        .when(placed("7"))
        .then_publishes([request("7")])
        .then_next(Next::Wait(WAIT_V1));
}

#[test]
fn given_what_v1_saw_when_v2_takes_over_then_it_reminds_the_customer() {
    ProcessScenario::<ShippingV2>::given([placed("7")])
        .when_taken_over()
        .then_publishes([ShippingCommand::RequestPayment {
            order: "7".into(),
            reminder: true,
        }])
        .then_next(Next::Wait(WAIT_V2));
}

#[test]
#[should_panic(expected = "published")]
fn the_process_test_kit_clears_the_publisher_after_the_given() {
    // RequestPayment was published during the given; it must not count.
    ProcessScenario::<ShippingV1>::given([placed("7")])
        .when(paid("7"))
        .then_publishes([
            request("7"),
            ShippingCommand::ShipOrder { order: "7".into() },
        ]);
}

/// Hands what is published to the test as it happens.
struct ChannelPublisher(tokio::sync::mpsc::UnboundedSender<EventData>);

#[async_trait::async_trait]
impl eventfold::process::Publisher for ChannelPublisher {
    async fn publish(&self, messages: Vec<EventData>) -> eventfold_core::Result<()> {
        for message in messages {
            let _ = self.0.send(message);
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_running_runner_follows_the_log_live() {
    let store = Arc::new(InMemoryStore::new());
    let (sender, mut published) = tokio::sync::mpsc::unbounded_channel();
    let runner = ProcessRunner::new(
        "shipping",
        store.clone(),
        ProcessVersions::new::<ShippingV1>(),
        Arc::new(ChannelPublisher(sender)),
    );
    let running =
        tokio::spawn(async move { runner.run(Position::START, Duration::from_secs(3600)).await });
    let world = World::on(store, ProcessVersions::new::<ShippingV1>());

    world.record(Uuid::now_v7(), placed("7")).await;
    let first = published.recv().await.unwrap();

    assert_eq!(decode_output(first), request("7"));
    assert!(!running.is_finished());
    running.abort();
}

// ---- outbox: record first, then publish ----

/// Another service records `event` in the conversation `correlation`, in `store`.
async fn record_in(store: &InMemoryStore, correlation: Uuid, event: OrderEvent) -> RecordedEvent {
    let data = event.encode().unwrap().with_correlation_id(correlation);
    let written = store
        .append("order-7", ExpectedVersion::Any, vec![data])
        .await
        .unwrap();
    store
        .read_stream(
            "order-7",
            eventfold::ReadStream::forward().from(written.last_revision),
        )
        .await
        .unwrap()
        .remove(0)
}

#[tokio::test]
async fn a_step_that_loses_a_race_publishes_nothing_from_its_stale_state() {
    let store = common::hooked::hooked();
    let future = Utc::now() + TimeDelta::days(365);
    let versions = || ProcessVersions::new::<ShippingV1>().then::<ShippingV2>(future);
    let publisher = RecordingPublisher::new();
    let runner = ProcessRunner::new(
        "shipping",
        store.clone(),
        versions(),
        Arc::new(publisher.clone()),
    );
    let correlation = Uuid::now_v7();
    let order = record_in(store.inner(), correlation, placed("7")).await;
    runner.handle_event(&order).await.unwrap();
    publisher.take();
    let payment = record_in(store.inner(), correlation, paid("7")).await;
    // While the runner handles the payment with v1, v2 takes the instance over: the
    // runner's step meets a wrong expected version and is redone with v2.
    let other = ProcessRunner::new(
        "shipping",
        store.inner().clone(),
        versions(),
        Arc::new(publisher.clone()),
    );
    store.layer().before_next_append(async move {
        other.take_over(correlation, 2).await.unwrap();
    });

    runner.handle_event(&payment).await.unwrap();

    let published = publisher.take();
    let commands: Vec<ShippingCommand> = published.iter().cloned().map(decode_output).collect();
    assert_eq!(
        commands,
        [
            ShippingCommand::RequestPayment {
                order: "7".into(),
                reminder: true
            },
            ShippingCommand::ShipOrder { order: "7".into() },
        ],
        "the stale v1 step published nothing"
    );
    assert_eq!(
        published[1].id,
        Some(Uuid::new_v5(&payment.id, b"output-0"))
    );
}

/// A message broker that is down.
struct FailingPublisher;

#[async_trait::async_trait]
impl eventfold::process::Publisher for FailingPublisher {
    async fn publish(&self, _: Vec<EventData>) -> eventfold_core::Result<()> {
        Err(eventfold_core::Error::Backend("broker down".into()))
    }
}

#[tokio::test]
async fn outputs_recorded_but_not_published_are_published_after_a_restart() {
    let store = Arc::new(InMemoryStore::new());
    let failing = ProcessRunner::new(
        "shipping",
        store.clone(),
        ProcessVersions::new::<ShippingV1>(),
        Arc::new(FailingPublisher),
    );
    let mut world = World::on(store.clone(), ProcessVersions::new::<ShippingV1>());
    let correlation = Uuid::now_v7();
    let order = world.record(correlation, placed("7")).await;
    assert!(failing.catch_up(Position::START).await.is_err());
    // The step was recorded with its output pending.
    assert_eq!(
        world.runner.instance_version(correlation).await.unwrap(),
        Some(1)
    );

    // A restarted runner (with the broker back) publishes it, once, with its id.
    world.checkpoint = world.runner.catch_up(Position::START).await.unwrap();
    let published = world.publisher.take();
    let again = world.run().await;
    let restarted = ProcessRunner::new(
        "shipping",
        store.clone(),
        ProcessVersions::new::<ShippingV1>(),
        Arc::new(world.publisher.clone()),
    );
    let after_another_restart = restarted.publish_pending().await.unwrap();

    assert_eq!(published.len(), 1);
    assert_eq!(published[0].id, Some(Uuid::new_v5(&order.id, b"output-0")));
    assert_eq!(decode_output(published[0].clone()), request("7"));
    assert_eq!(again, []);
    assert_eq!(after_another_restart, 0);
    assert_eq!(world.published(), []);
}

#[tokio::test]
async fn a_scheduled_timeout_that_does_not_decode_is_an_error_every_time() {
    let world = World::v1();
    let bad = EventData::json("TimeoutScheduled", &serde_json::json!({"nonsense": true})).unwrap();
    world
        .store
        .append(
            &eventfold::streams::timeouts("shipping"),
            ExpectedVersion::Any,
            vec![bad],
        )
        .await
        .unwrap();

    let first = world.runner.fire_due_timeouts(Utc::now()).await;
    let second = world.runner.fire_due_timeouts(Utc::now()).await;

    assert!(first.is_err());
    assert!(second.is_err(), "the record was skipped: {second:?}");
}

#[test]
#[should_panic(expected = "unique and increasing")]
fn process_version_numbers_must_increase() {
    let _ = ProcessVersions::new::<ShippingV2>().then::<ShippingV1>(Utc::now());
}

/// The timeouts and outbox streams are read from their start when a runner starts;
/// what is done in them is trimmed (`truncate_before`), so they stop growing for reads
/// and a scavenge reclaims it, while what is still pending stays readable.
#[tokio::test]
async fn finished_timeouts_and_outputs_are_trimmed_and_pending_ones_survive_a_restart() {
    let store: Arc<dyn EventStore> = Arc::new(eventfold_core::LayerExt::layer(
        InMemoryStore::new(),
        eventfold_metadata::MetadataLayer,
    ));
    let runner = |store: &Arc<dyn EventStore>| {
        ProcessRunner::new(
            "shipping",
            store.clone(),
            ProcessVersions::new::<ShippingV1>(),
            Arc::new(RecordingPublisher::new()),
        )
    };
    let place = |n: u32| {
        let store = store.clone();
        async move {
            let data = placed(&n.to_string())
                .encode()
                .unwrap()
                .with_correlation_id(Uuid::now_v7());
            store
                .append(&format!("order-{n}"), ExpectedVersion::Any, vec![data])
                .await
                .unwrap();
        }
    };
    let orders = 300;
    for n in 0..orders {
        place(n).await;
    }
    let first = runner(&store);
    let checkpoint = first.catch_up(Position::START).await.unwrap();
    let far = Utc::now() + TimeDelta::days(1);
    assert_eq!(first.fire_due_timeouts(far).await.unwrap(), orders as usize);
    first.publish_pending().await.unwrap();

    let trimmed_at = |stream: String| {
        let store = store.clone();
        async move {
            let metadata = store.stream_metadata(&stream).await.unwrap().metadata;
            let len = store.stream_revision(&stream).await.unwrap().unwrap().get() + 1;
            (metadata.truncate_before.map(|r| r.get()), len)
        }
    };
    // Every timeout fired: the whole timeouts stream is done.
    let (timeouts_cut, timeouts_len) = trimmed_at(eventfold::streams::timeouts("shipping")).await;
    assert_eq!(timeouts_cut, Some(u64::from(orders)));
    assert_eq!(timeouts_len, u64::from(orders));
    // Every output was published; the marks of the last pass come after the cut.
    let (outbox_cut, outbox_len) = trimmed_at(eventfold::streams::outbox("shipping")).await;
    let outbox_cut = outbox_cut.expect("the outbox is trimmed");
    assert!(
        outbox_cut >= 256 && outbox_cut <= outbox_len,
        "cut {outbox_cut} of {outbox_len}"
    );

    // A new order after the trim: a restarted runner still finds its timeout, and only
    // that one.
    place(orders).await;
    let restarted = runner(&store);
    restarted.catch_up(checkpoint).await.unwrap();
    assert_eq!(restarted.fire_due_timeouts(far).await.unwrap(), 1);
    assert_eq!(restarted.fire_due_timeouts(far).await.unwrap(), 0);
}

/// Version 1 of a process that hands over: it withdraws its payment request when a
/// newer version takes over, and exports its state.
#[derive(Debug, Default)]
struct WindingV1 {
    inner: ShippingV1,
}

impl ProcessManager for WindingV1 {
    const VERSION: u32 = 1;
    type Message = OrderEvent;
    type Output = ShippingCommand;

    fn starts_with(message: &OrderEvent) -> bool {
        ShippingV1::starts_with(message)
    }

    fn handle(&mut self, message: &OrderEvent, ctx: &mut Context<ShippingCommand>) -> Next {
        self.inner.handle(message, ctx)
    }

    fn on_timeout(&mut self, ctx: &mut Context<ShippingCommand>) -> Next {
        self.inner.on_timeout(ctx)
    }

    fn on_takeover(&mut self, ctx: &mut Context<ShippingCommand>) -> Next {
        self.inner.on_takeover(ctx)
    }

    fn on_takeover_requested(&mut self, ctx: &mut Context<ShippingCommand>) {
        ctx.publish(ShippingCommand::WithdrawRequest {
            order: self.inner.order.clone(),
        });
    }

    fn export_state(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "order": self.inner.order }))
    }
}

/// Version 2 with a state of another shape, migrated from version 1's export; it says
/// where its state came from in what it ships.
#[derive(Debug, Default)]
struct MigratedV2 {
    orders: Vec<String>,
    migrated_from: Option<u32>,
}

impl ProcessManager for MigratedV2 {
    const VERSION: u32 = 2;
    type Message = OrderEvent;
    type Output = ShippingCommand;

    fn starts_with(message: &OrderEvent) -> bool {
        ShippingV1::starts_with(message)
    }

    fn handle(&mut self, message: &OrderEvent, ctx: &mut Context<ShippingCommand>) -> Next {
        match message {
            OrderEvent::OrderPlaced { order } => {
                self.orders.push(order.clone());
                Next::Wait(WAIT_V2)
            }
            OrderEvent::PaymentReceived { .. } => {
                let from = self
                    .migrated_from
                    .map_or("replayed".to_string(), |v| format!("migrated from v{v}"));
                ctx.publish(ShippingCommand::ShipOrder {
                    order: format!("{} ({from})", self.orders.join(",")),
                });
                Next::Done
            }
        }
    }

    fn on_timeout(&mut self, _: &mut Context<ShippingCommand>) -> Next {
        Next::Done
    }

    fn on_takeover(&mut self, ctx: &mut Context<ShippingCommand>) -> Next {
        ctx.publish(ShippingCommand::RequestPayment {
            order: self.orders.join(","),
            reminder: self.migrated_from.is_some(),
        });
        Next::Wait(WAIT_V2)
    }

    fn migrate_state(from: u32, state: &serde_json::Value) -> Option<Self> {
        Some(MigratedV2 {
            orders: vec![state["order"].as_str()?.to_string()],
            migrated_from: Some(from),
        })
    }
}

#[tokio::test]
async fn takeover_lets_the_old_version_wind_down_and_migrates_its_state() {
    let future = Utc::now() + TimeDelta::days(365);
    let versions = || ProcessVersions::new::<WindingV1>().then::<MigratedV2>(future);
    let mut world = World::new(versions());
    let correlation = Uuid::now_v7();
    world.record(correlation, placed("7")).await;
    assert_eq!(world.run().await, [request("7")]);

    world.runner.take_over(correlation, 2).await.unwrap();
    // v1 withdraws its request, then v2 (its state migrated, not replayed) asks anew.
    assert_eq!(
        world.published(),
        [
            ShippingCommand::WithdrawRequest { order: "7".into() },
            ShippingCommand::RequestPayment {
                order: "7".into(),
                reminder: true
            }
        ]
    );

    // A restarted runner rebuilds the instance from its records: the migration runs
    // again on the recorded state, nothing is published again, and v2 goes on.
    let mut restarted = World::on(world.store.clone(), versions());
    restarted.checkpoint = world.checkpoint;
    restarted.record(correlation, paid("7")).await;
    assert_eq!(
        restarted.run().await,
        [ShippingCommand::ShipOrder {
            order: "7 (migrated from v1)".into()
        }]
    );
}

#[tokio::test]
async fn take_over_all_hands_every_running_instance_to_the_new_version() {
    let future = Utc::now() + TimeDelta::days(365);
    let mut world = World::new(ProcessVersions::new::<ShippingV1>().then::<ShippingV2>(future));
    let orders: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    for (n, correlation) in orders.iter().enumerate() {
        world.record(*correlation, placed(&n.to_string())).await;
    }
    // Order 1 is paid: its instance is complete and stays where it is.
    world.record(orders[1], paid("1")).await;
    world.run().await;

    assert_eq!(world.runner.take_over_all(2).await.unwrap(), 2);
    let mut reminded: Vec<String> = world
        .published()
        .into_iter()
        .map(|command| match command {
            ShippingCommand::RequestPayment {
                order,
                reminder: true,
            } => order,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    reminded.sort();
    assert_eq!(reminded, ["0", "2"]);
    let mut versions = Vec::new();
    for correlation in &orders {
        versions.push(world.runner.instance_version(*correlation).await.unwrap());
    }
    assert_eq!(versions, [Some(2), Some(1), Some(2)]);
    assert_eq!(world.runner.take_over_all(2).await.unwrap(), 0, "none left");
}
