//! One test suite for the [`EventStore`] contract, written once and run against every
//! backend: the in-memory model, the embedded log engine, PostgreSQL, the HTTP client.
//!
//! It has two parts:
//!
//! - **Cases**: one public async function per rule of the contract (expected versions,
//!   revisions and positions, atomic and idempotent appends, multi-stream appends,
//!   reads of one stream and of `$all` with filters, concurrent writers). Each takes a
//!   fresh, empty store and panics with a message naming the broken rule.
//!   [`conformance_tests!`] turns every case into a named `#[test]` for a backend.
//! - **Model**: [`model`] generates random sequences of operations (with re-sends,
//!   wrong expected versions and reopens) and checks that a backend answers every one
//!   like [`eventfold_core::InMemoryStore`], the reference model.
//!
//! A backend's test crate needs only this crate and its own:
//!
//! ```
//! use eventfold_core::{InMemoryStore, LayerExt};
//! use eventfold_metadata::MetadataLayer;
//!
//! // In a backend's integration test file: one test per case, on the backend under
//! // the metadata layer (the stream metadata cases need it).
//! eventfold_conformance::conformance_tests!(|| async {
//!     (InMemoryStore::new().layer(MetadataLayer), ())
//! });
//!
//! // In the body of a test function: the model check.
//! # fn model_check() {
//! eventfold_conformance::model::run_model_test(async || InMemoryStore::new());
//! # }
//! # fn main() {}
//! ```
//!
//! Cases compare JSON as values, not bytes, so a backend may re-encode data (the HTTP
//! client does); they never look at `recorded_at`.

mod cases;
pub mod model;
mod support;

pub use cases::*;
/// The async runtime the generated tests run on, re-exported for backends' tests.
pub use tokio;

#[doc(hidden)]
pub mod __private {
    //! Used by the code [`conformance_tests!`](crate::conformance_tests) expands to.

    use std::future::Future;
    use std::sync::Arc;

    use eventfold_core::EventStore;

    /// The runtime every generated test runs on: several worker threads, so that the
    /// concurrency cases really run in parallel.
    pub fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("the conformance tests need a tokio runtime")
    }

    /// Builds a fresh `(store, guard)` with the backend's factory.
    pub async fn open<F, S, G>(factory: &F) -> (S, G)
    where
        F: AsyncFn() -> (S, G),
        S: EventStore,
    {
        factory().await
    }

    /// Runs a case that takes `&S` on a fresh store. The store is dropped before its
    /// guard, also when the case panics.
    pub fn run<F, S, G, C>(factory: &F, case: C)
    where
        F: AsyncFn() -> (S, G),
        S: EventStore,
        C: AsyncFnOnce(&S),
    {
        runtime().block_on(async {
            let fixture = open(factory).await;
            case(&fixture.0).await;
        });
    }

    /// Runs a case that shares the store between tasks (`Arc<S>`).
    pub fn run_shared<F, S, G, C, Fut>(factory: &F, case: C)
    where
        F: AsyncFn() -> (S, G),
        S: EventStore + 'static,
        C: FnOnce(Arc<S>) -> Fut,
        Fut: Future<Output = ()>,
    {
        runtime().block_on(async {
            let (store, guard) = open(factory).await;
            // Tuple fields drop in order: the store (once the case let go of it)
            // before the guard.
            let fixture = (Arc::new(store), guard);
            case(Arc::clone(&fixture.0)).await;
        });
    }
}

/// Expands to one `#[test]` per conformance case, named after the case, so that a
/// failure names the broken rule.
///
/// `$factory` is an async closure (`async || …` or `|| async { … }`) returning
/// `(store, guard)`:
///
/// - `store` implements [`EventStore`](eventfold_core::EventStore): the backend under
///   the metadata layer (`backend.layer(MetadataLayer)`), as users get it (and is `'static`,
///   for the concurrency cases, which share it between tasks through an `Arc`);
/// - `guard` is anything that must outlive the store (a temporary directory, a test
///   database, a server process); use `()` when there is none. The store is dropped
///   first, then the guard.
///
/// The factory is called once per test, inside the test's tokio runtime (multi-thread,
/// two workers), so it may spawn tasks. Each call must return a fresh, empty store.
/// The generated tests need neither `tokio` nor any other dependency in the calling
/// crate. Invoke the macro once per module.
///
/// A backend that needs a temporary directory kept alive (`tempfile` and the backend
/// are the test crate's own dependencies):
///
/// ```
/// # mod eventfold_log {
/// #     pub struct LogStore;
/// #     impl LogStore {
/// #         pub async fn open(
/// #             _dir: &std::path::Path,
/// #         ) -> eventfold_core::Result<eventfold_core::InMemoryStore> {
/// #             Ok(eventfold_core::InMemoryStore::new())
/// #         }
/// #     }
/// # }
/// use eventfold_core::LayerExt;
/// use eventfold_log::LogStore;
/// use eventfold_metadata::MetadataLayer;
///
/// eventfold_conformance::conformance_tests!(async || {
///     let dir = tempfile::tempdir().expect("temporary directory");
///     let store = LogStore::open(dir.path()).await.expect("open the store");
///     (store.layer(MetadataLayer), dir)
/// });
/// # fn main() {}
/// ```
///
/// The in-memory store:
///
/// ```
/// eventfold_conformance::conformance_tests!(|| async {
///     use eventfold_core::LayerExt;
///     let store = eventfold_core::InMemoryStore::new();
///     (store.layer(eventfold_metadata::MetadataLayer), ())
/// });
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! conformance_tests {
    // A store that forwards to a server (`HttpStore`): every case but those that
    // write system events themselves, which only a store in this process takes.
    (remote: $factory:expr $(,)?) => {
        $crate::conformance_tests! {
            @remote $factory;
        }
    };
    ($factory:expr $(,)?) => {
        $crate::conformance_tests! {
            @remote $factory;
            moved_streams_refuse_client_appends,
            read_only_stores_refuse_appends_until_undone
        }
    };
    (@remote $factory:expr; $($local:ident),*) => {
        $crate::conformance_tests! {
            @cases $factory;
            $($local,)*
            empty_store_has_no_head_and_no_streams,
            expected_any_appends_to_new_and_existing_streams,
            expected_no_stream_creates_a_stream_once,
            expected_stream_exists_requires_a_stream,
            expected_exact_revision_must_match,
            failed_append_writes_nothing,
            revisions_count_per_stream_and_positions_are_global,
            append_result_describes_what_was_written,
            multi_event_append_is_atomic_and_contiguous,
            generated_ids_are_uuid_v7_and_given_ids_are_kept,
            event_fields_round_trip,
            unusual_stream_names_round_trip,
            correlation_and_causation_ids_round_trip,
            invalid_stream_names_are_refused,
            invalid_events_are_refused,
            empty_append_is_refused,
            stream_revision_and_exists_track_appends,
            resend_with_same_exact_expected_version_is_idempotent,
            resend_with_no_stream_is_idempotent,
            resend_with_any_is_idempotent,
            resend_with_stream_exists_is_idempotent,
            resend_with_partial_overlap_is_an_idempotency_conflict,
            resend_with_other_content_is_an_idempotency_conflict,
            ids_written_to_another_stream_are_an_idempotency_conflict,
            duplicate_id_within_one_append_is_invalid,
            append_multi_writes_every_stream_in_order,
            append_multi_is_all_or_nothing,
            append_multi_refuses_the_same_stream_twice,
            append_multi_resend_is_idempotent,
            checks_hold_or_refuse_the_whole_append,
            checks_do_not_stop_a_resend,
            read_stream_forward,
            read_stream_backward,
            read_stream_past_the_end,
            read_unknown_stream_is_not_found,
            read_all_pages_until_end_of_log,
            read_all_from_position_with_limit,
            read_all_filters_by_stream_prefix,
            read_all_filters_by_category,
            read_all_filters_by_event_types,
            read_all_combined_filters,
            read_all_next_advances_past_skipped_events,
            subscription_resumes_after_its_checkpoint,
            subscription_filters_by_category_and_event_type,
            index_streams_read_categories_types_and_correlations,
            index_streams_cannot_be_written,
            index_streams_can_be_subscribed_to,
            stream_metadata_round_trips_with_expected_versions,
            retention_metadata_hides_old_events,
            soft_delete_hides_the_stream_until_it_is_written_again,
            hard_delete_is_final,
            clients_cannot_forge_a_tombstone,
            clients_cannot_write_system_events,
            list_streams_pages_names_in_order,
            reads_pass_over_gaps;
            @shared
            concurrent_appends_to_one_stream_with_retries_are_serialized,
            concurrent_appends_to_distinct_streams_are_all_stored,
            concurrent_multi_stream_appends_stay_atomic,
            concurrent_checks_never_pass_a_stale_read,
            subscription_catches_up_then_goes_live_without_gap_or_duplicate,
            stream_subscription_follows_one_stream_live
        }
    };
    (@cases $factory:expr; $($case:ident),+; @shared $($shared:ident),+) => {
        $(
            #[test]
            fn $case() {
                $crate::__private::run(&$factory, async |store| $crate::$case(store).await);
            }
        )+
        $(
            #[test]
            fn $shared() {
                $crate::__private::run_shared(&$factory, $crate::$shared);
            }
        )+
    };
}

#[cfg(test)]
mod tests {
    /// Every public case must be in `conformance_tests!`, or no backend would run it.
    #[test]
    fn every_case_is_in_the_macro() {
        let sources = [
            include_str!("cases/append.rs"),
            include_str!("cases/concurrency.rs"),
            include_str!("cases/expected_version.rs"),
            include_str!("cases/gaps.rs"),
            include_str!("cases/idempotency.rs"),
            include_str!("cases/index_streams.rs"),
            include_str!("cases/moved.rs"),
            include_str!("cases/multi_stream.rs"),
            include_str!("cases/read_all.rs"),
            include_str!("cases/read_stream.rs"),
            include_str!("cases/stream_admin.rs"),
            include_str!("cases/subscription.rs"),
        ];
        let lib = include_str!("lib.rs");
        let macro_text = &lib[lib
            .find("macro_rules! conformance_tests")
            .expect("the macro is in lib.rs")..];
        let mut count = 0;
        for source in sources {
            for line in source.lines() {
                let Some(rest) = line.strip_prefix("pub async fn ") else {
                    continue;
                };
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                // A `_with` variant takes a hook besides the store; backends that
                // have the hook run it, and the plain case runs everywhere.
                if name.ends_with("_with") {
                    continue;
                }
                count += 1;
                assert!(
                    macro_text.contains(&format!("            {name},"))
                        || macro_text.contains(&format!("            {name};"))
                        || macro_text.contains(&format!("            {name}\n")),
                    "case {name} is missing from conformance_tests!"
                );
            }
        }
        assert!(
            count >= 40,
            "found only {count} cases; did the parsing break?"
        );
    }
}
