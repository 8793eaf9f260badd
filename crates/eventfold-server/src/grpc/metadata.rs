//! Stream metadata in KurrentDB's form. Both stores keep a stream's metadata as
//! `$metadata` events of `$$<stream>`; KurrentDB's clients write and read that stream
//! with the JSON keys `$maxCount`, `$maxAge`, `$tb`, `$acl` (`$r`, `$w`, `$d`, `$mr`,
//! `$mw`) and keys of their own, which are eventfold's `max_count`, `max_age`,
//! `truncate_before`, `acl` (`read`, `write`, `delete`, `metadata`) and `custom`.

use eventfold_core::{RecordedEvent, Revision};
use eventfold_metadata::{METADATA_EVENT_TYPE, StreamAcl, StreamMetadata};
use serde_json::{Map, Value, json};

/// KurrentDB's name of the administrators' role, eventfold's `admin`.
const ADMINS: &str = "$admins";

/// The stream whose metadata `stream` holds, if it is a metadata stream.
pub(super) fn target(stream: &str) -> Option<&str> {
    stream.strip_prefix("$$").filter(|s| !s.is_empty())
}

/// eventfold's metadata of KurrentDB's JSON document, or why it is not one.
pub(super) fn from_kurrentdb(data: &[u8]) -> Result<StreamMetadata, String> {
    let Ok(Value::Object(document)) = serde_json::from_slice::<Value>(data) else {
        return Err("stream metadata must be a JSON object".to_string());
    };
    let count = |key: &str, value: &Value| {
        value
            .as_u64()
            .ok_or_else(|| format!("{key} must be a whole number from 0, not {value}"))
    };
    let mut metadata = StreamMetadata::default();
    for (key, value) in document {
        match key.as_str() {
            "$maxCount" => metadata.max_count = Some(count(&key, &value)?),
            "$maxAge" => metadata.max_age = Some(count(&key, &value)?),
            "$tb" => metadata.truncate_before = Some(Revision(count(&key, &value)?)),
            "$acl" => metadata.acl = Some(acl(&value)?),
            _ => {
                metadata.custom.insert(key, value);
            }
        }
    }
    Ok(metadata)
}

fn acl(value: &Value) -> Result<StreamAcl, String> {
    let Value::Object(acl) = value else {
        return Err("$acl must be a JSON object".to_string());
    };
    let roles = |key: &str| -> Result<Option<Vec<String>>, String> {
        let roles = match acl.get(key) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(role)) => vec![role.clone()],
            Some(Value::Array(roles)) => roles
                .iter()
                .map(|r| r.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| format!("$acl.{key} must name roles as strings"))?,
            Some(other) => return Err(format!("$acl.{key} must be a role or a list, not {other}")),
        };
        Ok(Some(
            roles
                .into_iter()
                .map(|r| {
                    if r == ADMINS {
                        crate::ADMIN_ROLE.to_string()
                    } else {
                        r
                    }
                })
                .collect(),
        ))
    };
    Ok(StreamAcl {
        read: roles("$r")?,
        write: roles("$w")?,
        delete: roles("$d")?,
        // eventfold has one right for reading and changing metadata.
        metadata: roles("$mw")?.or(roles("$mr")?),
    })
}

/// KurrentDB's JSON document of eventfold's metadata.
fn to_kurrentdb(metadata: &StreamMetadata) -> Value {
    let mut document = Map::new();
    if let Some(n) = metadata.max_count {
        document.insert("$maxCount".into(), json!(n));
    }
    if let Some(n) = metadata.max_age {
        document.insert("$maxAge".into(), json!(n));
    }
    if let Some(revision) = metadata.truncate_before {
        document.insert("$tb".into(), json!(revision.get()));
    }
    if let Some(acl) = &metadata.acl {
        fn roles(roles: &Option<Vec<String>>) -> Option<Vec<&str>> {
            roles.as_ref().map(|roles| {
                roles
                    .iter()
                    .map(|r| {
                        if r == crate::ADMIN_ROLE {
                            ADMINS
                        } else {
                            r.as_str()
                        }
                    })
                    .collect()
            })
        }
        let mut out = Map::new();
        for (key, value) in [
            ("$r", roles(&acl.read)),
            ("$w", roles(&acl.write)),
            ("$d", roles(&acl.delete)),
            ("$mr", roles(&acl.metadata)),
            ("$mw", roles(&acl.metadata)),
        ] {
            if let Some(value) = value {
                out.insert(key.into(), json!(value));
            }
        }
        document.insert("$acl".into(), Value::Object(out));
    }
    for (key, value) in &metadata.custom {
        document.insert(key.clone(), value.clone());
    }
    Value::Object(document)
}

/// `event` as KurrentDB's clients read it: a `$metadata` event of a metadata stream
/// carries KurrentDB's document; any other event is as stored.
pub(super) fn as_kurrentdb(event: &RecordedEvent) -> Option<RecordedEvent> {
    if event.event_type != METADATA_EVENT_TYPE || target(&event.stream).is_none() {
        return None;
    }
    let metadata: StreamMetadata = serde_json::from_slice(&event.data).ok()?;
    let mut event = event.clone();
    event.data = bytes::Bytes::from(to_kurrentdb(&metadata).to_string());
    Some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kurrentdb_documents_become_our_metadata_and_back() {
        let document = json!({
            "$maxCount": 10,
            "$maxAge": 3600,
            "$tb": 4,
            "$acl": {"$r": "$all", "$w": ["writers", "$admins"], "$mw": "$admins"},
            "owner": "billing",
        });
        let metadata = from_kurrentdb(document.to_string().as_bytes()).unwrap();
        assert_eq!(metadata.max_count, Some(10));
        assert_eq!(metadata.max_age, Some(3600));
        assert_eq!(metadata.truncate_before, Some(Revision(4)));
        let acl = metadata.acl.clone().unwrap();
        assert_eq!(acl.read, Some(vec!["$all".to_string()]));
        assert_eq!(
            acl.write,
            Some(vec!["writers".to_string(), "admin".to_string()])
        );
        assert_eq!(acl.metadata, Some(vec!["admin".to_string()]));
        assert_eq!(metadata.custom["owner"], "billing");

        let back = to_kurrentdb(&metadata);
        assert_eq!(back["$maxCount"], 10);
        assert_eq!(back["$tb"], 4);
        assert_eq!(back["$acl"]["$w"], json!(["writers", "$admins"]));
        assert_eq!(back["owner"], "billing");
    }

    #[test]
    fn documents_that_are_not_metadata_are_refused_by_name() {
        for (document, named) in [
            ("[]", "JSON object"),
            (r#"{"$maxCount": -1}"#, "$maxCount"),
            (r#"{"$acl": {"$r": 7}}"#, "$acl.$r"),
        ] {
            let error = from_kurrentdb(document.as_bytes()).unwrap_err();
            assert!(error.contains(named), "{document}: {error}");
        }
        assert_eq!(target("$$order-1"), Some("order-1"));
        assert_eq!(target("order-1"), None);
        assert_eq!(target("$$"), None);
    }
}
