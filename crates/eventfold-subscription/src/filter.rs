//! Filters of events by stream name or event type, by prefixes or a regular
//! expression: what consumer groups keep in their settings, and what the gRPC reads
//! and subscriptions of `$all` apply.

use serde::{Deserialize, Serialize};

use eventfold_core::{Error, Result};

/// What a filter looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterOn {
    /// The event's stream name.
    Stream,
    /// The event's type.
    EventType,
}

/// Events whose stream name (or type) starts with one of `prefixes` or matches
/// `regex`; with neither, every event. The regular expression may use look-around
/// and back-references (KurrentDB's clients send `^(?!(\$.+$))` to leave system
/// events out), and matches when it is found anywhere in the text, unless anchored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventFilter {
    /// What is matched.
    pub on: FilterOn,
    /// Prefixes, any of which lets an event through.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<String>,
    /// A regular expression that lets an event through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

impl EventFilter {
    /// The filter ready to match, or `InvalidSetting` naming why its regular
    /// expression cannot be used.
    ///
    /// ```
    /// use eventfold_subscription::{EventFilter, FilterOn};
    /// let user_events = EventFilter {
    ///     on: FilterOn::EventType,
    ///     prefixes: vec![],
    ///     regex: Some(r"^(?!(\$.+$))".into()),
    /// };
    /// let matcher = user_events.compile().unwrap();
    /// assert!(matcher.matches("order-1", "OrderPlaced"));
    /// assert!(!matcher.matches("order-1", "$metadata"));
    /// ```
    pub fn compile(&self) -> Result<CompiledFilter> {
        let regex = self
            .regex
            .as_deref()
            .filter(|r| !r.is_empty())
            .map(|r| {
                fancy_regex::Regex::new(r).map_err(|e| Error::InvalidSetting {
                    setting: "filter.regex".into(),
                    reason: format!("the regular expression does not compile: {e}"),
                })
            })
            .transpose()?;
        Ok(CompiledFilter {
            on: self.on,
            prefixes: self.prefixes.clone(),
            regex,
        })
    }
}

/// An [`EventFilter`] whose regular expression is compiled.
#[derive(Debug, Clone)]
pub struct CompiledFilter {
    on: FilterOn,
    prefixes: Vec<String>,
    regex: Option<fancy_regex::Regex>,
}

impl CompiledFilter {
    /// Whether an event of `stream` and `event_type` passes.
    pub fn matches(&self, stream: &str, event_type: &str) -> bool {
        let text = match self.on {
            FilterOn::Stream => stream,
            FilterOn::EventType => event_type,
        };
        if self.prefixes.is_empty() && self.regex.is_none() {
            return true;
        }
        self.prefixes.iter().any(|p| text.starts_with(p.as_str()))
            || self
                .regex
                .as_ref()
                // A match that gives up (too much backtracking) lets nothing through.
                .is_some_and(|r| r.is_match(text).unwrap_or(false))
    }

    /// The one stream prefix the filter reduces to, if it is one: a store can read
    /// just those streams.
    pub fn stream_prefix(&self) -> Option<&str> {
        match (self.on, self.prefixes.as_slice(), &self.regex) {
            (FilterOn::Stream, [prefix], None) => Some(prefix),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(on: FilterOn, prefixes: &[&str], regex: Option<&str>) -> CompiledFilter {
        EventFilter {
            on,
            prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            regex: regex.map(str::to_string),
        }
        .compile()
        .unwrap()
    }

    #[test]
    fn prefixes_or_a_regex_let_events_through() {
        let orders = filter(FilterOn::Stream, &["order-", "cart-"], None);
        assert!(orders.matches("order-1", "X") && orders.matches("cart-2", "X"));
        assert!(!orders.matches("user-1", "order-"));
        assert_eq!(orders.stream_prefix(), None);
        assert_eq!(
            filter(FilterOn::Stream, &["order-"], None).stream_prefix(),
            Some("order-")
        );

        let placed = filter(FilterOn::EventType, &[], Some("^(Placed|Paid)$"));
        assert!(placed.matches("s", "Paid") && !placed.matches("s", "Paid2"));
        let no_system = filter(
            FilterOn::EventType,
            &[],
            Some(r"^(?!(\$.+$|PersistentConfig\d+$|Result$))"),
        );
        assert!(no_system.matches("s", "Placed") && !no_system.matches("s", "$metadata"));
        assert!(filter(FilterOn::Stream, &[], None).matches("any", "thing"));
    }

    #[test]
    fn a_regex_that_does_not_compile_is_named() {
        let broken = EventFilter {
            on: FilterOn::Stream,
            prefixes: vec![],
            regex: Some("(".into()),
        };
        let error = broken.compile().unwrap_err();
        assert!(error.to_string().contains("filter.regex"), "{error}");
    }
}
