//! Names of the streams the framework keeps in the store. They start with `_`, which
//! applications leave to the framework; to the store they are ordinary streams, so
//! every backend keeps them.

use uuid::Uuid;

/// The prefix of every framework stream.
pub const PREFIX: &str = "_";

/// The category of the command streams; its default retention is the window within
/// which a command sent again gets its first answer.
pub const COMMAND_CATEGORY: &str = "_command";

/// Where the outcome of command `id` is recorded.
///
/// ```
/// let id = uuid::Uuid::nil();
/// assert_eq!(eventfold::streams::command(id), "_command-00000000-0000-0000-0000-000000000000");
/// ```
pub fn command(id: Uuid) -> String {
    format!("{PREFIX}command-{id}")
}

/// Where aggregate `aggregate`'s snapshots over `streams` are kept (the streams joined
/// with `+`).
///
/// ```
/// assert_eq!(eventfold::streams::snapshot("account", &["account-1"]), "_snapshot-account-account-1");
/// ```
pub fn snapshot(aggregate: &str, streams: &[&str]) -> String {
    format!("{PREFIX}snapshot-{aggregate}-{}", streams.join("+"))
}

/// Where the instance of process manager `name` for `correlation_id` records what it saw.
///
/// ```
/// let id = uuid::Uuid::nil();
/// assert!(eventfold::streams::process("shipping", id).starts_with("_process-shipping-"));
/// ```
pub fn process(name: &str, correlation_id: Uuid) -> String {
    format!("{PREFIX}process-{name}-{correlation_id}")
}

/// Where process manager `name`'s timeouts are scheduled.
///
/// ```
/// assert_eq!(eventfold::streams::timeouts("shipping"), "_timeouts-shipping");
/// ```
pub fn timeouts(name: &str) -> String {
    format!("{PREFIX}timeouts-{name}")
}

/// Where process manager `name` notes which instances have outputs to publish (its
/// outbox: read by a restarted runner).
///
/// ```
/// assert_eq!(eventfold::streams::outbox("shipping"), "_outbox-shipping");
/// ```
pub fn outbox(name: &str) -> String {
    format!("{PREFIX}outbox-{name}")
}

/// Where projection group `group` keeps its effect ledger: the effects it finished,
/// which outlive its read-model database.
///
/// ```
/// assert_eq!(eventfold::streams::effects("orders"), "_effects-orders");
/// ```
pub fn effects(group: &str) -> String {
    format!("{EFFECTS_PREFIX}{group}")
}

/// Whether `stream` is a projection group's effect ledger. Projections never see its
/// events: they are bookkeeping, and a projection that reacted to them with effects
/// would feed itself for ever.
///
/// ```
/// assert!(eventfold::streams::is_effect_ledger("_effects-orders"));
/// assert!(!eventfold::streams::is_effect_ledger("effects-orders"));
/// ```
pub fn is_effect_ledger(stream: &str) -> bool {
    stream.starts_with(EFFECTS_PREFIX)
}

const EFFECTS_PREFIX: &str = "_effects-";

/// Whether `stream` is one of the framework's.
///
/// ```
/// assert!(eventfold::streams::is_framework("_command-1"));
/// assert!(!eventfold::streams::is_framework("order-1"));
/// ```
pub fn is_framework(stream: &str) -> bool {
    stream.starts_with(PREFIX)
}
