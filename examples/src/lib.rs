//! The examples of eventfold, as a library their `main.rs` and their tests share.
//! Each example keeps its code in its own folder beside its README.

#[path = "../auction/mod.rs"]
pub mod auction;
#[path = "../inventory/mod.rs"]
pub mod inventory;
