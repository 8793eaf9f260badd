//! Subscriptions and consumer groups, written once over the `EventStore` trait so they
//! run on every backend and every stack of layers.
//!
//! - [`Subscription`]: everything from a starting point, then live, one loop
//!   (`subscription.rs`).
//! - [`PersistentGroup`]: consumer groups, competing consumers with acks, retries,
//!   parking and checkpoints kept in the store (`persistent.rs`).
//! - [`EventFilter`]: events by stream name or type, by prefixes or a regular
//!   expression (`filter.rs`).
//! - [`page`]: pages of a stream or of `$all` capped in bytes as well as in events, what
//!   a catch-up page and the server's read routes hand out.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod filter;
pub mod page;
mod persistent;
mod subscription;

pub use filter::{CompiledFilter, EventFilter, FilterOn};
pub use persistent::{
    Delivery, GroupSettings, GroupStatus, Nack, Parked, PersistentGroup, delete_group,
    group_settings, list_groups, update_group,
};
pub use subscription::Subscription;
