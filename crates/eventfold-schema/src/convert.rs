//! Where conversion goes: the [`Target`] a reader asks for, and what comes out.

use std::collections::BTreeMap;

use serde_json::Value;

/// The versions a reader wants events in.
///
/// ```
/// use eventfold_schema::Target;
/// // An old consumer that understands only v1 of one type, and the newest of the rest.
/// let old = Target::versions([("InventoryItemDeactivated", 1)]);
/// assert_eq!(old.wanted("InventoryItemDeactivated"), Some(1));
/// assert_eq!(old.wanted("OrderPlaced"), None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Target {
    /// The newest registered version of every type, following renames (what a
    /// framework consumer reads by default).
    #[default]
    Newest,
    /// Every event as stored.
    Stored,
    /// The declared version of each listed type, reached by upcasting or
    /// downcasting; types not listed are read at their newest version.
    Versions(BTreeMap<String, u32>),
}

impl Target {
    /// The declared versions, one per type.
    pub fn versions<S: Into<String>>(versions: impl IntoIterator<Item = (S, u32)>) -> Self {
        Target::Versions(
            versions
                .into_iter()
                .map(|(event_type, version)| (event_type.into(), version))
                .collect(),
        )
    }

    /// One type at one version (the `Accept` header of one event's read).
    pub fn version(event_type: impl Into<String>, version: u32) -> Self {
        Self::versions([(event_type.into(), version)])
    }

    /// The version declared for `event_type`, if any.
    pub fn wanted(&self, event_type: &str) -> Option<u32> {
        match self {
            Target::Versions(versions) => versions.get(event_type).copied(),
            _ => None,
        }
    }

    /// Parses the `versions` parameter of the HTTP API: `Type:N,Other:M`, or `newest`,
    /// or `stored`.
    ///
    /// ```
    /// use eventfold_schema::Target;
    /// assert_eq!(Target::parse("A:1,B:3").unwrap(), Target::versions([("A", 1), ("B", 3)]));
    /// assert_eq!(Target::parse("newest").unwrap(), Target::Newest);
    /// assert!(Target::parse("A:x").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "newest" => return Ok(Target::Newest),
            "stored" | "" => return Ok(Target::Stored),
            _ => {}
        }
        let mut versions = BTreeMap::new();
        for part in text.split(',') {
            let (event_type, version) = part
                .trim()
                .rsplit_once(':')
                .ok_or_else(|| format!("'{part}' is not Type:version"))?;
            let version: u32 = version
                .parse()
                .ok()
                .filter(|v| *v >= 1)
                .ok_or_else(|| format!("'{version}' in '{part}' is not a version from 1"))?;
            if event_type.is_empty() {
                return Err(format!("'{part}' names no event type"));
            }
            versions.insert(event_type.to_string(), version);
        }
        Ok(Target::Versions(versions))
    }
}

/// One event out of a conversion.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    /// Its type (another one after a rename).
    pub event_type: String,
    /// Its schema version.
    pub version: u32,
    /// Its data.
    pub data: Value,
}
