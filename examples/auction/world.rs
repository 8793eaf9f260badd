//! The outside world of the questions service: the catalogue, the accounts service
//! (buyers' emails, who blocked whom) and the mail server. It outlives every deployment of the
//! service, and it changes while the service is down: that is why the service puts
//! what it learnt from it on the events.
//!
//! The accounts service and the mail server are files here, standing in for the real
//! services: `accounts.json` and `mail.log` (one JSON line per mail sent).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::json_lines;

/// What is for sale: auction id, seller, title.
const LISTINGS: &[(&str, &str, &str)] = &[
    ("camera-17", "sam", "Leica M3, 1956, with a 50 mm Summicron"),
    ("lamp-4", "sam", "Brass desk lamp"),
    ("bike-9", "ann", "Road bike, 56 cm frame"),
];

/// The catalogue: who sells each auction.
///
/// ```
/// use eventfold_examples::auction::world::Catalogue;
/// assert_eq!(Catalogue::seller_of("camera-17"), Some("sam"));
/// assert_eq!(Catalogue::seller_of("no-such-auction"), None);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Catalogue;

impl Catalogue {
    /// The seller of `auction`, if it is listed.
    pub fn seller_of(auction: &str) -> Option<&'static str> {
        LISTINGS
            .iter()
            .find(|(id, _, _)| *id == auction)
            .map(|(_, seller, _)| *seller)
    }

    /// The title of `auction`, if it is listed.
    pub fn title_of(auction: &str) -> Option<&'static str> {
        LISTINGS
            .iter()
            .find(|(id, _, _)| *id == auction)
            .map(|(_, _, title)| *title)
    }
}

/// The directory the outside world keeps its files in.
#[derive(Debug, Clone)]
pub struct OutsideWorld {
    /// The accounts service: which buyers each seller has blocked.
    pub accounts: Accounts,
    /// The mail server.
    pub mail: MailServer,
}

impl OutsideWorld {
    /// Opens (creating if needed) the outside world kept in `dir`.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(OutsideWorld {
            accounts: Accounts {
                path: dir.join("accounts.json"),
                lock: Arc::default(),
            },
            mail: MailServer {
                path: dir.join("mail.log"),
                lock: Arc::default(),
            },
        })
    }
}

/// The accounts service, as far as the questions service needs it: the buyers each
/// seller has blocked. Its answer depends on when it is asked.
#[derive(Debug, Clone)]
pub struct Accounts {
    path: PathBuf,
    lock: Arc<Mutex<()>>,
}

impl Accounts {
    fn load(&self) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("reading {}", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.path.display())),
        }
    }

    /// `seller` blocks `buyer`.
    pub fn block(&self, seller: &str, buyer: &str) -> anyhow::Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let mut blocked = self.load()?;
        let buyers = blocked.entry(seller.to_string()).or_default();
        if !buyers.iter().any(|b| b == buyer) {
            buyers.push(buyer.to_string());
        }
        std::fs::write(&self.path, serde_json::to_vec_pretty(&blocked)?)
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// The email address of `buyer`'s account.
    pub fn email_of(&self, buyer: &str) -> String {
        format!("{buyer}@buyers.example")
    }

    /// Whether `seller` has blocked `buyer`, now.
    pub fn is_blocked(&self, seller: &str, buyer: &str) -> anyhow::Result<bool> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(self
            .load()?
            .get(seller)
            .is_some_and(|buyers| buyers.iter().any(|b| b == buyer)))
    }
}

/// One mail, as the mail server received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mail {
    /// The sender's idempotency key (the outbox key, `<group>:<event id>:<effect>`).
    pub idempotency_key: String,
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// The mail server: every mail handed to it is sent, once per call. (A real provider
/// would also drop a repeated idempotency key; this one records every call, so the
/// log shows exactly what the service asked for.)
#[derive(Debug, Clone)]
pub struct MailServer {
    path: PathBuf,
    lock: Arc<Mutex<()>>,
}

impl MailServer {
    /// Sends `mail`: appends it to `mail.log`.
    pub fn send(&self, mail: &Mail) -> anyhow::Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        json_lines::append(&self.path, mail, true)
    }

    /// Every mail sent so far, oldest first.
    pub fn sent(&self) -> anyhow::Result<Vec<Mail>> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        json_lines::read_all(&self.path)
    }

    /// The file the mails are in.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
