//! The inventory versioning story: `InventoryItemDeactivated` v1 `{id}` and v2
//! `{itemId, reason}` live side by side in one log, and an old consumer (v1) and a
//! new one (v2) both read the whole history, through the Rust API and over HTTP. The
//! story is in `examples/inventory/README.md`;
//! `cargo run -p eventfold-examples --example inventory` tells it.
//!
//! - [`contract`]: the event types, their versions and their registration;
//! - [`producers`]: the old and the new release writing events;
//! - [`consumers`]: the old and the new consumer, in Rust and over HTTP;
//! - [`story`]: the story the example prints, and the in-process server it uses.

pub mod consumers;
pub mod contract;
pub mod producers;
pub mod story;
