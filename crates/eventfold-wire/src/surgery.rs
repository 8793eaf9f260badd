//! Stream surgery as it crosses the wire: `POST /admin/surgery` takes a
//! [`SurgeryRequest`] and answers a [`SurgeryOutcome`]. The same types are the
//! library's (`eventfold-surgery` performs them), so the CLI on a data directory and a
//! server agree on every field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One surgery, tagged by `"operation"` (`copy-replace`, `split`, `join`, `flip`).
///
/// ```
/// use eventfold_wire::SurgeryOperation;
/// let op: SurgeryOperation = serde_json::from_str(
///     r#"{"operation": "copy-replace", "source": "cart-1", "to": "cart-2", "skip": [3]}"#,
/// ).unwrap();
/// assert_eq!(op.name(), "copy-replace");
/// assert_eq!(op.sources(), ["cart-1"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operation", rename_all = "kebab-case")]
pub enum SurgeryOperation {
    /// Copies `source` into the new stream `to`, without the revisions of `skip`, each
    /// event through `transform` (a jq program) when given.
    CopyReplace {
        /// The stream to replace.
        source: String,
        /// The new stream.
        to: String,
        /// Revisions of `source` left out.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        skip: Vec<u64>,
        /// A jq program from an event (`{"stream", "revision", "type", "version",
        /// "data", "metadata"}`) to the events it becomes (`{"type", "data",
        /// "metadata"?, "version"?}` each; none: the event is dropped).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transform: Option<String>,
        /// Rewrite `source` under its own name (`to` is `source`): the copies are
        /// appended to it and its metadata's `truncate_before` hides the originals,
        /// in one atomic append.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        in_place: bool,
    },
    /// Splits `source` into new streams: each event goes to the one of `into` whose jq
    /// filter (on the same event object as a transform) outputs `true`.
    Split {
        /// The stream to split.
        source: String,
        /// The new streams and their filters, in order.
        into: Vec<SplitTarget>,
        /// Write links (`$link` events) to the source's events instead of copies:
        /// the events stay where they are, and reads of the new streams return them.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        link: bool,
    },
    /// Joins `sources` into the new stream `into`, in the order of `$all`.
    Join {
        /// The streams to join.
        sources: Vec<String>,
        /// The new stream.
        into: String,
        /// Write links (`$link` events) to the sources' events instead of copies.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        link: bool,
    },
    /// Makes the whole store read-only (the Big Flip of a store copied into `to`):
    /// every append is refused with `read_only` from then on, and a transform that
    /// follows this store copies up to the flip and writes the marker that proves the
    /// new store caught up. With `undo`, makes a flipped store writable again.
    Flip {
        /// Where the traffic goes: the new store, as the refusal names it (a data
        /// directory, a server, a database; no credentials).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        /// Makes a read-only store writable again.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        undo: bool,
    },
}

/// One new stream of a split and the jq filter of the events it takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitTarget {
    /// The new stream.
    pub stream: String,
    /// A jq filter that outputs `true` for the events this stream takes.
    pub filter: String,
}

impl SurgeryOperation {
    /// The operation's name, as the CLI and the audit record spell it.
    pub fn name(&self) -> &'static str {
        match self {
            SurgeryOperation::CopyReplace { .. } => "copy-replace",
            SurgeryOperation::Split { .. } => "split",
            SurgeryOperation::Join { .. } => "join",
            SurgeryOperation::Flip { .. } => "flip",
        }
    }

    /// The operation's arguments, as the audit record keeps them (its fields without
    /// the `operation` tag).
    pub fn arguments(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            map.remove("operation");
        }
        value
    }

    /// The streams it reads and closes.
    pub fn sources(&self) -> Vec<&str> {
        match self {
            SurgeryOperation::CopyReplace { source, .. }
            | SurgeryOperation::Split { source, .. } => vec![source.as_str()],
            SurgeryOperation::Join { sources, .. } => sources.iter().map(String::as_str).collect(),
            SurgeryOperation::Flip { .. } => Vec::new(),
        }
    }

    /// Whether it writes links to the sources' events instead of copies.
    pub fn links(&self) -> bool {
        matches!(
            self,
            SurgeryOperation::Split { link: true, .. } | SurgeryOperation::Join { link: true, .. }
        )
    }

    /// The streams it writes (new ones, or the source itself in place).
    pub fn targets(&self) -> Vec<&str> {
        match self {
            SurgeryOperation::CopyReplace { to, .. } => vec![to.as_str()],
            SurgeryOperation::Split { into, .. } => {
                into.iter().map(|t| t.stream.as_str()).collect()
            }
            SurgeryOperation::Join { into, .. } => vec![into.as_str()],
            SurgeryOperation::Flip { .. } => Vec::new(),
        }
    }
}

/// `POST /admin/surgery`: an operation, why, and whether only to check it. The server
/// records the authenticated user as who performed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SurgeryRequest {
    /// The operation and its arguments.
    #[serde(flatten)]
    pub operation: SurgeryOperation,
    /// Why (required): kept in the audit record.
    pub reason: String,
    /// Check everything and say what would change; write nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// What a surgery changed (or, in a dry run, would change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurgeryOutcome {
    /// The operation's name.
    pub operation: String,
    /// Whether nothing was written.
    pub dry_run: bool,
    /// Events per new stream (in a dry run: that would be written).
    pub targets: BTreeMap<String, u64>,
    /// Each source and the stream its move marker names (none in place).
    pub moved: BTreeMap<String, String>,
    /// Events of the sources left out (skipped, or dropped by the transform).
    pub dropped: u64,
    /// Events of the sources read.
    pub read: u64,
    /// Copies found already written by an earlier, interrupted run of the same surgery.
    pub resumed: u64,
    /// The global position of the audit record (`None` in a dry run).
    pub audit_position: Option<u64>,
}
