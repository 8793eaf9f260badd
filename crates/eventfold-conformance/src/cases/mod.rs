//! The conformance cases, one public async function each; the crate root re-exports
//! them. Each case takes a fresh, empty store and panics with a message naming the
//! rule that was broken.

mod append;
mod checks;
mod concurrency;
mod expected_version;
mod gaps;
mod idempotency;
mod index_streams;
mod moved;
mod multi_stream;
mod read_all;
mod read_stream;
mod stream_admin;
mod subscription;

pub use append::*;
pub use checks::*;
pub use concurrency::*;
pub use expected_version::*;
pub use gaps::*;
pub use idempotency::*;
pub use index_streams::*;
pub use moved::*;
pub use multi_stream::*;
pub use read_all::*;
pub use read_stream::*;
pub use stream_admin::*;
pub use subscription::*;
