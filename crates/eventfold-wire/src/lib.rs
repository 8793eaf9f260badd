//! What crosses the wire of eventfold's HTTP API, in one crate: the JSON shapes of
//! events, appends and transactions, pages, subscription messages and consumer-group
//! deliveries, and every error code with its HTTP status. The server writes these
//! types, the client (`eventfold_client::HttpStore`) and the CLI read and write them,
//! so a shape is declared once; `openapi.json` is checked against them by the
//! server's tests.
//!
//! The core crate knows none of this: the JSON form of a
//! [`RecordedEvent`](eventfold_core::RecordedEvent) is [`Event`] (print one with
//! [`event_json_line`]) and an error's code is [`ErrorCode::of`].
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
pub mod append;
pub mod error;
pub mod event;
pub mod group;
pub mod page;
pub mod subscription;
pub mod surgery;

pub use admin::{ArchiveAnswer, ArchiveRequest, ScavengeAnswer, SubjectForgotten};
pub use append::{AppendResult, NewEvent, NewEvents, TransactionResults, TransactionWrite};
pub use error::{ErrorBody, ErrorCode, UnknownErrorCode};
pub use event::{Event, Recorded, event_json_line};
pub use group::{Deliveries, Delivery, NackBody, Positions, Replay};
pub use page::{EventsPage, Health, StreamHead, StreamsPage};
pub use subscription::SubscriptionMessage;
pub use surgery::{SplitTarget, SurgeryOperation, SurgeryOutcome, SurgeryRequest};
