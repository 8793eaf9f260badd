//! The tax example of docs/framework.md: the tax is computed once, when the command is
//! decided, and stored on the event. Restoring state replays events, never commands:
//! new code with new tax rates rebuilds exactly the old totals.

use std::sync::Arc;

use eventfold::testkit::Scenario;
use eventfold::{Aggregate, Decision, DomainEvent, Envelope, EventType, InMemoryStore, Repository};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
enum InvoiceEvent {
    /// The tax rate and amount in force when the line was added are part of the fact.
    LineAdded {
        product: String,
        net_cents: u64,
        tax_rate_percent: u32,
        tax_cents: u64,
    },
}

impl DomainEvent for InvoiceEvent {
    const TYPES: &'static [EventType] = &[EventType::new("LineAdded", 1)];
}

/// The caller looked the rate up (a tax service, today's table) and put it on the command.
#[derive(Debug, Clone)]
struct AddLine {
    product: String,
    net_cents: u64,
    tax_rate_percent: u32,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Invoice {
    net_cents: u64,
    tax_cents: u64,
}

impl Aggregate for Invoice {
    const NAME: &'static str = "invoice";
    type Command = AddLine;
    type Event = InvoiceEvent;
    type Rejection = String;

    fn decide(&self, line: &AddLine) -> Result<Decision<InvoiceEvent>, String> {
        if line.net_cents == 0 {
            return Err("a line has a price".into());
        }
        // Computed here, once; from now on it is a stored fact.
        let tax_cents = line.net_cents * u64::from(line.tax_rate_percent) / 100;
        Ok(Decision::event(InvoiceEvent::LineAdded {
            product: line.product.clone(),
            net_cents: line.net_cents,
            tax_rate_percent: line.tax_rate_percent,
            tax_cents,
        }))
    }

    fn evolve(&mut self, event: &InvoiceEvent) {
        // Only sums stored amounts: never recomputes the tax.
        let InvoiceEvent::LineAdded {
            net_cents,
            tax_cents,
            ..
        } = event;
        self.net_cents += net_cents;
        self.tax_cents += tax_cents;
    }
}

/// The application service: what the outside world says goes on the command.
fn add_line(product: &str, net_cents: u64, today_rate_percent: u32) -> AddLine {
    AddLine {
        product: product.into(),
        net_cents,
        tax_rate_percent: today_rate_percent,
    }
}

#[test]
fn given_an_empty_invoice_when_adding_a_line_then_the_tax_is_computed_and_stored() {
    Scenario::<Invoice>::given([])
        .when(add_line("book", 1_000, 20))
        .then([InvoiceEvent::LineAdded {
            product: "book".into(),
            net_cents: 1_000,
            tax_rate_percent: 20,
            tax_cents: 200,
        }]);
}

#[tokio::test]
async fn restoring_replays_events_and_keeps_the_taxes_of_their_time() {
    let store = Arc::new(InMemoryStore::new());
    let last_year = Repository::<Invoice>::new(store.clone());
    let commands = [add_line("book", 1_000, 20), add_line("pen", 500, 20)];
    for command in commands.clone() {
        last_year
            .handle("invoice-7", Envelope::new(command))
            .await
            .unwrap();
    }

    // A year later: new code, and the rate is now 25 %.
    let today_rate = 25;
    let restored = Repository::<Invoice>::new(store.clone())
        .load("invoice-7")
        .await
        .unwrap();
    assert_eq!(
        restored.state().tax_cents,
        300,
        "replaying events keeps the tax charged"
    );

    // The wrong way: re-running the commands through today's service charges today's tax.
    let mut replayed_commands = Invoice::default();
    for command in commands {
        let again = add_line(&command.product, command.net_cents, today_rate);
        for event in replayed_commands
            .decide(&again)
            .unwrap()
            .events()
            .cloned()
            .collect::<Vec<_>>()
        {
            replayed_commands.evolve(&event);
        }
    }
    assert_eq!(
        replayed_commands.tax_cents, 375,
        "replaying commands rewrites history"
    );
}
