//! The read model, in SQLite: each seller's questions, and (from release 2) each
//! seller's unread-questions count. Both are folds of the events, so any release can
//! rebuild them from the log; the seller's email goes through the outbox, so it is
//! sent for live questions only, never for replayed ones. The buyer's email is
//! personal data: dropped from the read model when the buyer is forgotten.

use eventfold::projection::{
    Context, HandlerError, Projection, ProjectionRunner, ReadModelDb, SqliteReadModel, Tables,
};
use eventfold::{DomainEvent, EventStore, RecordedEvent};
use rusqlite::{OptionalExtension, Transaction, params};
use serde::Serialize;
use std::sync::Arc;

use super::domain::AuctionEvent;

/// The projection group's name in the read-model database.
pub const GROUP: &str = "auction-questions";

/// The releases of the service's read side. A release with other projections (or
/// other projection versions) rebuilds the read model from the events when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Release {
    /// The questions of each seller, and an email per new question.
    V1,
    /// The new business rule: also each seller's unread-questions count.
    V2,
}

impl Release {
    /// The runner of this release's projections.
    pub fn runner(
        self,
        store: Arc<dyn EventStore>,
        db: ReadModelDb<SqliteReadModel>,
    ) -> ProjectionRunner<SqliteReadModel> {
        let runner = ProjectionRunner::new(store, db, GROUP).with_projection(Questions);
        match self {
            Release::V1 => runner,
            Release::V2 => runner.with_projection(UnreadQuestions),
        }
    }
}

/// Each seller's questions; mails the seller about each new question.
pub struct Questions;

impl Projection<SqliteReadModel> for Questions {
    fn name(&self) -> &str {
        "questions"
    }

    fn tables(&self) -> &[&str] {
        &["questions"]
    }

    fn setup(&self, tx: &mut Transaction<'_>, tables: &Tables) -> Result<(), HandlerError> {
        tx.execute_batch(&format!(
            "CREATE TABLE {} (
                 question_id TEXT PRIMARY KEY,
                 auction TEXT NOT NULL,
                 seller TEXT NOT NULL,
                 buyer TEXT NOT NULL,
                 buyer_email TEXT,
                 text TEXT NOT NULL,
                 read INTEGER NOT NULL,
                 answer TEXT,
                 position INTEGER NOT NULL
             )",
            tables.name("questions")
        ))?;
        Ok(())
    }

    fn apply(
        &self,
        tx: &mut Transaction<'_>,
        event: &RecordedEvent,
        ctx: &mut Context<'_>,
    ) -> Result<(), HandlerError> {
        let table = ctx.table("questions");
        match AuctionEvent::decode(event)? {
            Some(AuctionEvent::QuestionAsked {
                question_id,
                auction,
                seller,
                buyer,
                buyer_email,
                text,
            }) => {
                let position = i64::try_from(event.position.get())?;
                // A forgotten buyer's email reads as redacted: no copy is kept.
                let buyer_email = buyer_email.into_known();
                tx.execute(
                    &format!(
                        "INSERT INTO {table} (question_id, auction, seller, buyer, buyer_email, text, read, position)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7)"
                    ),
                    params![question_id, auction, seller, buyer, buyer_email, text, position],
                )?;
                // Recorded in the outbox, in this transaction, when the event is live;
                // dropped when it is replayed.
                let mail = serde_json::json!({
                    "to": format!("{seller}@sellers.example"),
                    "subject": format!("{buyer} asked about {auction} ({question_id})"),
                    "body": text,
                });
                ctx.effect(format!("email:{seller}"), mail);
            }
            Some(AuctionEvent::QuestionRead { question_id, .. }) => {
                tx.execute(
                    &format!("UPDATE {table} SET read = 1 WHERE question_id = ?1"),
                    params![question_id],
                )?;
            }
            Some(AuctionEvent::QuestionAnswered {
                question_id,
                answer,
                ..
            }) => {
                tx.execute(
                    &format!("UPDATE {table} SET answer = ?2 WHERE question_id = ?1"),
                    params![question_id, answer],
                )?;
            }
            None => {}
        }
        Ok(())
    }

    /// A buyer was forgotten: the read model drops its copies of their email.
    fn forget(
        &self,
        tx: &mut Transaction<'_>,
        subject: &str,
        ctx: &mut Context<'_>,
    ) -> Result<(), HandlerError> {
        tx.execute(
            &format!(
                "UPDATE {} SET buyer_email = NULL WHERE buyer = ?1",
                ctx.table("questions")
            ),
            params![subject],
        )?;
        Ok(())
    }
}

/// Release 2's business rule: each seller's unread questions, counted from the facts
/// (asked, and not read).
pub struct UnreadQuestions;

impl Projection<SqliteReadModel> for UnreadQuestions {
    fn name(&self) -> &str {
        "unread-questions"
    }

    fn tables(&self) -> &[&str] {
        &["unread_questions"]
    }

    fn setup(&self, tx: &mut Transaction<'_>, tables: &Tables) -> Result<(), HandlerError> {
        tx.execute_batch(&format!(
            "CREATE TABLE {} (seller TEXT PRIMARY KEY, unread INTEGER NOT NULL)",
            tables.name("unread_questions")
        ))?;
        Ok(())
    }

    fn apply(
        &self,
        tx: &mut Transaction<'_>,
        event: &RecordedEvent,
        ctx: &mut Context<'_>,
    ) -> Result<(), HandlerError> {
        let table = ctx.table("unread_questions");
        let (seller, change) = match AuctionEvent::decode(event)? {
            Some(AuctionEvent::QuestionAsked { seller, .. }) => (seller, 1),
            // The auction records a question's reading once.
            Some(AuctionEvent::QuestionRead { seller, .. }) => (seller, -1),
            Some(AuctionEvent::QuestionAnswered { .. }) | None => return Ok(()),
        };
        tx.execute(
            &format!(
                "INSERT INTO {table} (seller, unread) VALUES (?1, ?2)
                 ON CONFLICT (seller) DO UPDATE SET unread = unread + ?2"
            ),
            params![seller, change],
        )?;
        Ok(())
    }
}

/// A question as the seller's page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuestionView {
    pub question_id: String,
    pub auction: String,
    pub buyer: String,
    /// Where a reply to the buyer goes; `None` once the buyer was forgotten.
    pub buyer_email: Option<String>,
    pub text: String,
    pub read: bool,
    pub answer: Option<String>,
}

/// A seller's page: the questions, and the unread count when the release keeps one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SellerQuestions {
    pub seller: String,
    /// `None` before release 2: the read model had no such count.
    pub unread: Option<u64>,
    pub questions: Vec<QuestionView>,
}

/// Reads a seller's page from the live read model (through its views).
pub async fn seller_questions(
    db: &ReadModelDb<SqliteReadModel>,
    release: Release,
    seller: &str,
) -> anyhow::Result<SellerQuestions> {
    let seller = seller.to_string();
    let page = db
        .call(move |model| -> rusqlite::Result<SellerQuestions> {
            let connection = model.connection();
            let mut statement = connection.prepare(
                "SELECT question_id, auction, buyer, buyer_email, text, read, answer
                 FROM questions WHERE seller = ?1 ORDER BY position",
            )?;
            let questions = statement
                .query_map(params![seller], |row| {
                    Ok(QuestionView {
                        question_id: row.get(0)?,
                        auction: row.get(1)?,
                        buyer: row.get(2)?,
                        buyer_email: row.get(3)?,
                        text: row.get(4)?,
                        read: row.get::<_, i64>(5)? != 0,
                        answer: row.get(6)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let unread = match release {
                Release::V1 => None,
                Release::V2 => Some(
                    connection
                        .query_row(
                            "SELECT unread FROM unread_questions WHERE seller = ?1",
                            params![seller],
                            |row| row.get::<_, i64>(0),
                        )
                        .optional()?
                        .map_or(Ok(0), |n| {
                            u64::try_from(n)
                                .map_err(|_| rusqlite::Error::IntegralValueOutOfRange(0, n))
                        })?,
                ),
            };
            Ok(SellerQuestions {
                seller,
                unread,
                questions,
            })
        })
        .await??;
    Ok(page)
}
