//! The auction questions service: buyers ask sellers questions, sellers read and
//! answer them, and a seller is mailed about each new question. The story is in
//! `examples/auction/README.md`; `cargo run -p eventfold-examples --example auction`
//! tells it.
//!
//! - [`domain`]: the events and the `Auction` aggregate (pure decide and evolve);
//! - [`world`]: the outside world (catalogue, accounts service, mail server);
//! - [`read_model`]: the SQLite read model, release 1 and release 2;
//! - [`service`]: one process of the service over a data directory;
//! - [`web`]: the HTTP front (axum);
//! - [`audit`]: the audit log of commands, and why replaying it is wrong;
//! - [`story`]: the story the example prints.

pub mod audit;
pub mod domain;
mod json_lines;
pub mod read_model;
pub mod service;
pub mod story;
pub mod web;
pub mod world;
