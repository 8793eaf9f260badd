//! Who is calling and what they may do: bearer tokens of users with roles, read from
//! a config file, and access checked on every endpoint against the stream's ACL (its
//! metadata) or the server's defaults.
//!
//! Without an [`AuthConfig`] the server runs in the insecure development mode: every
//! request acts as an administrator. The CLI refuses that mode on a non-loopback
//! address unless asked for it explicitly, and says so loudly at start.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use eventfold_metadata::StreamAdmin;
use eventfold_wire::ErrorCode;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

/// The role that may do everything, whatever an ACL says.
pub const ADMIN_ROLE: &str = "admin";

/// In an ACL, lets every authenticated user in.
pub const EVERYONE: &str = "$all";

/// The server's users and default ACL, from a TOML file:
///
/// ```toml
/// [[users]]
/// name = "ops"
/// token_sha256 = "<hex of the SHA-256 of the token>"
/// roles = ["admin"]
///
/// [[users]]
/// name = "billing-service"
/// token = "a-long-random-secret"
/// roles = ["billing"]
///
/// [acl]              # defaults for streams whose metadata sets no ACL
/// read = ["$all"]
/// write = ["$all"]
/// delete = ["admin"]
/// metadata = ["admin"]
/// all = ["admin"]     # $all, index streams, listing streams
/// schemas = ["admin"] # registering schemas
/// groups = ["admin"]  # consumer groups
/// metrics = ["metrics"] # scraping /metrics
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Users by the SHA-256 of their token (tokens themselves are not kept).
    users: HashMap<[u8; 32], Arc<Principal>>,
    /// The default ACL.
    pub acl: DefaultAcl,
}

/// The roles allowed each kind of access when a stream's metadata names none, and
/// for what is not a stream.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DefaultAcl {
    /// Reading a stream's events (and subscribing to it).
    pub read: Vec<String>,
    /// Appending to a stream.
    pub write: Vec<String>,
    /// Deleting a stream.
    pub delete: Vec<String>,
    /// Reading and setting a stream's metadata.
    pub metadata: Vec<String>,
    /// Reading `$all` and index streams, subscribing to `$all`, listing streams.
    pub all: Vec<String>,
    /// Registering schemas (reading them needs only a valid token).
    pub schemas: Vec<String>,
    /// Creating and consuming consumer groups.
    pub groups: Vec<String>,
    /// Scraping `/metrics` (which names consumer groups).
    pub metrics: Vec<String>,
}

/// The role that may scrape `/metrics` by default (besides `admin`).
pub const METRICS_ROLE: &str = "metrics";

impl Default for DefaultAcl {
    fn default() -> Self {
        let roles = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        DefaultAcl {
            read: roles(&[EVERYONE]),
            write: roles(&[EVERYONE]),
            delete: roles(&[ADMIN_ROLE]),
            metadata: roles(&[ADMIN_ROLE]),
            all: roles(&[ADMIN_ROLE]),
            schemas: roles(&[ADMIN_ROLE]),
            groups: roles(&[ADMIN_ROLE]),
            metrics: roles(&[METRICS_ROLE]),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    users: Vec<UserEntry>,
    #[serde(default)]
    acl: DefaultAcl,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    name: String,
    token: Option<String>,
    token_sha256: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
}

/// Why an auth config was refused.
#[derive(Debug, thiserror::Error)]
#[error("auth config {path}: {reason}")]
pub struct AuthConfigError {
    path: String,
    reason: String,
}

impl AuthConfig {
    /// Reads and checks a TOML config file.
    pub fn from_file(path: &Path) -> Result<Self, AuthConfigError> {
        let error = |reason: String| AuthConfigError {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        Self::from_toml(&text).map_err(error)
    }

    /// Parses a TOML config; the error names the problem.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut users = HashMap::new();
        for user in file.users {
            let hash = match (&user.token, &user.token_sha256) {
                (Some(token), None) if token.len() >= 16 => token_hash(token),
                (Some(_), None) => {
                    return Err(format!(
                        "user '{}': a token must be at least 16 characters",
                        user.name
                    ));
                }
                (None, Some(hex_hash)) => {
                    let bytes = hex::decode(hex_hash.trim()).map_err(|e| {
                        format!("user '{}': token_sha256 is not hex: {e}", user.name)
                    })?;
                    <[u8; 32]>::try_from(bytes).map_err(|_| {
                        format!(
                            "user '{}': token_sha256 must be 32 bytes (64 hex digits)",
                            user.name
                        )
                    })?
                }
                _ => {
                    return Err(format!(
                        "user '{}' needs exactly one of token and token_sha256",
                        user.name
                    ));
                }
            };
            let principal = Principal {
                name: user.name.clone(),
                roles: user.roles,
            };
            if users.insert(hash, Arc::new(principal)).is_some() {
                return Err(format!(
                    "user '{}' has the token of another user",
                    user.name
                ));
            }
        }
        if users.is_empty() {
            return Err("no [[users]]: nobody could use the server".into());
        }
        Ok(AuthConfig {
            users,
            acl: file.acl,
        })
    }

    pub(crate) fn user(&self, token: &str) -> Option<Arc<Principal>> {
        self.users.get(&token_hash(token)).cloned()
    }
}

/// The SHA-256 of a token, as `token_sha256` holds it in hex.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user's name (`anonymous-admin` in the insecure mode).
    pub name: String,
    /// The user's roles.
    pub roles: Vec<String>,
}

impl Principal {
    pub(crate) fn insecure() -> Self {
        Principal {
            name: "anonymous-admin".into(),
            roles: vec![ADMIN_ROLE.into()],
        }
    }

    pub(crate) fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == ADMIN_ROLE)
    }

    fn has_any(&self, allowed: &[String]) -> bool {
        self.is_admin()
            || allowed
                .iter()
                .any(|role| role == EVERYONE || self.roles.contains(role))
    }
}

impl FromRequestParts<Arc<AppState>> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let Some(auth) = &state.config.auth else {
            return Ok(Principal::insecure());
        };
        let unauthorized = |message: &str| {
            ApiError::new(ErrorCode::Unauthorized, message)
                .with_header(header::WWW_AUTHENTICATE, "Bearer")
        };
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(unauthorized(
                "this server needs a token: send Authorization: Bearer <token>",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| unauthorized("Authorization must be 'Bearer <token>'"))?;
        auth.user(token.trim())
            .map(|p| (*p).clone())
            .ok_or_else(|| unauthorized("unknown token"))
    }
}

/// What a request wants to do.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Access<'a> {
    /// Read a stream's events (an index stream or system stream counts as `$all`).
    Read(&'a str),
    /// Append to a stream.
    Write(&'a str),
    /// Delete a stream.
    Delete(&'a str),
    /// Read or set a stream's metadata.
    Metadata(&'a str),
    /// Read `$all`, list streams.
    All,
    /// Register schemas.
    Schemas,
    /// Use consumer groups.
    Groups,
    /// Scrape `/metrics`.
    Metrics,
    /// Administer the store (scavenge): administrators only.
    Admin,
}

impl AppState {
    /// Lets the request through, or answers 403 naming what was refused.
    pub(crate) async fn authorize(
        &self,
        who: &Principal,
        access: Access<'_>,
    ) -> Result<(), ApiError> {
        let Some(auth) = &self.config.auth else {
            return Ok(());
        };
        if who.is_admin() {
            return Ok(());
        }
        let defaults = &auth.acl;
        let (allowed, what) = match access {
            // A category's defaults: as for a stream with no ACL of its own.
            Access::Metadata(stream) if eventfold_metadata::defaults_category(stream).is_some() => {
                (
                    defaults.metadata.clone(),
                    format!("change the metadata of category stream '{stream}'"),
                )
            }
            Access::Read(stream)
            | Access::Write(stream)
            | Access::Delete(stream)
            | Access::Metadata(stream)
                if stream.starts_with('$') =>
            {
                (defaults.all.clone(), format!("system stream '{stream}'"))
            }
            Access::Read(stream)
            | Access::Write(stream)
            | Access::Delete(stream)
            | Access::Metadata(stream) => {
                let acl = self.store.stream_metadata(stream).await?.metadata.acl;
                let acl = acl.unwrap_or_default();
                let (own, default, kind) = match access {
                    Access::Read(_) => (acl.read, &defaults.read, "read"),
                    Access::Write(_) => (acl.write, &defaults.write, "write to"),
                    Access::Delete(_) => (acl.delete, &defaults.delete, "delete"),
                    _ => (acl.metadata, &defaults.metadata, "change the metadata of"),
                };
                (
                    own.unwrap_or_else(|| default.clone()),
                    format!("{kind} stream '{stream}'"),
                )
            }
            Access::All => (defaults.all.clone(), "read $all or list streams".into()),
            Access::Schemas => (defaults.schemas.clone(), "register schemas".into()),
            Access::Groups => (defaults.groups.clone(), "use consumer groups".into()),
            Access::Metrics => (defaults.metrics.clone(), "read the metrics".into()),
            Access::Admin => (vec!["admin".to_string()], "administer the store".into()),
        };
        if who.has_any(&allowed) {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::AccessDenied,
            format!(
                "user '{}' may not {what}: it needs one of the roles {allowed:?}",
                who.name
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_the_user_and_the_problem() {
        let short = "[[users]]\nname = \"a\"\ntoken = \"short\"\n";
        assert!(
            AuthConfig::from_toml(short)
                .unwrap_err()
                .contains("user 'a'")
        );
        let both = "[[users]]\nname = \"b\"\ntoken = \"0123456789abcdef\"\ntoken_sha256 = \"00\"\n";
        assert!(
            AuthConfig::from_toml(both)
                .unwrap_err()
                .contains("exactly one")
        );
        let typo = "[[users]]\nname = \"c\"\ntoken = \"0123456789abcdef\"\nrole = []\n";
        assert!(AuthConfig::from_toml(typo).unwrap_err().contains("role"));
        assert!(
            AuthConfig::from_toml("")
                .unwrap_err()
                .contains("no [[users]]")
        );
    }

    #[test]
    fn a_hashed_token_finds_the_same_user_as_the_plain_one() {
        let hash = hex::encode(token_hash("0123456789abcdef-secret"));
        let config = AuthConfig::from_toml(&format!(
            "[[users]]\nname = \"ops\"\ntoken_sha256 = \"{hash}\"\nroles = [\"admin\"]\n"
        ))
        .expect("config");
        let user = config.user("0123456789abcdef-secret").expect("known token");
        assert_eq!(user.name, "ops");
        assert!(config.user("0123456789abcdef-other").is_none());
    }
}
