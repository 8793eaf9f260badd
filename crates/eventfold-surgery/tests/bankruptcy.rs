//! Versioning bankruptcy on the embedded engine and on PostgreSQL: the old store
//! closes read-only under its label, folded streams start from one `Initialized`
//! event in the new store, the rest is copied or ends with the period, and a second
//! run resumes without writing twice.

use std::collections::BTreeMap;
use std::sync::Arc;

use eventfold_core::{Error, EventData, EventStore, ExpectedVersion, LayerExt, MIGRATED_FROM_KEY};
use eventfold_schema::{FoldDefinition, SchemaStore};
use eventfold_surgery::bankruptcy::{
    BANKRUPTCY_KEY, Bankruptcy, BankruptcyOutcome, INITIALIZED_EVENT_TYPE, declare,
};
use eventfold_surgery::{Operation, SURGERY_STREAM, perform};
use serde_json::json;

#[macro_use]
mod support;

use support::*;

on_every_backend!(
    a_bankrupt_store_closes_and_its_streams_start_from_their_state,
    a_bankruptcy_stopped_mid_way_resumes_without_writing_twice,
);

fn item(price: u64) -> EventData {
    EventData::json("ItemAdded", &json!({ "price": price })).expect("event")
}

fn period(folds: &[(&str, &str)]) -> Bankruptcy {
    Bankruptcy {
        label: "2019-2026".into(),
        folds: folds
            .iter()
            .map(|(c, f)| (c.to_string(), f.to_string()))
            .collect::<BTreeMap<_, _>>(),
        to: "the new store".into(),
    }
}

/// Registers in `source` the fold `cart-total`: a cart's total price.
async fn register_cart_total(source: &Arc<impl EventStore + 'static>) {
    let schemas = SchemaStore::open(source.clone()).await.expect("schemas");
    let definition: FoldDefinition = serde_json::from_value(json!({
        "init": {"total": 0},
        "handlers": {"ItemAdded": "{total: (.state.total + .event.data.price)}"}
    }))
    .expect("a fold definition");
    schemas
        .register_fold("cart-total", &definition)
        .await
        .expect("register the fold");
}

async fn a_bankrupt_store_closes_and_its_streams_start_from_their_state(backend: Backend) {
    let Some((source, _s)) = open(backend).await else {
        return;
    };
    let Some((target, _t)) = open(Backend::Log).await else {
        return;
    };
    let source = Arc::new(source);
    for (cart, prices) in [
        ("cart-1", &[3u64, 4][..]),
        ("cart-2", &[5][..]),
        ("cart-3", &[6][..]),
    ] {
        source
            .append(
                cart,
                ExpectedVersion::NoStream,
                prices.iter().map(|p| item(*p)).collect(),
            )
            .await
            .expect("fill a cart");
    }
    fill(source.as_ref(), "order-1", &["Placed", "Paid"]).await;
    perform(
        source.as_ref(),
        &Operation::CopyReplace {
            source: "cart-3".into(),
            to: "cart-3b".into(),
            skip: Vec::new(),
            transform: None,
            in_place: false,
        },
        &audit(),
        false,
        &mut |_, _| {},
    )
    .await
    .expect("move cart-3");
    register_cart_total(&source).await;

    let error = declare(
        source.clone(),
        &target,
        &period(&[("cart", "no-such-fold")]),
        &audit(),
        false,
        &mut |_| {},
    )
    .await
    .expect_err("an unknown fold");
    assert!(error.to_string().contains("no-such-fold"), "{error}");
    let dry = declare(
        source.clone(),
        &target,
        &period(&[("cart", "cart-total")]),
        &audit(),
        true,
        &mut |_| {},
    )
    .await
    .expect("dry run");
    assert_eq!(head(&target).await, None, "a dry run writes nothing");
    source
        .append(
            "order-2",
            ExpectedVersion::NoStream,
            vec![event("Placed", 0)],
        )
        .await
        .expect("an unknown fold and a dry run leave the old store writable");

    let done = declare(
        source.clone(),
        &target,
        &period(&[("cart", "cart-total")]),
        &audit(),
        false,
        &mut |_| {},
    )
    .await
    .expect("bankruptcy");
    let expected = BankruptcyOutcome {
        dry_run: false,
        initialized: [("cart".to_string(), 3)].into(),
        copied: 2,
        ended: 1,
        resumed: 0,
    };
    assert_eq!(done, expected);
    assert_eq!(
        (dry.initialized, dry.copied, dry.ended),
        (done.initialized.clone(), done.copied - 1, done.ended),
        "the dry run saw the same (order-2 came after it)"
    );

    match source
        .append("cart-1", ExpectedVersion::Any, vec![item(1)])
        .await
    {
        Err(Error::ReadOnly { reason }) => assert!(reason.contains("2019-2026"), "{reason}"),
        other => panic!("the closed period took an append: {other:?}"),
    }
    let cart_1 = read(&target, "cart-1").await;
    assert_eq!(cart_1.len(), 1);
    assert_eq!(cart_1[0].event_type, INITIALIZED_EVENT_TYPE);
    assert_eq!(json_of(&cart_1[0].data), json!({"total": 7}));
    let metadata = json_of(&cart_1[0].metadata);
    assert_eq!(metadata[BANKRUPTCY_KEY], "2019-2026");
    assert_eq!(metadata[MIGRATED_FROM_KEY], "1@cart-1");
    assert_eq!(
        json_of(&read(&target, "cart-3b").await[0].data),
        json!({"total": 6})
    );
    assert!(
        !target.stream_exists("cart-3").await.expect("exists"),
        "a moved stream ends with the period"
    );
    let order = read(&target, "order-1").await;
    let originals = read(source.as_ref(), "order-1").await;
    assert_eq!(
        ns(&order),
        ns(&originals),
        "a stream without a fold is copied whole"
    );
    assert_eq!(order[0].id, originals[0].id);
    let new_schemas = SchemaStore::open(Arc::new(target)).await.expect("schemas");
    new_schemas
        .fold("cart-total")
        .await
        .expect("the folds came along");
    let trail = read(new_schemas.store().as_ref(), SURGERY_STREAM).await;
    let operations: Vec<String> = trail
        .iter()
        .map(|e| {
            json_of(&e.data)["operation"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(
        operations,
        ["copy-replace", "bankruptcy", "bankruptcy"],
        "the old trail (with the closing) and the new store's own record"
    );

    let again = declare(
        source.clone(),
        new_schemas.store().as_ref(),
        &period(&[("cart", "cart-total")]),
        &audit(),
        false,
        &mut |_| {},
    )
    .await
    .expect("a second run");
    assert_eq!(
        again.initialized,
        BTreeMap::new(),
        "nothing is written twice"
    );
    assert_eq!(read(new_schemas.store().as_ref(), "cart-1").await.len(), 1);
}

/// A bankruptcy whose new store fails its second append (as a crash would stop it:
/// the first page of streams is written, 500 a page) leaves the old store closed and
/// whole appends in the new one; run again, it resumes after the streams written and
/// starts every stream once.
async fn a_bankruptcy_stopped_mid_way_resumes_without_writing_twice(backend: Backend) {
    let Some((source, _s)) = open(Backend::Log).await else {
        return;
    };
    let Some((target, _t)) = open(backend).await else {
        return;
    };
    let source = Arc::new(source);
    const CARTS: u64 = 1_100;
    for first in (1..=CARTS).step_by(100) {
        let writes = (first..first + 100)
            .map(|cart| {
                eventfold_core::StreamWrite::new(
                    format!("cart-{cart}"),
                    ExpectedVersion::NoStream,
                    vec![item(cart), item(10)],
                )
            })
            .collect();
        source.append_multi(writes).await.expect("fill the carts");
    }
    register_cart_total(&source).await;

    let crashing = target.layer(CrashAt::new(2));
    let stopped = declare(
        source.clone(),
        &crashing,
        &period(&[("cart", "cart-total")]),
        &audit(),
        false,
        &mut |_| {},
    )
    .await;
    assert!(
        matches!(&stopped, Err(e) if e.to_string().contains("crash")),
        "stopped at the crash: {stopped:?}"
    );
    assert!(
        matches!(
            source
                .append("cart-1", ExpectedVersion::Any, vec![item(1)])
                .await,
            Err(Error::ReadOnly { .. })
        ),
        "the old store was closed before anything was written"
    );
    let mut started = 0;
    for cart in 1..=CARTS {
        if crashing
            .stream_exists(&format!("cart-{cart}"))
            .await
            .expect("exists")
        {
            started += 1;
        }
    }
    assert!(
        started > 0 && started < CARTS,
        "the crash came mid-way ({started} started)"
    );

    let resumed = declare(
        source.clone(),
        &crashing,
        &period(&[("cart", "cart-total")]),
        &audit(),
        false,
        &mut |_| {},
    )
    .await
    .expect("the second run");
    assert!(
        resumed.resumed >= started,
        "streams written before are left alone: {resumed:?}"
    );
    assert_eq!(
        resumed.initialized,
        [("cart".to_string(), CARTS - started)].into(),
        "the rest start now"
    );
    for cart in 1..=CARTS {
        let events = read(&crashing, &format!("cart-{cart}")).await;
        assert_eq!(events.len(), 1, "cart-{cart} starts once");
        assert_eq!(json_of(&events[0].data), json!({"total": cart + 10}));
    }
}
