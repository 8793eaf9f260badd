//! `eventfold demo`: a guided tour on a small store, for newcomers.

use std::path::PathBuf;
use std::process::ExitCode;

use eventfold_core::{
    AllFilter, Error, EventData, EventStore, ExpectedVersion, Position, ReadAll, ReadStream,
    Revision, StreamWrite,
};
use serde_json::json;
use uuid::Uuid;

/// Walk through appends, expected versions, idempotency, multi-stream atomicity and
/// reads on a small store.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Data directory for the demo store (default: a new temporary directory).
    #[arg(long, env = "EVENTFOLD_DATA", value_name = "DIR")]
    data: Option<PathBuf>,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = match args.data {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!("eventfold-demo-{}", Uuid::now_v7())),
    };
    println!("eventfold demo: embedded store in {}\n", dir.display());
    let store = super::open_store(&dir)?;
    let order = format!("order-{}", &Uuid::now_v7().simple().to_string()[24..]);
    let command = Uuid::now_v7();

    println!("1. The customer places an order. The tax is computed now and stored on the event,");
    println!("   so replaying the event later never depends on today's tax table.");
    let placed = EventData::json(
        "OrderPlaced",
        &json!({"items": 3, "net": 100.0, "tax_rate": 0.2, "tax": 20.0}),
    )?
    .with_id(Uuid::now_v7())
    .with_correlation_id(command)
    .with_causation_id(command);
    let written = store
        .append(&order, ExpectedVersion::NoStream, vec![placed.clone()])
        .await?;
    println!(
        "   appended to {order}: revision {}, global position {}\n",
        written.last_revision, written.position
    );

    println!("2. The answer got lost and the client sends the same event again (same id):");
    let again = store
        .append(&order, ExpectedVersion::NoStream, vec![placed])
        .await?;
    println!(
        "   idempotent: same result (revision {}), nothing written twice\n",
        again.last_revision
    );

    println!("3. A second writer still believes the stream is new; its expected version is wrong:");
    let stale = EventData::json("OrderPlaced", &json!({"items": 1}))?;
    match store
        .append(&order, ExpectedVersion::NoStream, vec![stale])
        .await
    {
        Err(Error::WrongExpectedVersion { actual, .. }) => {
            println!(
                "   refused: wrong expected version (the stream is at revision {})\n",
                actual.map_or(-1, |r| r.get() as i64)
            );
        }
        other => anyhow::bail!("expected a refusal, got {other:?}"),
    }

    println!("4. Payment moves money between two accounts: one atomic append across streams,");
    println!(
        "   each with its own expected version. Either both streams get their event or neither."
    );
    let paid =
        EventData::json("PaymentReceived", &json!({"amount": 120.0}))?.with_correlation_id(command);
    let charged = EventData::json("AccountCharged", &json!({"amount": 120.0, "order": order}))?
        .with_correlation_id(command);
    let account = format!("account-{}", &Uuid::now_v7().simple().to_string()[24..]);
    let results = store
        .append_multi(vec![
            StreamWrite::new(
                order.clone(),
                ExpectedVersion::Exact(Revision(0)),
                vec![paid],
            ),
            StreamWrite::new(account.clone(), ExpectedVersion::Any, vec![charged]),
        ])
        .await?;
    println!(
        "   {order} → revision {}, {account} → revision {}\n",
        results[0].last_revision, results[1].last_revision
    );

    println!("5. The order stream, as any client reads it (one JSON event per line):");
    for event in store.read_stream(&order, ReadStream::forward()).await? {
        println!("   {}", eventfold_wire::event_json_line(&event));
    }

    println!("\n6. $all filtered by category 'account', from position 0:");
    let filter = AllFilter {
        category: Some("account".into()),
        ..AllFilter::default()
    };
    let page = store
        .read_all(ReadAll::from(Position(0), 10).filtered(filter))
        .await?;
    for event in page.events {
        println!(
            "   position {} {} in {}",
            event.position, event.event_type, event.stream
        );
    }

    println!("\nTry it yourself:");
    println!("   eventfold read --data {} '{order}'", dir.display());
    println!("   eventfold verify --data {}", dir.display());
    Ok(ExitCode::SUCCESS)
}
