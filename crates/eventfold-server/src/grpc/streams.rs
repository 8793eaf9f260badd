//! The `Streams` service: appends (one call per append, or batches on one call),
//! reads of a stream or of `$all` in either direction, catch-up subscriptions that
//! turn live, delete and tombstone.
//!
//! A read or subscription runs in a task of its own that feeds a bounded channel: a
//! slow client holds back its own task, nothing else. A subscription ends when the
//! client goes or the server shuts down.

use std::collections::HashMap;
use std::sync::Arc;

use eventfold_core::{
    AllFilter, Direction, Error, ExpectedVersion, Position, ReadAll, ReadStream, RecordedEvent,
    Revision, StreamWrite,
};
use eventfold_metadata::{DeleteMode, StreamAdmin};
use eventfold_subscription::{CompiledFilter, EventFilter, FilterOn};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::events::{
    Proposed, event_data, store_position, stream_identifier, stream_name, wire_event, wire_position,
};
use super::proto::streams::{
    AppendReq, AppendResp, BatchAppendReq, BatchAppendResp, DeleteReq, DeleteResp, ReadReq,
    ReadResp, TombstoneReq, TombstoneResp, append_req, append_resp, batch_append_req,
    batch_append_resp, delete_req, delete_resp, read_req, read_resp, streams_server::Streams,
    tombstone_req, tombstone_resp,
};
use super::{metadata, principal, proto, status, store_status};
use crate::auth::{Access, Principal};
use crate::routes::streams::{append_checked, check_writes, linked_stream};
use crate::state::AppState;

/// Events read from the store at a time.
const PAGE_EVENTS: u64 = 512;
/// Answers of a read buffered ahead of the client.
const READ_BUFFER: usize = 64;
/// Appends of one `BatchAppend` call being written at once; the call reads no further
/// until one of them is answered.
const BATCH_APPENDS_IN_FLIGHT_MAX: usize = 256;

/// The expected version of one of the protocol's `expected_stream_revision` oneofs
/// (each message has its own type of it, with the same four cases); `any` when none
/// is given.
macro_rules! expected_version {
    ($option:expr, $oneof:path) => {{
        use $oneof as E;
        match $option {
            Some(E::Revision(revision)) => ExpectedVersion::Exact(Revision(revision)),
            Some(E::NoStream(_)) => ExpectedVersion::NoStream,
            Some(E::StreamExists(_)) => ExpectedVersion::StreamExists,
            Some(E::Any(_)) | None => ExpectedVersion::Any,
        }
    }};
}

pub(super) struct StreamsService {
    state: Arc<AppState>,
}

impl StreamsService {
    pub(super) fn new(state: Arc<AppState>) -> Self {
        StreamsService { state }
    }
}

type ReadAnswers = ReceiverStream<Result<ReadResp, Status>>;
type BatchAnswers = ReceiverStream<Result<BatchAppendResp, Status>>;

#[tonic::async_trait]
impl Streams for StreamsService {
    type ReadStream = ReadAnswers;
    type BatchAppendStream = BatchAnswers;

    async fn read(&self, request: Request<ReadReq>) -> Result<Response<ReadAnswers>, Status> {
        let who = principal(&self.state, request.metadata())?;
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| Status::invalid_argument("a read needs its options"))?;
        let read = Read::parse(options)?;
        let access = match &read.source {
            // `$$<stream>`: the stream's metadata, under the metadata right.
            Source::Stream { name, .. } => match metadata::target(name) {
                Some(target) => Access::Metadata(target),
                None => Access::Read(name),
            },
            Source::All(_) => Access::All,
        };
        self.state.authorize(&who, access).await.map_err(status)?;
        let (sender, answers) = mpsc::channel(READ_BUFFER);
        let reader = Reader {
            state: self.state.clone(),
            who,
            read,
            sender,
        };
        tokio::spawn(reader.run());
        Ok(Response::new(ReceiverStream::new(answers)))
    }

    async fn append(
        &self,
        request: Request<Streaming<AppendReq>>,
    ) -> Result<Response<AppendResp>, Status> {
        let who = principal(&self.state, request.metadata())?;
        let mut requests = request.into_inner();
        let Some(AppendReq {
            content: Some(append_req::Content::Options(options)),
        }) = requests.message().await?
        else {
            return Err(Status::invalid_argument(
                "an append starts with its options (the stream and expected revision)",
            ));
        };
        let stream = stream_name(options.stream_identifier.as_ref())?;
        let expected = expected_version!(
            options.expected_stream_revision,
            append_req::options::ExpectedStreamRevision
        );
        let mut events = Vec::new();
        while let Some(message) = requests.message().await? {
            match message.content {
                Some(append_req::Content::ProposedMessage(proposed)) => {
                    self.check_count(events.len() + 1)?;
                    events.push(proposed_event(proposed.into())?);
                }
                _ => {
                    return Err(Status::invalid_argument(
                        "an append sends its options once, first",
                    ));
                }
            }
        }
        let result = match self.append_events(&who, &stream, expected, events).await? {
            Appended::Deleted => return Err(deleted(&stream)),
            Appended::Done { revision, position } => {
                append_resp::Result::Success(append_resp::Success {
                    current_revision_option: Some(match revision {
                        Some(revision) => {
                            append_resp::success::CurrentRevisionOption::CurrentRevision(revision)
                        }
                        None => {
                            append_resp::success::CurrentRevisionOption::NoStream(proto::Empty {})
                        }
                    }),
                    position_option: Some(match position {
                        Some(position) => {
                            append_resp::success::PositionOption::Position(append_resp::Position {
                                commit_position: position,
                                prepare_position: position,
                            })
                        }
                        None => append_resp::success::PositionOption::NoPosition(proto::Empty {}),
                    }),
                })
            }
            Appended::WrongVersion { actual } => {
                use append_resp::wrong_expected_version::{
                    CurrentRevisionOption as Current, ExpectedRevisionOption as Wanted,
                };
                append_resp::Result::WrongExpectedVersion(append_resp::WrongExpectedVersion {
                    current_revision_option: Some(match actual {
                        Some(revision) => Current::CurrentRevision(revision.get()),
                        None => Current::CurrentNoStream(proto::Empty {}),
                    }),
                    expected_revision_option: Some(match expected {
                        ExpectedVersion::Exact(revision) => {
                            Wanted::ExpectedRevision(revision.get())
                        }
                        ExpectedVersion::NoStream => Wanted::ExpectedNoStream(proto::Empty {}),
                        ExpectedVersion::StreamExists => {
                            Wanted::ExpectedStreamExists(proto::Empty {})
                        }
                        ExpectedVersion::Any => Wanted::ExpectedAny(proto::Empty {}),
                    }),
                })
            }
        };
        Ok(Response::new(AppendResp {
            result: Some(result),
        }))
    }

    async fn delete(&self, request: Request<DeleteReq>) -> Result<Response<DeleteResp>, Status> {
        let who = principal(&self.state, request.metadata())?;
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| Status::invalid_argument("a delete needs its options"))?;
        let expected = expected_version!(
            options.expected_stream_revision,
            delete_req::options::ExpectedStreamRevision
        );
        let stream = stream_name(options.stream_identifier.as_ref())?;
        let position = self
            .delete_stream(&who, &stream, expected, DeleteMode::Soft)
            .await?;
        Ok(Response::new(DeleteResp {
            position_option: Some(delete_resp::PositionOption::Position(
                delete_resp::Position {
                    commit_position: position,
                    prepare_position: position,
                },
            )),
        }))
    }

    async fn tombstone(
        &self,
        request: Request<TombstoneReq>,
    ) -> Result<Response<TombstoneResp>, Status> {
        let who = principal(&self.state, request.metadata())?;
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| Status::invalid_argument("a tombstone needs its options"))?;
        let expected = expected_version!(
            options.expected_stream_revision,
            tombstone_req::options::ExpectedStreamRevision
        );
        let stream = stream_name(options.stream_identifier.as_ref())?;
        let position = self
            .delete_stream(&who, &stream, expected, DeleteMode::Hard)
            .await?;
        Ok(Response::new(TombstoneResp {
            position_option: Some(tombstone_resp::PositionOption::Position(
                tombstone_resp::Position {
                    commit_position: position,
                    prepare_position: position,
                },
            )),
        }))
    }

    async fn batch_append(
        &self,
        request: Request<Streaming<BatchAppendReq>>,
    ) -> Result<Response<BatchAnswers>, Status> {
        let who = principal(&self.state, request.metadata())?;
        let mut requests = request.into_inner();
        let (sender, answers) = mpsc::channel(READ_BUFFER);
        let service = Arc::new(StreamsService::new(self.state.clone()));
        let who = Arc::new(who);
        // Appends of one call are written side by side (a client such as KurrentDB's
        // Node.js one sends all its appends on one call), each answered when written.
        let in_flight = Arc::new(tokio::sync::Semaphore::new(BATCH_APPENDS_IN_FLIGHT_MAX));
        tokio::spawn(async move {
            let mut pending: HashMap<String, Batch> = HashMap::new();
            loop {
                let request = match requests.message().await {
                    Ok(Some(request)) => request,
                    Ok(None) => return,
                    Err(error) => {
                        let _ = sender.send(Err(error)).await;
                        return;
                    }
                };
                let (correlation, batch) = match service.gather(&mut pending, request) {
                    Ok(None) => continue,
                    Ok(Some(complete)) => complete,
                    Err(error) => {
                        let _ = sender.send(Err(error)).await;
                        return;
                    }
                };
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    return;
                };
                let (service, who, sender) = (service.clone(), who.clone(), sender.clone());
                tokio::spawn(async move {
                    let answer = service.answer_batch(&who, correlation, batch).await;
                    let _ = sender.send(Ok(answer)).await;
                    drop(permit);
                });
            }
        });
        Ok(Response::new(ReceiverStream::new(answers)))
    }
}

/// The events of one batch append gathered so far, by correlation id.
struct Batch {
    stream: String,
    expected: ExpectedVersion,
    events: Vec<eventfold_core::EventData>,
}

/// What an append did.
enum Appended {
    /// Written (or found written before, or nothing to write and the expectation
    /// held): the stream's last revision and the commit position of its last event.
    Done {
        revision: Option<u64>,
        position: Option<u64>,
    },
    /// The stream was not where the writer expected it; nothing was written.
    WrongVersion { actual: Option<Revision> },
    /// The stream was deleted for good (tombstoned); nothing was written.
    Deleted,
}

impl StreamsService {
    /// Refuses an append of more events than the server takes at once.
    fn check_count(&self, count: usize) -> Result<(), Status> {
        let max = self.state.config.append_events_max;
        if count > max {
            return Err(Status::invalid_argument(format!(
                "more than {max} events in one append, the server's limit"
            )));
        }
        Ok(())
    }

    /// Appends `events` to `stream` as the HTTP API does (same rights, checks, limits
    /// and metrics). An append of no events checks the expectation only.
    async fn append_events(
        &self,
        who: &Principal,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<eventfold_core::EventData>,
    ) -> Result<Appended, Status> {
        let state = &self.state;
        if let Some(target) = metadata::target(stream) {
            return self.set_metadata(who, target, expected, events).await;
        }
        state
            .authorize(who, Access::Write(stream))
            .await
            .map_err(status)?;
        if events.is_empty() {
            eventfold_core::validate_stream_name(stream).map_err(store_status)?;
            let actual = state
                .store
                .stream_revision(stream)
                .await
                .map_err(store_status)?;
            return Ok(if expected.is_satisfied_by(actual) {
                Appended::Done {
                    revision: actual.map(Revision::get),
                    position: None,
                }
            } else {
                Appended::WrongVersion { actual }
            });
        }
        let writes = vec![StreamWrite::new(stream, expected, events)];
        let writes = check_writes(state, who, writes).await.map_err(status)?;
        match append_checked(state, writes).await {
            Ok(results) => {
                let result = results
                    .first()
                    .ok_or_else(|| Status::internal("the store answered no result"))?;
                Ok(Appended::Done {
                    revision: Some(result.last_revision.get()),
                    position: Some(wire_position(result.position)),
                })
            }
            Err(Error::WrongExpectedVersion { actual, .. }) => {
                Ok(Appended::WrongVersion { actual })
            }
            Err(Error::StreamDeleted { .. }) => Ok(Appended::Deleted),
            Err(Error::IdempotencyConflict { stream, .. }) if !who.is_admin() => Err(status(
                crate::error::ApiError::idempotency_conflict(&stream),
            )),
            Err(error) => Err(store_status(error)),
        }
    }

    /// An append of one `$metadata` event to `$$<target>`: KurrentDB's way of setting
    /// a stream's metadata, taken as eventfold's (same right, same checks).
    async fn set_metadata(
        &self,
        who: &Principal,
        target: &str,
        expected: ExpectedVersion,
        events: Vec<eventfold_core::EventData>,
    ) -> Result<Appended, Status> {
        self.state
            .authorize(who, Access::Metadata(target))
            .await
            .map_err(status)?;
        let [event] = <[eventfold_core::EventData; 1]>::try_from(events).map_err(|_| {
            Status::invalid_argument("a metadata stream takes one $metadata event at a time")
        })?;
        if event.event_type != eventfold_metadata::METADATA_EVENT_TYPE {
            return Err(Status::invalid_argument(format!(
                "a metadata stream takes $metadata events, not {}",
                event.event_type
            )));
        }
        let document = metadata::from_kurrentdb(&event.data).map_err(Status::invalid_argument)?;
        match self
            .state
            .store
            .set_stream_metadata(target, expected, document)
            .await
        {
            Ok(result) => Ok(Appended::Done {
                revision: Some(result.last_revision.get()),
                position: Some(wire_position(result.position)),
            }),
            Err(Error::WrongExpectedVersion { actual, .. }) => {
                Ok(Appended::WrongVersion { actual })
            }
            Err(error) => Err(store_status(error)),
        }
    }

    /// Takes one message of a batch append: the append it completes (it was the last
    /// of its append), if any.
    fn gather(
        &self,
        pending: &mut HashMap<String, Batch>,
        request: BatchAppendReq,
    ) -> Result<Option<(proto::Uuid, Batch)>, Status> {
        let correlation = request
            .correlation_id
            .clone()
            .ok_or_else(|| Status::invalid_argument("a batch append needs a correlation id"))?;
        let key = format!("{:?}", correlation.value);
        let batch = match (pending.get_mut(&key), request.options) {
            (Some(batch), _) => batch,
            (None, Some(options)) => {
                use batch_append_req::options::ExpectedStreamPosition as E;
                let expected = match options.expected_stream_position {
                    Some(E::StreamPosition(revision)) => ExpectedVersion::Exact(Revision(revision)),
                    Some(E::NoStream(_)) => ExpectedVersion::NoStream,
                    Some(E::StreamExists(_)) => ExpectedVersion::StreamExists,
                    Some(E::Any(_)) | None => ExpectedVersion::Any,
                };
                let stream = stream_name(options.stream_identifier.as_ref())?;
                pending.entry(key.clone()).or_insert(Batch {
                    stream,
                    expected,
                    events: Vec::new(),
                })
            }
            (None, None) => {
                return Err(Status::invalid_argument(
                    "the first batch of an append carries its options",
                ));
            }
        };
        for proposed in request.proposed_messages {
            self.check_count(batch.events.len() + 1)?;
            batch.events.push(proposed_event(proposed.into())?);
        }
        if !request.is_final {
            return Ok(None);
        }
        Ok(pending.remove(&key).map(|batch| (correlation, batch)))
    }

    /// Writes one gathered batch append and answers it.
    async fn answer_batch(
        &self,
        who: &Principal,
        correlation: proto::Uuid,
        batch: Batch,
    ) -> BatchAppendResp {
        let appended = self
            .append_events(who, &batch.stream, batch.expected, batch.events)
            .await;
        use batch_append_resp::ExpectedStreamPosition as Echo;
        let echo = match batch.expected {
            ExpectedVersion::Exact(revision) => Echo::StreamPosition(revision.get()),
            ExpectedVersion::NoStream => Echo::NoStream(()),
            ExpectedVersion::StreamExists => Echo::StreamExists(()),
            ExpectedVersion::Any => Echo::Any(()),
        };
        let result = match appended {
            Ok(Appended::Done { revision, position }) => {
                use batch_append_resp::success::{CurrentRevisionOption, PositionOption};
                batch_append_resp::Result::Success(batch_append_resp::Success {
                    current_revision_option: Some(match revision {
                        Some(revision) => CurrentRevisionOption::CurrentRevision(revision),
                        None => CurrentRevisionOption::NoStream(()),
                    }),
                    position_option: Some(match position {
                        Some(position) => PositionOption::Position(proto::AllStreamPosition {
                            commit_position: position,
                            prepare_position: position,
                        }),
                        None => PositionOption::NoPosition(()),
                    }),
                })
            }
            Ok(Appended::WrongVersion { actual }) => {
                use proto::wrong_expected_version::{
                    CurrentStreamRevisionOption as Current, ExpectedStreamPositionOption as Wanted,
                };
                let details = proto::WrongExpectedVersion {
                    current_stream_revision_option: Some(match actual {
                        Some(revision) => Current::CurrentStreamRevision(revision.get()),
                        None => Current::CurrentNoStream(()),
                    }),
                    expected_stream_position_option: Some(match batch.expected {
                        ExpectedVersion::Exact(r) => Wanted::ExpectedStreamPosition(r.get()),
                        ExpectedVersion::NoStream => Wanted::ExpectedNoStream(()),
                        ExpectedVersion::StreamExists => Wanted::ExpectedStreamExists(()),
                        ExpectedVersion::Any => Wanted::ExpectedAny(()),
                    }),
                };
                // The store's own words for it.
                let message = Error::WrongExpectedVersion {
                    stream: batch.stream.clone(),
                    expected: batch.expected,
                    actual,
                }
                .to_string();
                batch_append_resp::Result::Error(failure(
                    tonic::Code::FailedPrecondition,
                    message,
                    "event_store.client.WrongExpectedVersion",
                    details.encode_to_vec(),
                ))
            }
            Ok(Appended::Deleted) => {
                let refused = deleted(&batch.stream);
                batch_append_resp::Result::Error(failure(
                    refused.code(),
                    refused.message().to_string(),
                    "event_store.client.StreamDeleted",
                    proto::StreamDeleted {
                        stream_identifier: Some(stream_identifier(&batch.stream)),
                    }
                    .encode_to_vec(),
                ))
            }
            Err(error) => {
                let (name, details) = match error.code() {
                    tonic::Code::PermissionDenied => (
                        "event_store.client.AccessDenied",
                        proto::AccessDenied {}.encode_to_vec(),
                    ),
                    _ => (
                        "event_store.client.BadRequest",
                        proto::BadRequest {
                            message: error.message().to_string(),
                        }
                        .encode_to_vec(),
                    ),
                };
                batch_append_resp::Result::Error(failure(
                    error.code(),
                    error.message().to_string(),
                    name,
                    details,
                ))
            }
        };
        BatchAppendResp {
            correlation_id: Some(correlation),
            result: Some(result),
            stream_identifier: Some(stream_identifier(&batch.stream)),
            expected_stream_position: Some(echo),
        }
    }

    /// Deletes `stream` (soft: an append brings it back; hard: never again) and
    /// answers the commit position of what the delete wrote.
    async fn delete_stream(
        &self,
        who: &Principal,
        stream: &str,
        expected: ExpectedVersion,
        mode: DeleteMode,
    ) -> Result<u64, Status> {
        eventfold_core::validate_stream_name(stream).map_err(store_status)?;
        self.state
            .authorize(who, Access::Delete(stream))
            .await
            .map_err(status)?;
        match self.state.store.delete_stream(stream, expected, mode).await {
            Ok(deleted) => {
                tracing::info!(%stream, ?mode, user = %who.name, "stream deleted (gRPC)");
                Ok(wire_position(deleted.position))
            }
            // The form KurrentDB's clients read the stream and both versions from.
            Err(Error::WrongExpectedVersion {
                stream,
                expected,
                actual,
            }) => Err(Status::failed_precondition(format!(
                "Delete failed due to WrongExpectedVersion. Stream: {stream}, Expected version: \
                 {}, Actual version: {}",
                numbered(expected),
                actual.map_or(-1, |r| i64::try_from(r.get()).unwrap_or(i64::MAX))
            ))),
            Err(Error::StreamDeleted { stream }) => Err(deleted(&stream)),
            Err(error) => Err(store_status(error)),
        }
    }
}

/// The event of a proposed message, or `invalid_argument` naming what is wrong.
fn proposed_event(proposed: Proposed) -> Result<eventfold_core::EventData, Status> {
    event_data(proposed).map_err(Status::invalid_argument)
}

/// The status of a stream deleted for good, in the words clients look for.
fn deleted(stream: &str) -> Status {
    Status::failed_precondition(format!(
        "Event stream '{stream}' is deleted (hard delete): it can be neither read nor \
         written again"
    ))
}

/// An expected version as KurrentDB numbers it in messages: a revision, or -1 (no
/// stream), -2 (any), -4 (the stream exists).
fn numbered(expected: ExpectedVersion) -> i64 {
    match expected {
        ExpectedVersion::Exact(revision) => i64::try_from(revision.get()).unwrap_or(i64::MAX),
        ExpectedVersion::NoStream => -1,
        ExpectedVersion::Any => -2,
        ExpectedVersion::StreamExists => -4,
    }
}

/// A failed batch append's status, with its one detail.
fn failure(
    code: tonic::Code,
    message: String,
    detail: &str,
    value: Vec<u8>,
) -> proto::google::rpc::Status {
    proto::google::rpc::Status {
        code: code as i32,
        message,
        details: Some(prost_types::Any {
            type_url: format!("type.googleapis.com/{detail}"),
            value,
        }),
    }
}

/// A read as the client asked for it.
struct Read {
    source: Source,
    backwards: bool,
    resolve_links: bool,
    /// The most events to send; `None` for a subscription.
    count: Option<u64>,
    filter: Option<Filter>,
    structured_ids: bool,
}

enum Source {
    Stream { name: String, from: From },
    All(From),
}

/// Where a read starts: a stream's revision, or an `$all` commit position.
#[derive(Clone, Copy)]
enum From {
    Start,
    End,
    At(u64),
}

impl Read {
    fn parse(options: read_req::Options) -> Result<Read, Status> {
        use read_req::options::{CountOption, FilterOption, StreamOption};
        let source = match options.stream_option {
            Some(StreamOption::Stream(stream)) => {
                use read_req::options::stream_options::RevisionOption as R;
                let from = match stream.revision_option {
                    Some(R::Revision(revision)) => From::At(revision),
                    Some(R::End(_)) => From::End,
                    Some(R::Start(_)) | None => From::Start,
                };
                Source::Stream {
                    name: stream_name(stream.stream_identifier.as_ref())?,
                    from,
                }
            }
            Some(StreamOption::All(all)) => {
                use read_req::options::all_options::AllOption as A;
                Source::All(match all.all_option {
                    Some(A::Position(position)) => From::At(position.commit_position),
                    Some(A::End(_)) => From::End,
                    Some(A::Start(_)) | None => From::Start,
                })
            }
            None => {
                return Err(Status::invalid_argument(
                    "a read names a stream or $all (stream_option)",
                ));
            }
        };
        let count = match options.count_option {
            Some(CountOption::Count(count)) => Some(count),
            Some(CountOption::Subscription(_)) => None,
            None => Some(u64::MAX),
        };
        let filter = match options.filter_option {
            Some(FilterOption::Filter(filter)) => Some(Filter::parse(filter)?),
            Some(FilterOption::NoFilter(_)) | None => None,
        };
        let backwards =
            options.read_direction == read_req::options::ReadDirection::Backwards as i32;
        if backwards && count.is_none() {
            return Err(Status::invalid_argument("a subscription reads forwards"));
        }
        let structured_ids = matches!(
            options.uuid_option.and_then(|o| o.content),
            Some(read_req::options::uuid_option::Content::Structured(_))
        );
        Ok(Read {
            source,
            backwards,
            resolve_links: options.resolve_links,
            count,
            filter,
            structured_ids,
        })
    }
}

/// A server-side filter of `$all`: on stream names or event types, by prefixes or a
/// regular expression, with a checkpoint every `checkpoint_every` events looked at.
struct Filter {
    matcher: CompiledFilter,
    checkpoint_every: u64,
}

impl Filter {
    fn parse(options: read_req::options::FilterOptions) -> Result<Filter, Status> {
        use read_req::options::filter_options::{Filter as On, Window};
        let (on, expression) = match options.filter {
            Some(On::StreamIdentifier(expression)) => (FilterOn::Stream, expression),
            Some(On::EventType(expression)) => (FilterOn::EventType, expression),
            None => {
                return Err(Status::invalid_argument(
                    "a filter applies to stream names or event types",
                ));
            }
        };
        let matcher = EventFilter {
            on,
            prefixes: expression.prefix,
            regex: Some(expression.regex).filter(|r| !r.is_empty()),
        }
        .compile()
        .map_err(store_status)?;
        let window = match options.window {
            Some(Window::Max(max)) => u64::from(max.max(1)),
            Some(Window::Count(_)) | None => 1,
        };
        Ok(Filter {
            matcher,
            checkpoint_every: window * u64::from(options.checkpoint_interval_multiplier.max(1)),
        })
    }

    fn matches(&self, event: &RecordedEvent) -> bool {
        self.matcher.matches(&event.stream, &event.event_type)
    }

    /// The part of the filter the store can apply while reading.
    fn store_filter(&self) -> AllFilter {
        AllFilter {
            stream_prefix: self.matcher.stream_prefix().map(str::to_string),
            ..AllFilter::default()
        }
    }
}

/// Why a read stopped before its end.
enum Stop {
    /// The client went away, or the server is shutting down.
    Gone,
    /// It failed; the client gets this status.
    Failed(Status),
}

impl std::convert::From<Status> for Stop {
    fn from(status: Status) -> Self {
        Stop::Failed(status)
    }
}

impl std::convert::From<Error> for Stop {
    fn from(error: Error) -> Self {
        Stop::Failed(match error {
            Error::StreamDeleted { stream } => deleted(&stream),
            error => store_status(error),
        })
    }
}

/// One read or subscription, feeding its client.
struct Reader {
    state: Arc<AppState>,
    who: Principal,
    read: Read,
    sender: mpsc::Sender<Result<ReadResp, Status>>,
}

impl Reader {
    async fn run(self) {
        let result = match (&self.read.source, self.read.count) {
            (Source::Stream { name, from }, Some(count)) => {
                let (name, from) = (name.clone(), *from);
                self.read_stream(&name, from, count).await
            }
            (Source::Stream { name, from }, None) => {
                let (name, from) = (name.clone(), *from);
                self.subscribe_stream(&name, from).await
            }
            (Source::All(from), Some(count)) => {
                let from = *from;
                if self.read.backwards {
                    self.read_all_backwards(from, count).await
                } else {
                    self.read_all(from, count).await
                }
            }
            (Source::All(from), None) => {
                let from = *from;
                self.subscribe_all(from).await
            }
        };
        if let Err(Stop::Failed(status)) = result {
            let _ = self.sender.send(Err(status)).await;
        }
    }

    async fn send(&self, content: read_resp::Content) -> Result<(), Stop> {
        self.sender
            .send(Ok(ReadResp {
                content: Some(content),
            }))
            .await
            .map_err(|_| Stop::Gone)
    }

    /// Sends `event`, once the caller may read the original it stands for (a
    /// metadata event in KurrentDB's form).
    async fn send_event(&self, event: &RecordedEvent) -> Result<(), Stop> {
        if let Some(translated) = metadata::as_kurrentdb(event) {
            return self.send_one(&translated).await;
        }
        self.send_one(event).await
    }

    async fn send_one(&self, event: &RecordedEvent) -> Result<(), Stop> {
        if let Some(original) = linked_stream(event) {
            self.state
                .authorize(&self.who, Access::Read(&original))
                .await
                .map_err(status)?;
        }
        let position = wire_position(event.position);
        self.send(read_resp::Content::Event(read_resp::ReadEvent {
            event: Some(wire_event(event, self.read.structured_ids)),
            link: None,
            position: Some(read_resp::read_event::Position::CommitPosition(position)),
        }))
        .await
    }

    fn stream_options(&self, direction: Direction) -> ReadStream {
        let options = match direction {
            Direction::Forward => ReadStream::forward(),
            Direction::Backward => ReadStream::backward(),
        };
        if self.read.resolve_links {
            options
        } else {
            options.links_as_written()
        }
    }

    async fn read_stream(&self, stream: &str, from: From, count: u64) -> Result<(), Stop> {
        let direction = if self.read.backwards {
            Direction::Backward
        } else {
            Direction::Forward
        };
        let mut next = match (from, direction) {
            (From::At(revision), _) => Some(revision),
            (From::Start, _) => Some(0),
            (From::End, Direction::Backward) => None,
            (From::End, Direction::Forward) => return Ok(()),
        };
        let mut left = count;
        while left > 0 {
            let limit = left.min(PAGE_EVENTS);
            let mut options = self.stream_options(direction).limit(limit);
            if let Some(next) = next {
                options = options.from(Revision(next));
            }
            let events = match self.state.store.read_stream(stream, options).await {
                Ok(events) => events,
                Err(Error::StreamNotFound { .. }) => {
                    return self
                        .send(read_resp::Content::StreamNotFound(
                            read_resp::StreamNotFound {
                                stream_identifier: Some(stream_identifier(stream)),
                            },
                        ))
                        .await;
                }
                Err(error) => return Err(error.into()),
            };
            for event in &events {
                self.send_event(event).await?;
            }
            left -= events.len() as u64;
            let Some(last) = events.last() else {
                return Ok(());
            };
            if (events.len() as u64) < limit {
                return Ok(());
            }
            next = match direction {
                Direction::Forward => Some(last.revision.get() + 1),
                Direction::Backward => match last.revision.get().checked_sub(1) {
                    Some(revision) => Some(revision),
                    None => return Ok(()),
                },
            };
        }
        Ok(())
    }

    async fn subscribe_stream(&self, stream: &str, from: From) -> Result<(), Stop> {
        let store = &self.state.store;
        let mut next = match from {
            From::Start => 0,
            From::At(revision) => revision.saturating_add(1),
            From::End => store
                .stream_revision(stream)
                .await?
                .map_or(0, |r| r.get() + 1),
        };
        self.confirm().await?;
        let mut caught_up = false;
        loop {
            // The head before the read: whatever is appended after it wakes the wait.
            let head = store.head_position().await?;
            let options = self
                .stream_options(Direction::Forward)
                .from(Revision(next))
                .limit(PAGE_EVENTS);
            let events = match store.read_stream(stream, options).await {
                Ok(events) => events,
                Err(Error::StreamNotFound { .. }) => Vec::new(),
                Err(error) => return Err(error.into()),
            };
            for event in &events {
                self.send_event(event).await?;
                next = event.revision.get() + 1;
            }
            if (events.len() as u64) < PAGE_EVENTS {
                if !caught_up {
                    caught_up = true;
                    self.send(read_resp::Content::CaughtUp(read_resp::CaughtUp {
                        timestamp: Some(now()),
                        stream_revision: next.checked_sub(1).and_then(|r| i64::try_from(r).ok()),
                        position: None,
                    }))
                    .await?;
                }
                self.wait_after(head).await?;
            }
        }
    }

    async fn read_all(&self, from: From, count: u64) -> Result<(), Stop> {
        let store = &self.state.store;
        let mut next = match from {
            From::Start => Position::START,
            From::At(commit) => store_position(commit).unwrap_or(Position::START),
            From::End => return Ok(()),
        };
        let store_filter = self.read.filter.as_ref().map(Filter::store_filter);
        let mut left = count;
        while left > 0 {
            let read = ReadAll::from(next, PAGE_EVENTS.min(left))
                .filtered(store_filter.clone().unwrap_or_default());
            let slice = store.read_all(read).await?;
            for event in &slice.events {
                if left == 0 {
                    break;
                }
                if self.read.filter.as_ref().is_none_or(|f| f.matches(event)) {
                    self.send_event(event).await?;
                    left -= 1;
                }
            }
            if slice.end_of_log || slice.next <= next {
                return Ok(());
            }
            next = slice.next;
        }
        Ok(())
    }

    async fn read_all_backwards(&self, from: From, count: u64) -> Result<(), Stop> {
        let store = &self.state.store;
        // Every event below `bound` is to be read, the last first.
        let mut bound = match from {
            From::Start => return Ok(()),
            From::End => store.head_position().await?.map_or(0, |p| p.get() + 1),
            From::At(commit) => commit.saturating_sub(1),
        };
        let mut left = count;
        while left > 0 && bound > 0 {
            let start = bound.saturating_sub(PAGE_EVENTS);
            let slice = store
                .read_all(ReadAll::from(Position(start), bound - start))
                .await?;
            for event in slice.events.iter().rev() {
                if left == 0 {
                    break;
                }
                if event.position.get() >= bound {
                    continue;
                }
                if self.read.filter.as_ref().is_none_or(|f| f.matches(event)) {
                    self.send_event(event).await?;
                    left -= 1;
                }
            }
            bound = start;
        }
        Ok(())
    }

    async fn subscribe_all(&self, from: From) -> Result<(), Stop> {
        let store = &self.state.store;
        let mut next = match from {
            From::Start => Position::START,
            // After the event at this commit position: its `$all` position is one less.
            From::At(commit) => Position(commit),
            From::End => store
                .head_position()
                .await?
                .map_or(Position::START, Position::next),
        };
        self.confirm().await?;
        let filter = self.read.filter.as_ref();
        let store_filter = filter.map(Filter::store_filter).unwrap_or_default();
        let mut caught_up = false;
        let mut since_checkpoint = 0u64;
        loop {
            let slice = store
                .read_all(ReadAll::from(next, PAGE_EVENTS).filtered(store_filter.clone()))
                .await?;
            for event in &slice.events {
                if filter.is_none_or(|f| f.matches(event)) {
                    self.send_event(event).await?;
                }
            }
            let scanned = slice.next.get().saturating_sub(next.get());
            next = slice.next.max(next);
            if let Some(filter) = filter {
                since_checkpoint += scanned;
                if since_checkpoint >= filter.checkpoint_every
                    || (slice.end_of_log && since_checkpoint > 0)
                {
                    since_checkpoint = 0;
                    // The commit position of the last event looked at.
                    let position = next.get();
                    self.send(read_resp::Content::Checkpoint(read_resp::Checkpoint {
                        commit_position: position,
                        prepare_position: position,
                        timestamp: Some(now()),
                    }))
                    .await?;
                }
            }
            if slice.end_of_log {
                if !caught_up {
                    caught_up = true;
                    let position = next.get();
                    self.send(read_resp::Content::CaughtUp(read_resp::CaughtUp {
                        timestamp: Some(now()),
                        stream_revision: None,
                        position: Some(read_resp::Position {
                            commit_position: position,
                            prepare_position: position,
                        }),
                    }))
                    .await?;
                }
                self.wait_for(next).await?;
            }
        }
    }

    async fn confirm(&self) -> Result<(), Stop> {
        self.send(read_resp::Content::Confirmation(
            read_resp::SubscriptionConfirmation {
                subscription_id: uuid::Uuid::new_v4().to_string(),
            },
        ))
        .await
    }

    /// Waits for an event after `head` (any event, when the log was empty).
    async fn wait_after(&self, head: Option<Position>) -> Result<(), Stop> {
        self.wait_for(head.map_or(Position::START, Position::next))
            .await
    }

    /// Waits until the log holds an event at `position`, the client goes, or the
    /// server shuts down.
    async fn wait_for(&self, position: Position) -> Result<(), Stop> {
        let mut closing = self.state.closing.subscribe();
        tokio::select! {
            waited = self.state.store.wait_for(position) => Ok(waited?),
            _ = closing.wait_for(|closing| *closing) => Err(Stop::Gone),
            () = self.sender.closed() => Err(Stop::Gone),
        }
    }
}

fn now() -> prost_types::Timestamp {
    prost_types::Timestamp::from(std::time::SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(stream: &str, event_type: &str) -> RecordedEvent {
        RecordedEvent {
            stream: stream.into(),
            revision: Revision(0),
            position: Position(0),
            id: uuid::Uuid::now_v7(),
            event_type: event_type.into(),
            version: 1,
            data: bytes::Bytes::from_static(b"{}"),
            metadata: bytes::Bytes::from_static(b"{}"),
            recorded_at: Default::default(),
        }
    }

    fn filter(on_streams: bool, regex: &str, prefixes: &[&str]) -> Filter {
        use read_req::options::filter_options::{Expression, Filter as On, Window};
        let expression = Expression {
            regex: regex.into(),
            prefix: prefixes.iter().map(|p| p.to_string()).collect(),
        };
        Filter::parse(read_req::options::FilterOptions {
            filter: Some(if on_streams {
                On::StreamIdentifier(expression)
            } else {
                On::EventType(expression)
            }),
            window: Some(Window::Max(10)),
            checkpoint_interval_multiplier: 3,
        })
        .unwrap()
    }

    #[test]
    fn filters_match_by_prefix_or_regex_on_streams_or_types() {
        let f = filter(true, "", &["order-", "cart-"]);
        assert!(f.matches(&event("order-1", "X")));
        assert!(f.matches(&event("cart-9", "X")));
        assert!(!f.matches(&event("user-1", "order-")));
        assert_eq!(f.checkpoint_every, 30);
        assert_eq!(
            f.store_filter(),
            AllFilter::default(),
            "two prefixes are ours to apply"
        );
        let one = filter(true, "", &["order-"]);
        assert_eq!(one.store_filter().stream_prefix.as_deref(), Some("order-"));

        // The exclusion KurrentDB's clients send by default: types starting with $.
        let f = filter(false, r"^(?!(\$.+$|PersistentConfig\d+$|Result$))", &[]);
        assert!(f.matches(&event("s", "Placed")));
        assert!(!f.matches(&event("s", "$metadata")));
    }

    #[test]
    fn a_regex_that_does_not_compile_is_refused_by_name() {
        use read_req::options::filter_options::{Expression, Filter as On};
        let refused = Filter::parse(read_req::options::FilterOptions {
            filter: Some(On::EventType(Expression {
                regex: "(".into(),
                prefix: vec![],
            })),
            window: None,
            checkpoint_interval_multiplier: 0,
        })
        .err()
        .unwrap();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(
            refused.message().contains("regular expression"),
            "{refused:?}"
        );
    }

    #[test]
    fn expected_versions_are_numbered_as_kurrentdb_numbers_them() {
        assert_eq!(numbered(ExpectedVersion::NoStream), -1);
        assert_eq!(numbered(ExpectedVersion::Any), -2);
        assert_eq!(numbered(ExpectedVersion::StreamExists), -4);
        assert_eq!(numbered(ExpectedVersion::Exact(Revision(7))), 7);
    }
}
