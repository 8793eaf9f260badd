//! Compensations and surgery notices through the projection runner: a compensation
//! written after its original makes the default projection rebuild, and the new
//! generation folds the history as corrected; a projection that handles it in place
//! keeps its generation; copies a surgery made replace their originals after the
//! rebuild its `$invalidated` notice asks for.

mod projection_support;

use std::sync::Arc;

use eventfold::projection::{
    Compensated, Context, HandlerError, MemoryReadModel, MemoryTx, Projection, ProjectionRunner,
    Reaction, ReadModelDb, RunningProjections,
};
use eventfold::{EventData, EventStore, ExpectedVersion, InMemoryStore, RecordedEvent};
use eventfold_core::{EventRef, LayerExt, Revision};
use eventfold_metadata::MetadataLayer;
use projection_support::{wait_status, within};
use serde_json::{Value, json};

/// The sum of the amounts paid; `in_place` handles compensations itself.
struct Takings {
    in_place: bool,
}

fn amount(event: &RecordedEvent) -> i64 {
    serde_json::from_slice::<Value>(&event.data).unwrap()["amount"]
        .as_i64()
        .unwrap_or(0)
}

impl Projection<MemoryReadModel> for Takings {
    fn name(&self) -> &str {
        "takings"
    }

    fn tables(&self) -> &[&str] {
        &["takings"]
    }

    fn apply(
        &self,
        tx: &mut MemoryTx<'_>,
        event: &RecordedEvent,
        ctx: &mut Context<'_>,
    ) -> Result<(), HandlerError> {
        if event.event_type == "Paid" {
            add(tx, ctx, amount(event));
        }
        Ok(())
    }

    fn compensate(
        &self,
        tx: &mut MemoryTx<'_>,
        compensated: &Compensated,
        ctx: &mut Context<'_>,
    ) -> Result<Reaction, HandlerError> {
        if !self.in_place {
            return Ok(Reaction::Rebuild);
        }
        let before = compensated.original.as_ref().map_or(0, amount);
        let after = compensated.corrected().as_ref().map_or(0, amount);
        add(tx, ctx, after - before);
        Ok(Reaction::Handled)
    }
}

fn add(tx: &mut MemoryTx<'_>, ctx: &Context<'_>, by: i64) {
    let total = tx
        .table(&ctx.table("takings"))
        .entry("total".into())
        .or_insert(json!(0));
    *total = json!(total.as_i64().unwrap_or(0) + by);
}

async fn total(db: &ReadModelDb<MemoryReadModel>, group: &str) -> Value {
    db.call({
        let group = group.to_string();
        move |m| m.live_table(&group, "takings").unwrap()["total"].clone()
    })
    .await
    .unwrap()
}

/// A runner of `Takings` over `store`, caught up with its head.
async fn caught_up(
    store: &Arc<dyn EventStore>,
    in_place: bool,
) -> (
    ReadModelDb<MemoryReadModel>,
    RunningProjections<MemoryReadModel>,
) {
    let db = MemoryReadModel::open().await.unwrap();
    let running = ProjectionRunner::new(store.clone(), db.clone(), "shop")
        .with_projection(Takings { in_place })
        .start()
        .await
        .unwrap();
    let head = store.head_position().await.unwrap().unwrap();
    within("catch up", running.wait_until_live_at(head))
        .await
        .unwrap();
    (db, running)
}

/// Waits until `generation` is live at `position` or later, with no build under way.
async fn live_at(
    running: &RunningProjections<MemoryReadModel>,
    generation: u64,
    position: eventfold_core::Position,
) {
    let mut watch = running.watch();
    wait_status(&mut watch, &format!("generation {generation} live"), |s| {
        s.building.is_none()
            && s.live
                .as_ref()
                .is_some_and(|l| l.generation == generation && l.position >= Some(position))
    })
    .await;
}

fn paid(amount: i64) -> EventData {
    EventData::json("Paid", &json!({ "amount": amount })).unwrap()
}

async fn run(in_place: bool) {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new().layer(MetadataLayer));
    store
        .append("order-1", ExpectedVersion::Any, vec![paid(1000), paid(7)])
        .await
        .unwrap();
    store
        .append("order-2", ExpectedVersion::Any, vec![paid(5)])
        .await
        .unwrap();
    let (db, running) = caught_up(&store, in_place).await;
    assert_eq!(total(&db, "shop").await, 1012);

    let fixes = [
        eventfold::compensation::Compensation::correct(
            EventRef::new("order-1", Revision(0)),
            json!({"amount": 10}),
            "typed 1000 for 10",
        ),
        eventfold::compensation::Compensation::cancel(
            EventRef::new("order-1", Revision(1)),
            "charged twice",
        ),
    ];
    let written = store
        .append(
            "order-1",
            ExpectedVersion::Any,
            fixes.iter().map(|f| f.to_event().unwrap()).collect(),
        )
        .await
        .unwrap();
    let generation = if in_place { 1 } else { 2 };
    live_at(&running, generation, written.position).await;
    assert_eq!(
        total(&db, "shop").await,
        15,
        "10 + 5: corrected and cancelled"
    );
    assert_eq!(
        running.status().live.unwrap().generation,
        generation,
        "a rebuild only when the projection asks for one"
    );
}

#[tokio::test]
async fn a_compensation_rebuilds_a_projection_that_cannot_handle_it_as_corrected() {
    run(false).await;
}

#[tokio::test]
async fn a_projection_that_handles_a_compensation_keeps_its_generation() {
    run(true).await;
}

#[tokio::test]
async fn a_surgery_notice_rebuilds_without_the_replaced_events() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new().layer(MetadataLayer));
    store
        .append("till-1", ExpectedVersion::Any, vec![paid(3), paid(4)])
        .await
        .unwrap();
    let (db, running) = caught_up(&store, false).await;
    assert_eq!(total(&db, "shop").await, 7);

    // The copies repeat the events in `$all`: counted twice until the notice.
    let copy = eventfold_surgery::Operation::CopyReplace {
        source: "till-1".into(),
        to: "till-2".into(),
        skip: vec![],
        transform: None,
        in_place: false,
    };
    let audit = eventfold_surgery::Audit {
        reason: "moved".into(),
        who: "ops".into(),
    };
    let outcome = eventfold_surgery::perform(store.as_ref(), &copy, &audit, false, &mut |_, _| {})
        .await
        .unwrap();
    let end = eventfold_core::Position(outcome.audit_position.unwrap());
    live_at(&running, 2, end).await;
    assert_eq!(total(&db, "shop").await, 7, "the copies only");
}
