//! Typed upcasting for Rust consumers: each stored version decodes into its own Rust
//! type, and Rust functions carry it forward, version by version, to the newest type.
//! No JSON tree is built, so a chain costs little more than decoding the old version
//! (`eventfold bench upcast` measures it).

use std::any::type_name;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use eventfold_core::RecordedEvent;
use serde::de::DeserializeOwned;

use crate::error::{Result, SchemaError};
use crate::weak;

/// Carries a value of one version to the newest type, pushing what it becomes.
type Forward<From, T> = Arc<dyn Fn(From, &mut Vec<T>) + Send + Sync>;
/// Decodes the bytes of one stored version and carries it forward.
type Step<T> = Arc<dyn Fn(&str, u32, &[u8], &mut Vec<T>) -> Result<()> + Send + Sync>;

/// Decodes every stored version of one event type into the newest Rust type `T`.
///
/// Built from the newest version backwards: `.before(f)` adds the version just older
/// than the oldest known so far, with `f` converting it into that one. Chains compose
/// (v1 is decoded as `V1`, then converted to `V2`, `V3`, ...); `.before_split` lets one
/// old event become zero (a drop) or several events.
///
/// ```
/// use eventfold_schema::TypedDecoder;
/// #[derive(serde::Deserialize)]
/// struct V1 { id: String }
/// #[derive(serde::Deserialize, Debug, PartialEq)]
/// #[serde(rename_all = "camelCase")]
/// struct V2 { item_id: String, #[serde(default)] reason: String }
///
/// let decoder = TypedDecoder::<V2>::newest("InventoryItemDeactivated", 2)
///     .before(|v1: V1| V2 { item_id: v1.id, reason: "not recorded".into() });
/// let old = decoder.decode_bytes(1, br#"{"id":"a"}"#).unwrap();
/// assert_eq!(old, vec![V2 { item_id: "a".into(), reason: "not recorded".into() }]);
/// let new = decoder.decode_bytes(2, br#"{"itemId":"b","reason":"recall"}"#).unwrap();
/// assert_eq!(new[0].reason, "recall");
/// assert!(decoder.decode_bytes(3, b"{}").is_err());
/// ```
pub struct TypedDecoder<T, Oldest = T> {
    event_type: String,
    newest: u32,
    oldest: u32,
    steps: BTreeMap<u32, Step<T>>,
    /// Carries a value of the oldest version known so far to `T`.
    forward: Forward<Oldest, T>,
    _oldest: PhantomData<fn(Oldest)>,
}

impl<T: DeserializeOwned + Send + Sync + 'static> TypedDecoder<T, T> {
    /// A decoder whose newest version `newest` decodes straight into `T`.
    pub fn newest(event_type: impl Into<String>, newest: u32) -> Self {
        let mut steps: BTreeMap<u32, Step<T>> = BTreeMap::new();
        steps.insert(
            newest,
            Arc::new(|event_type, version, data, out| {
                out.push(weak::decode_slice(event_type, version, data)?);
                Ok(())
            }),
        );
        TypedDecoder {
            event_type: event_type.into(),
            newest,
            oldest: newest,
            steps,
            forward: Arc::new(|value, out| out.push(value)),
            _oldest: PhantomData,
        }
    }
}

impl<T: Send + Sync + 'static, Oldest: 'static> TypedDecoder<T, Oldest> {
    /// Adds the version before the oldest known so far: stored data of that version
    /// decodes as `P`, and `upcast` turns it into the next version.
    pub fn before<P: DeserializeOwned + 'static>(
        self,
        upcast: impl Fn(P) -> Oldest + Send + Sync + 'static,
    ) -> TypedDecoder<T, P> {
        let forward = self.forward.clone();
        self.chain(move |previous: P, out: &mut Vec<T>| forward(upcast(previous), out))
    }

    /// Adds the version before the oldest known so far, where one stored event may
    /// become several events of the next version, or none (a drop).
    pub fn before_split<P: DeserializeOwned + 'static>(
        self,
        upcast: impl Fn(P) -> Vec<Oldest> + Send + Sync + 'static,
    ) -> TypedDecoder<T, P> {
        let forward = self.forward.clone();
        self.chain(move |previous: P, out: &mut Vec<T>| {
            for next in upcast(previous) {
                forward(next, out);
            }
        })
    }

    fn chain<P: DeserializeOwned + 'static>(
        mut self,
        carry: impl Fn(P, &mut Vec<T>) + Send + Sync + 'static,
    ) -> TypedDecoder<T, P> {
        let version = self.oldest.saturating_sub(1);
        let carry = Arc::new(carry);
        let step_carry = carry.clone();
        self.steps.insert(
            version,
            Arc::new(move |event_type, version, data, out| {
                let previous: P = weak::decode_slice(event_type, version, data)?;
                step_carry(previous, out);
                Ok(())
            }),
        );
        TypedDecoder {
            event_type: self.event_type,
            newest: self.newest,
            oldest: version,
            steps: self.steps,
            forward: Arc::new(move |value, out| carry(value, out)),
            _oldest: PhantomData,
        }
    }

    /// The event type decoded.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// Decodes the data of a stored event of `version`.
    pub fn decode_bytes(&self, version: u32, data: &[u8]) -> Result<Vec<T>> {
        let step = self
            .steps
            .get(&version)
            .ok_or_else(|| SchemaError::NoConversionPath {
                event_type: self.event_type.clone(),
                from: version,
                to: format!(
                    "{} (v{} to v{} are known to this program)",
                    type_name::<T>(),
                    self.oldest,
                    self.newest
                ),
            })?;
        let mut out = Vec::with_capacity(1);
        step(&self.event_type, version, data, &mut out)?;
        Ok(out)
    }

    /// Decodes a stored event into the newest type.
    pub fn decode(&self, event: &RecordedEvent) -> Result<Vec<T>> {
        self.decode_bytes(event.version, &event.data)
    }
}
