//! The `PersistentSubscriptions` service over eventfold's consumer groups
//! (`eventfold_subscription::PersistentGroup`, the groups of `/subscriptions` in the
//! HTTP API): create, update, delete, read with ack / nack / park, info, list and the
//! replay of parked events.
//!
//! KurrentDB names a group by its stream and its name; eventfold's group is named
//! `NAME@STREAM` (`NAME@$all` for `$all`; `%`, `/` and `@` of either part written
//! `%25`, `%2F` and `%40`), so the same group is seen through HTTP. A group on a stream follows that stream; on
//! `$ce-CATEGORY` or `$et-TYPE` it follows the category or event type.

use std::collections::HashMap;
use std::sync::Arc;

use eventfold_core::{Position, ReadStream, Revision};
use eventfold_subscription::{
    EventFilter, FilterOn, GroupSettings, Nack, PersistentGroup, delete_group, group_settings,
    list_groups, update_group,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use super::events::{stream_name, wire_event, wire_position};
use super::proto::persistent_subscriptions::{
    CreateReq, CreateResp, DeleteReq, DeleteResp, GetInfoReq, GetInfoResp, ListReq, ListResp,
    ReadReq, ReadResp, ReplayParkedReq, ReplayParkedResp, SubscriptionInfo, UpdateReq, UpdateResp,
    create_req, delete_req, get_info_req, list_req,
    persistent_subscriptions_server::PersistentSubscriptions, read_req, read_resp,
    replay_parked_req, update_req,
};
use super::{principal, status, store_status};
use crate::auth::Access;
use crate::routes::groups::{keep, lock, open_group};
use crate::state::{AppState, Group};

/// Answers buffered ahead of a consumer.
const READ_BUFFER: usize = 64;
/// Events in flight on one call when the client does not say.
const BUFFER_SIZE_DEFAULT: usize = 10;
/// .NET ticks (KurrentDB's time unit) per millisecond.
const TICKS_PER_MS: i64 = 10_000;

pub(super) struct PersistentService {
    state: Arc<AppState>,
    /// Bumped when a group is updated or deleted: its consumers' calls end, and they
    /// reconnect to the group as it is now.
    changes: watch::Sender<u64>,
}

impl PersistentService {
    pub(super) fn new(state: Arc<AppState>) -> Self {
        PersistentService {
            state,
            changes: watch::channel(0).0,
        }
    }

    /// Drops the group from the ones this node serves and ends its consumers' calls.
    fn retire(&self, name: &str) {
        lock(&self.state).remove(name);
        self.changes.send_modify(|n| *n += 1);
    }

    /// The group `group_name` on `source` and eventfold's name of it, or `not_found`.
    async fn existing(&self, source: &Source, group_name: &str) -> Result<(String, Group), Status> {
        let name = source.group(group_name)?;
        let group = open_group(&self.state, &name)
            .await
            .map_err(status)?
            .ok_or_else(|| not_found(group_name, source))?;
        Ok((name, group))
    }

    async fn authorize(&self, metadata: &tonic::metadata::MetadataMap) -> Result<(), Status> {
        let who = principal(&self.state, metadata)?;
        self.state
            .authorize(&who, Access::Groups)
            .await
            .map_err(status)
    }
}

/// The source one of the protocol's `stream_option` oneofs names (each request has
/// its own type of it, with a stream or `$all`), if it names one.
macro_rules! source_of {
    ($option:expr, $oneof:path) => {{
        use $oneof as O;
        match $option {
            Some(O::StreamIdentifier(stream)) => Some(Source::of_stream(Some(&stream))?),
            Some(O::All(_)) => Some(Source::All),
            None => None,
        }
    }};
}

/// The message timeout, in ms, of one of the settings' `message_timeout` oneofs (in
/// ms, or in .NET ticks as old clients send it), if given.
macro_rules! message_timeout_ms {
    ($option:expr, $oneof:path) => {{
        use $oneof as T;
        match $option {
            Some(T::MessageTimeoutMs(ms)) => Some(i64::from(ms)),
            Some(T::MessageTimeoutTicks(ticks)) => Some(ticks / TICKS_PER_MS),
            None => None,
        }
    }};
}

/// What a group follows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Stream(String),
    All,
}

impl Source {
    fn of_stream(stream: Option<&super::proto::StreamIdentifier>) -> Result<Source, Status> {
        Ok(Source::Stream(stream_name(stream)?))
    }

    /// eventfold's name of the group `group` on this source.
    fn group(&self, group: &str) -> Result<String, Status> {
        if group.is_empty() {
            return Err(Status::invalid_argument("a group needs a name"));
        }
        Ok(match self {
            Source::Stream(stream) => format!("{}@{}", escape(group), escape(stream)),
            Source::All => format!("{}@$all", escape(group)),
        })
    }

    fn name(&self) -> &str {
        match self {
            Source::Stream(stream) => stream,
            Source::All => "$all",
        }
    }
}

/// The KurrentDB group and source of an eventfold group name, if it is one of theirs.
fn kurrentdb_group(name: &str) -> Option<(String, Source)> {
    let (group, source) = name.split_once('@')?;
    let source = match source {
        "$all" => Source::All,
        stream => Source::Stream(unescape(stream)),
    };
    Some((unescape(group), source))
}

/// A part of an eventfold group name: `%`, `/` (which group names cannot hold) and
/// `@` (which separates the parts) percent-encoded.
fn escape(part: &str) -> String {
    part.replace('%', "%25")
        .replace('/', "%2F")
        .replace('@', "%40")
}

fn unescape(part: &str) -> String {
    part.replace("%2F", "/")
        .replace("%40", "@")
        .replace("%25", "%")
}

/// Where a new group starts.
enum Start {
    Beginning,
    End,
    /// A stream's revision: the group starts with the event at it.
    Revision(u64),
    /// A commit position: the group starts with the event at it.
    Commit(u64),
}

/// The settings both `Create` and `Update` carry, as eventfold's.
struct Tuning {
    max_retry_count: i32,
    message_timeout_ms: Option<i64>,
    max_checkpoint_count: i32,
}

impl Tuning {
    fn apply(&self, settings: &mut GroupSettings) {
        settings.retries_max = u32::try_from(self.max_retry_count).unwrap_or(0);
        if let Some(ms) = self.message_timeout_ms {
            let range = GroupSettings::ACK_TIMEOUT_MS_RANGE;
            let ms = u64::try_from(ms).unwrap_or(0);
            settings.ack_timeout_ms = ms.clamp(*range.start(), *range.end());
        }
        settings.checkpoint_every_events =
            u64::try_from(self.max_checkpoint_count.max(1)).unwrap_or(1);
    }
}

impl PersistentService {
    /// The `$all` position after which a group on `source` starting at `start` starts.
    async fn start_after(&self, source: &Source, start: Start) -> Result<Option<u64>, Status> {
        let store = &self.state.store;
        let head = || async {
            store
                .head_position()
                .await
                .map(|head| head.map(Position::get))
                .map_err(store_status)
        };
        match (start, source) {
            (Start::Beginning, _) | (Start::Revision(0), _) => Ok(None),
            (Start::End, _) => head().await,
            (Start::Commit(commit), _) => Ok(commit.checked_sub(2)),
            (Start::Revision(revision), Source::Stream(stream)) => {
                let before = store
                    .read_stream(
                        stream,
                        ReadStream::forward().from(Revision(revision - 1)).limit(1),
                    )
                    .await;
                match before {
                    Ok(events) if !events.is_empty() => Ok(Some(events[0].position.get())),
                    Ok(_) | Err(eventfold_core::Error::StreamNotFound { .. }) => head().await,
                    Err(error) => Err(store_status(error)),
                }
            }
            (Start::Revision(_), Source::All) => Ok(None),
        }
    }

    /// The settings of a new group on `source`.
    fn source_settings(source: &Source) -> GroupSettings {
        let mut settings = GroupSettings::default();
        if let Source::Stream(stream) = source {
            if let Some(category) = stream.strip_prefix("$ce-") {
                settings.category = Some(category.to_string());
            } else if let Some(event_type) = stream.strip_prefix("$et-") {
                settings.event_types = vec![event_type.to_string()];
            } else {
                settings.stream = Some(stream.clone());
            }
        }
        settings
    }
}

/// The server-side filter of a group on `$all`, as the group keeps it.
fn all_filter(filter: Option<create_req::all_options::FilterOption>) -> Option<EventFilter> {
    use create_req::all_options::FilterOption;
    use create_req::all_options::filter_options::Filter;
    let Some(FilterOption::Filter(filter)) = filter else {
        return None;
    };
    let (on, expression) = match filter.filter? {
        Filter::StreamIdentifier(expression) => (FilterOn::Stream, expression),
        Filter::EventType(expression) => (FilterOn::EventType, expression),
    };
    Some(EventFilter {
        on,
        prefixes: expression.prefix,
        regex: Some(expression.regex).filter(|r| !r.is_empty()),
    })
}

#[tonic::async_trait]
impl PersistentSubscriptions for PersistentService {
    type ReadStream = ReceiverStream<Result<ReadResp, Status>>;

    async fn create(&self, request: Request<CreateReq>) -> Result<Response<CreateResp>, Status> {
        self.authorize(request.metadata()).await?;
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| Status::invalid_argument("a create needs its options"))?;
        let given = options.settings.unwrap_or_default();
        use create_req::options::StreamOption;
        let (source, start, filter) = match options.stream_option {
            Some(StreamOption::Stream(stream)) => {
                use create_req::stream_options::RevisionOption as R;
                let start = match stream.revision_option {
                    Some(R::Revision(revision)) => Start::Revision(revision),
                    Some(R::End(_)) => Start::End,
                    Some(R::Start(_)) | None => Start::Beginning,
                };
                (
                    Source::of_stream(stream.stream_identifier.as_ref())?,
                    start,
                    None,
                )
            }
            Some(StreamOption::All(all)) => {
                use create_req::all_options::AllOption as A;
                let start = match all.all_option {
                    Some(A::Position(position)) => Start::Commit(position.commit_position),
                    Some(A::End(_)) => Start::End,
                    Some(A::Start(_)) | None => Start::Beginning,
                };
                (Source::All, start, all_filter(all.filter_option))
            }
            // The form of old clients: the stream beside the options, the start
            // revision in the settings.
            None => (
                Source::of_stream(options.stream_identifier.as_ref())?,
                Start::Revision(given.revision),
                None,
            ),
        };
        let name = source.group(&options.group_name)?;
        let mut settings = Self::source_settings(&source);
        settings.filter = filter;
        settings.start_after = self.start_after(&source, start).await?;
        Tuning {
            max_retry_count: given.max_retry_count,
            message_timeout_ms: message_timeout_ms!(
                given.message_timeout,
                create_req::settings::MessageTimeout
            ),
            max_checkpoint_count: given.max_checkpoint_count,
        }
        .apply(&mut settings);
        let store = &self.state.store;
        if group_settings(store.as_ref(), &name)
            .await
            .map_err(store_status)?
            .is_some()
        {
            return Err(Status::already_exists(format!(
                "the persistent subscription group '{}' on '{}' exists",
                options.group_name,
                source.name()
            )));
        }
        let group = PersistentGroup::create(store.clone(), &name, settings)
            .await
            .map_err(store_status)?;
        keep(&self.state, &name, Arc::new(group));
        tracing::info!(group = %name, "consumer group created (gRPC)");
        Ok(Response::new(CreateResp {}))
    }

    async fn update(&self, request: Request<UpdateReq>) -> Result<Response<UpdateResp>, Status> {
        self.authorize(request.metadata()).await?;
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| Status::invalid_argument("an update needs its options"))?;
        let given = options.settings.unwrap_or_default();
        use update_req::options::StreamOption;
        let (source, start) = match options.stream_option {
            Some(StreamOption::Stream(stream)) => {
                use update_req::stream_options::RevisionOption as R;
                let start = match stream.revision_option {
                    Some(R::Revision(revision)) => Some(Start::Revision(revision)),
                    Some(R::End(_)) => Some(Start::End),
                    Some(R::Start(_)) => Some(Start::Beginning),
                    None => None,
                };
                (Source::of_stream(stream.stream_identifier.as_ref())?, start)
            }
            Some(StreamOption::All(all)) => {
                use update_req::all_options::AllOption as A;
                let start = match all.all_option {
                    Some(A::Position(position)) => Some(Start::Commit(position.commit_position)),
                    Some(A::End(_)) => Some(Start::End),
                    Some(A::Start(_)) => Some(Start::Beginning),
                    None => None,
                };
                (Source::All, start)
            }
            None => (
                Source::of_stream(options.stream_identifier.as_ref())?,
                Some(Start::Revision(given.revision)),
            ),
        };
        let name = source.group(&options.group_name)?;
        let store = &self.state.store;
        let Some(mut settings) = group_settings(store.as_ref(), &name)
            .await
            .map_err(store_status)?
        else {
            return Err(not_found(&options.group_name, &source));
        };
        if let Some(start) = start {
            // Where a group starts matters only until its first checkpoint.
            settings.start_after = self.start_after(&source, start).await?;
        }
        Tuning {
            max_retry_count: given.max_retry_count,
            message_timeout_ms: message_timeout_ms!(
                given.message_timeout,
                update_req::settings::MessageTimeout
            ),
            max_checkpoint_count: given.max_checkpoint_count,
        }
        .apply(&mut settings);
        update_group(store.as_ref(), &name, settings)
            .await
            .map_err(store_status)?;
        self.retire(&name);
        tracing::info!(group = %name, "consumer group updated (gRPC)");
        Ok(Response::new(UpdateResp {}))
    }

    async fn delete(&self, request: Request<DeleteReq>) -> Result<Response<DeleteResp>, Status> {
        self.authorize(request.metadata()).await?;
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| Status::invalid_argument("a delete needs its options"))?;
        let source = source_of!(options.stream_option, delete_req::options::StreamOption)
            .ok_or_else(|| Status::invalid_argument("a delete names a stream or $all"))?;
        let name = source.group(&options.group_name)?;
        match delete_group(self.state.store.as_ref(), &name).await {
            Ok(()) => {}
            Err(eventfold_core::Error::StreamNotFound { .. }) => {
                return Err(not_found(&options.group_name, &source));
            }
            Err(error) => return Err(store_status(error)),
        }
        self.retire(&name);
        tracing::info!(group = %name, "consumer group deleted (gRPC)");
        Ok(Response::new(DeleteResp {}))
    }

    async fn read(
        &self,
        request: Request<Streaming<ReadReq>>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        self.authorize(request.metadata()).await?;
        let mut requests = request.into_inner();
        let Some(ReadReq {
            content: Some(read_req::Content::Options(options)),
        }) = requests.message().await?
        else {
            return Err(Status::invalid_argument(
                "a persistent subscription starts with its options",
            ));
        };
        let source = source_of!(options.stream_option, read_req::options::StreamOption)
            .ok_or_else(|| Status::invalid_argument("a read names a stream or $all"))?;
        let (name, group) = self.existing(&source, &options.group_name).await?;
        let structured_ids = matches!(
            options.uuid_option.and_then(|o| o.content),
            Some(read_req::options::uuid_option::Content::Structured(_))
        );
        let buffer = usize::try_from(options.buffer_size)
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or(BUFFER_SIZE_DEFAULT);
        let (sender, answers) = mpsc::channel(READ_BUFFER);
        let consumer = Consumer {
            state: self.state.clone(),
            // KurrentDB's form, which its clients check against what they asked for.
            subscription_id: format!("{}::{}", source.name(), options.group_name),
            name,
            group,
            buffer,
            structured_ids,
            in_flight: HashMap::new(),
            sender,
            changes: self.changes.subscribe(),
        };
        tokio::spawn(consumer.run(requests));
        Ok(Response::new(ReceiverStream::new(answers)))
    }

    async fn get_info(
        &self,
        request: Request<GetInfoReq>,
    ) -> Result<Response<GetInfoResp>, Status> {
        self.authorize(request.metadata()).await?;
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| Status::invalid_argument("an info request needs its options"))?;
        let source = source_of!(options.stream_option, get_info_req::options::StreamOption)
            .unwrap_or(Source::All);
        let (_, group) = self.existing(&source, &options.group_name).await?;
        Ok(Response::new(GetInfoResp {
            subscription_info: Some(info(&self.state, &options.group_name, &source, &group).await?),
        }))
    }

    async fn replay_parked(
        &self,
        request: Request<ReplayParkedReq>,
    ) -> Result<Response<ReplayParkedResp>, Status> {
        self.authorize(request.metadata()).await?;
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| Status::invalid_argument("a replay needs its options"))?;
        let source = source_of!(
            options.stream_option,
            replay_parked_req::options::StreamOption
        )
        .unwrap_or(Source::All);
        let (_, group) = self.existing(&source, &options.group_name).await?;
        let mut positions: Vec<u64> = group
            .parked()
            .await
            .map_err(store_status)?
            .iter()
            .map(|p| p.position)
            .collect();
        if let Some(replay_parked_req::options::StopAtOption::StopAt(stop_at)) =
            options.stop_at_option
        {
            positions.truncate(usize::try_from(stop_at.max(0)).unwrap_or(usize::MAX));
        }
        group
            .replay_parked(&positions)
            .await
            .map_err(store_status)?;
        Ok(Response::new(ReplayParkedResp {}))
    }

    async fn list(&self, request: Request<ListReq>) -> Result<Response<ListResp>, Status> {
        self.authorize(request.metadata()).await?;
        let options = request.into_inner().options;
        let wanted = match options.and_then(|o| o.list_option) {
            Some(list_req::options::ListOption::ListForStream(option)) => {
                match option.stream_option {
                    Some(list_req::stream_option::StreamOption::Stream(stream)) => {
                        Some(Source::of_stream(Some(&stream))?)
                    }
                    Some(list_req::stream_option::StreamOption::All(_)) | None => Some(Source::All),
                }
            }
            Some(list_req::options::ListOption::ListAllSubscriptions(_)) | None => None,
        };
        let names = list_groups(self.state.store.as_ref())
            .await
            .map_err(store_status)?;
        let mut subscriptions = Vec::new();
        for name in names {
            let Some((group_name, source)) = kurrentdb_group(&name) else {
                continue;
            };
            if wanted.as_ref().is_some_and(|w| *w != source) {
                continue;
            }
            if let Some(group) = open_group(&self.state, &name).await.map_err(status)? {
                subscriptions.push(info(&self.state, &group_name, &source, &group).await?);
            }
        }
        if subscriptions.is_empty() && wanted.is_some() {
            // KurrentDB answers a stream without groups as not found.
            return Err(Status::not_found(
                "no persistent subscription group on this stream",
            ));
        }
        Ok(Response::new(ListResp { subscriptions }))
    }
}

fn not_found(group: &str, source: &Source) -> Status {
    Status::not_found(format!(
        "no persistent subscription group '{group}' on '{}'",
        source.name()
    ))
}

/// The place of the event at `$all` position `position` as KurrentDB's clients read
/// it in a group's info: `C:<commit>/P:<prepare>` on `$all`, a revision on a stream.
/// `next` asks for the place after it (where a group starts), else its own.
async fn place(
    state: &AppState,
    source: &Source,
    position: Option<u64>,
    next: bool,
) -> Result<String, Status> {
    let step = u64::from(next);
    let Some(position) = position else {
        return Ok(match (source, next) {
            (Source::All, true) => "C:0/P:0".to_string(),
            (Source::Stream(_), true) => "0".to_string(),
            (_, false) => String::new(),
        });
    };
    let Source::Stream(stream) = source else {
        let commit = wire_position(Position(position)) + step;
        return Ok(format!("C:{commit}/P:{commit}"));
    };
    let slice = state
        .store
        .read_all(eventfold_core::ReadAll::from(Position(position), 1))
        .await
        .map_err(store_status)?;
    Ok(match slice.events.first() {
        Some(event) if event.stream == *stream && event.position.get() == position => {
            (event.revision.get() + step).to_string()
        }
        // The group started at the end of the log, before its stream's next event.
        _ if next => "-1".to_string(),
        _ => String::new(),
    })
}

/// What KurrentDB's clients read of a group.
async fn info(
    state: &AppState,
    group_name: &str,
    source: &Source,
    group: &Group,
) -> Result<SubscriptionInfo, Status> {
    let status = group.status();
    let settings = group.settings();
    let parked = group.parked().await.map_err(store_status)?.len();
    let narrow = |n: u64| i32::try_from(n).unwrap_or(i32::MAX);
    Ok(SubscriptionInfo {
        event_source: source.name().to_string(),
        group_name: group_name.to_string(),
        status: "Live".to_string(),
        last_checkpointed_event_position: place(state, source, status.checkpoint, false).await?,
        start_from: place(state, source, settings.start_after, true).await?,
        message_timeout_milliseconds: narrow(settings.ack_timeout_ms),
        max_retry_count: narrow(u64::from(settings.retries_max)),
        max_check_point_count: narrow(settings.checkpoint_every_events),
        min_check_point_count: 1,
        buffer_size: narrow(settings.in_flight_max as u64),
        live_buffer_size: narrow(settings.in_flight_max as u64),
        read_batch_size: 512,
        total_in_flight_messages: narrow(status.in_flight as u64),
        retry_buffer_count: narrow(status.retrying as u64),
        outstanding_messages_count: narrow((status.in_flight + status.retrying) as u64),
        named_consumer_strategy: "RoundRobin".to_string(),
        parked_message_count: i64::try_from(parked).unwrap_or(i64::MAX),
        ..SubscriptionInfo::default()
    })
}

/// One consumer's call: deliveries out, acks and nacks in.
struct Consumer {
    state: Arc<AppState>,
    subscription_id: String,
    name: String,
    group: Group,
    buffer: usize,
    structured_ids: bool,
    /// This call's deliveries not yet answered, by event id.
    in_flight: HashMap<Uuid, u64>,
    sender: mpsc::Sender<Result<ReadResp, Status>>,
    changes: watch::Receiver<u64>,
}

impl Consumer {
    async fn run(mut self, mut requests: Streaming<ReadReq>) {
        let confirmation =
            read_resp::Content::SubscriptionConfirmation(read_resp::SubscriptionConfirmation {
                subscription_id: self.subscription_id.clone(),
            });
        if !self.send(confirmation).await {
            return;
        }
        let mut closing = self.state.closing.subscribe();
        let ended = loop {
            let room = self.in_flight.len() < self.buffer;
            let group = self.group.clone();
            tokio::select! {
                message = requests.message() => match message {
                    Ok(Some(message)) => {
                        if let Err(status) = self.answer(message).await {
                            break Some(status);
                        }
                    }
                    Ok(None) | Err(_) => break None,
                },
                delivery = group.next(), if room => match delivery {
                    Ok(delivery) => {
                        let event = wire_event(&delivery.event, self.structured_ids);
                        self.in_flight.insert(delivery.event.id, delivery.event.position.get());
                        let content = read_resp::Content::Event(read_resp::ReadEvent {
                            event: Some(event),
                            link: None,
                            position: Some(read_resp::read_event::Position::CommitPosition(
                                wire_position(delivery.event.position),
                            )),
                            count: Some(read_resp::read_event::Count::RetryCount(
                                i32::try_from(delivery.attempt.saturating_sub(1)).unwrap_or(i32::MAX),
                            )),
                        });
                        if !self.send(content).await {
                            break None;
                        }
                    }
                    Err(error) => break Some(store_status(error)),
                },
                _ = self.changes.changed() => {
                    let current = lock(&self.state).get(&self.name).cloned();
                    if !current.is_some_and(|g| Arc::ptr_eq(&g, &self.group)) {
                        break Some(Status::aborted(
                            "the persistent subscription group was updated or deleted; \
                             subscribe again",
                        ));
                    }
                }
                () = async { let _ = closing.wait_for(|closing| *closing).await; } => {
                    break Some(Status::unavailable("the server is shutting down"));
                }
            }
        };
        // What this consumer took and did not answer goes to the others now, not
        // after its ack timeout.
        for (_, position) in self.in_flight.drain() {
            let _ = self
                .group
                .nack(position, Nack::Retry, "the consumer went away")
                .await;
        }
        if let Some(status) = ended {
            let _ = self.sender.send(Err(status)).await;
        }
    }

    async fn send(&self, content: read_resp::Content) -> bool {
        self.sender
            .send(Ok(ReadResp {
                content: Some(content),
            }))
            .await
            .is_ok()
    }

    /// Takes an ack or a nack. Ids this call does not hold (answered already, or
    /// delivered again to another consumer after a late ack) are passed over.
    async fn answer(&mut self, message: ReadReq) -> Result<(), Status> {
        let (ids, action, reason) = match message.content {
            Some(read_req::Content::Ack(ack)) => (ack.ids, None, String::new()),
            Some(read_req::Content::Nack(nack)) => {
                use read_req::nack::Action;
                let action = match Action::try_from(nack.action).unwrap_or(Action::Unknown) {
                    Action::Park => Nack::Park,
                    Action::Skip => Nack::Skip,
                    Action::Retry | Action::Unknown | Action::Stop => Nack::Retry,
                };
                (nack.ids, Some(action), nack.reason)
            }
            _ => {
                return Err(Status::invalid_argument(
                    "a consumer sends its options once",
                ));
            }
        };
        for id in ids {
            let Some(id) = super::events::uuid_of(&id).ok() else {
                continue;
            };
            let Some(position) = self.in_flight.remove(&id) else {
                continue;
            };
            let answered = match action {
                None => self.group.ack(position).await,
                Some(action) => self.group.nack(position, action, &reason).await,
            };
            match answered {
                // Answered after its ack timeout and delivered again: no longer ours.
                Ok(()) | Err(eventfold_core::Error::InvalidEvent { .. }) => {}
                Err(error) => return Err(store_status(error)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_carry_the_stream_and_come_back() {
        for source in [
            Source::All,
            Source::Stream("order-1".into()),
            Source::Stream("a/b@c%2F".into()),
        ] {
            for group in ["mailer", "m@il/er%40"] {
                let name = source.group(group).unwrap();
                assert!(!name.contains('/'), "{name}");
                assert_eq!(
                    kurrentdb_group(&name),
                    Some((group.to_string(), source.clone()))
                );
            }
            let name = source.group("mailer").unwrap();
            assert!(!name.contains('/'), "{name}");
            assert_eq!(kurrentdb_group(&name), Some(("mailer".to_string(), source)));
        }
        assert!(Source::All.group("").is_err());
    }

    #[test]
    fn index_streams_become_categories_and_event_types() {
        let category = PersistentService::source_settings(&Source::Stream("$ce-order".into()));
        assert_eq!(category.category.as_deref(), Some("order"));
        let typed = PersistentService::source_settings(&Source::Stream("$et-Placed".into()));
        assert_eq!(typed.event_types, ["Placed"]);
        let one = PersistentService::source_settings(&Source::Stream("order-1".into()));
        assert_eq!(one.stream.as_deref(), Some("order-1"));
    }

    #[test]
    fn filters_of_groups_on_all_are_kept_as_sent() {
        use create_req::all_options::FilterOption;
        use create_req::all_options::filter_options::{Expression, Filter};
        let filter = |filter: Filter| {
            all_filter(Some(FilterOption::Filter(
                create_req::all_options::FilterOptions {
                    filter: Some(filter),
                    window: None,
                    checkpoint_interval_multiplier: 1,
                },
            )))
        };
        let prefix = Expression {
            regex: String::new(),
            prefix: vec!["order-".into()],
        };
        let kept = filter(Filter::StreamIdentifier(prefix)).unwrap();
        assert_eq!(
            (kept.on, kept.prefixes.as_slice(), kept.regex),
            (FilterOn::Stream, &["order-".to_string()][..], None)
        );
        let regex = Expression {
            regex: "^Paid$".into(),
            prefix: vec![],
        };
        let kept = filter(Filter::EventType(regex)).unwrap();
        assert_eq!(
            (kept.on, kept.regex.as_deref()),
            (FilterOn::EventType, Some("^Paid$"))
        );
        assert_eq!(all_filter(None), None);
    }
}
