//! Read models in SQLite (rusqlite, SQLite compiled in).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior, params};

use super::ProjectionError;
use super::outbox::{Effect, EffectState};
use super::read_model::rows::{GenerationRow, GenerationState};
use super::read_model::{
    EffectRow, ReadModel, ReadModelDb, drop_table_sql, point_view_sql, position_from_sql,
    position_to_sql, tables_from_json, tables_to_json,
};

/// How long a transaction waits for another connection's lock before failing (the
/// failure is then retried by the runner).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const BOOKKEEPING: &str = "
CREATE TABLE IF NOT EXISTS eventfold_generations (
    grp TEXT NOT NULL,
    generation INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    replay_until INTEGER,
    checkpoint INTEGER,
    tables TEXT NOT NULL,
    PRIMARY KEY (grp, generation)
);
CREATE TABLE IF NOT EXISTS eventfold_outbox (
    key TEXT PRIMARY KEY,
    grp TEXT NOT NULL,
    name TEXT NOT NULL,
    payload TEXT NOT NULL,
    position INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS eventfold_outbox_by_state ON eventfold_outbox (state, position);
";

/// A read model in an SQLite database file. Projections write through a
/// [`rusqlite::Transaction`]; the runner's bookkeeping lives in the same file
/// (`eventfold_generations`, `eventfold_outbox`), so the read model, its checkpoint
/// and its outbox commit together.
///
/// The database runs in WAL mode with `synchronous = FULL`: a committed batch
/// survives a power loss, and readers on other connections are not blocked by the
/// runner.
///
/// ```
/// use eventfold::projection::SqliteReadModel;
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let dir = tempfile::tempdir().unwrap();
/// let db = SqliteReadModel::open(dir.path().join("read-model.sqlite")).await.unwrap();
/// let tables: i64 = db
///     .call(|m| m.connection().query_row("SELECT count(*) FROM eventfold_outbox", [], |r| r.get(0)))
///     .await
///     .unwrap()
///     .unwrap();
/// assert_eq!(tables, 0);
/// # });
/// ```
#[derive(Debug)]
pub struct SqliteReadModel {
    connection: Connection,
    path: PathBuf,
}

impl SqliteReadModel {
    /// Opens (or creates) the database at `path` on its own thread.
    pub async fn open(
        path: impl AsRef<Path>,
    ) -> Result<ReadModelDb<SqliteReadModel>, ProjectionError> {
        let path = path.as_ref().to_path_buf();
        ReadModelDb::spawn("sqlite", move || SqliteReadModel::open_blocking(path)).await
    }

    fn open_blocking(path: PathBuf) -> Result<Self, ProjectionError> {
        let connection = Connection::open(&path).map_err(ProjectionError::database)?;
        connection
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(ProjectionError::database)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(ProjectionError::database)?;
        connection
            .pragma_update(None, "synchronous", "FULL")
            .map_err(ProjectionError::database)?;
        // What a projection deletes or overwrites (a forgotten person's email, a
        // dropped generation) is overwritten with zeros in the file, not left in free
        // space for a later reader of the file to find.
        connection
            .pragma_update(None, "secure_delete", "ON")
            .map_err(ProjectionError::database)?;
        connection
            .execute_batch(BOOKKEEPING)
            .map_err(ProjectionError::database)?;
        Ok(SqliteReadModel { connection, path })
    }

    /// The connection, for reading the read model (through its views).
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn db(error: rusqlite::Error) -> ProjectionError {
    ProjectionError::database(error)
}

fn u64_from_sql(value: i64, what: &str) -> Result<u64, ProjectionError> {
    u64::try_from(value)
        .map_err(|_| ProjectionError::database(format!("stored {what} is negative")))
}

impl ReadModel for SqliteReadModel {
    type Tx<'t> = Transaction<'t>;

    fn transaction<R>(
        &mut self,
        f: impl FnOnce(&mut Self::Tx<'_>) -> Result<R, ProjectionError>,
    ) -> Result<R, ProjectionError> {
        // IMMEDIATE takes the write lock at the start, so two runners on one file
        // wait for each other instead of failing when a reader upgrades to a writer.
        let mut tx = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        // On an error `tx` is dropped, which rolls it back.
        let result = f(&mut tx)?;
        tx.commit().map_err(db)?;
        Ok(result)
    }

    fn generations(
        tx: &mut Self::Tx<'_>,
        group: &str,
    ) -> Result<Vec<GenerationRow>, ProjectionError> {
        let mut statement = tx
            .prepare_cached(
                "SELECT generation, fingerprint, state, replay_until, checkpoint, tables
                 FROM eventfold_generations WHERE grp = ?1 ORDER BY generation",
            )
            .map_err(db)?;
        let rows = statement
            .query_map(params![group], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, Option<i64>>(3)?,
                    row.get::<_, Option<i64>>(4)?,
                    row.get::<_, String>(5)?,
                ))
            })
            .map_err(db)?;
        let mut generations = Vec::new();
        for row in rows {
            let (generation, fingerprint, state, replay_until, checkpoint, tables) =
                row.map_err(db)?;
            let state = GenerationState::parse(&state).ok_or_else(|| {
                ProjectionError::database(format!("unknown generation state '{state}'"))
            })?;
            generations.push(GenerationRow {
                group: group.to_string(),
                generation: u64_from_sql(generation, "generation")?,
                fingerprint,
                state,
                replay_until: replay_until.map(position_from_sql).transpose()?,
                checkpoint: checkpoint.map(position_from_sql).transpose()?,
                tables: tables_from_json(&tables)?,
            });
        }
        Ok(generations)
    }

    fn put_generation(tx: &mut Self::Tx<'_>, row: &GenerationRow) -> Result<(), ProjectionError> {
        let generation = i64::try_from(row.generation)
            .map_err(|_| ProjectionError::database("generation exceeds i64"))?;
        let replay_until = row.replay_until.map(position_to_sql).transpose()?;
        let checkpoint = row.checkpoint.map(position_to_sql).transpose()?;
        tx.prepare_cached(
            "INSERT INTO eventfold_generations
                 (grp, generation, fingerprint, state, replay_until, checkpoint, tables)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (grp, generation) DO UPDATE
                 SET state = excluded.state, checkpoint = excluded.checkpoint",
        )
        .map_err(db)?
        .execute(params![
            row.group,
            generation,
            row.fingerprint,
            row.state.as_str(),
            replay_until,
            checkpoint,
            tables_to_json(&row.tables),
        ])
        .map_err(db)?;
        Ok(())
    }

    fn record_effect(tx: &mut Self::Tx<'_>, effect: &Effect) -> Result<bool, ProjectionError> {
        let inserted = tx
            .prepare_cached(
                "INSERT INTO eventfold_outbox (key, grp, name, payload, position, state, attempts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)
                 ON CONFLICT (key) DO NOTHING",
            )
            .map_err(db)?
            .execute(params![
                effect.key,
                effect.group,
                effect.name,
                effect.payload.to_string(),
                position_to_sql(effect.position)?,
                effect.state.as_str(),
            ])
            .map_err(db)?;
        Ok(inserted == 1)
    }

    fn effects(
        tx: &mut Self::Tx<'_>,
        state: Option<EffectState>,
        limit: u32,
    ) -> Result<Vec<Effect>, ProjectionError> {
        let mut statement = tx
            .prepare_cached(
                "SELECT key, grp, name, payload, position, state, attempts, last_error
                 FROM eventfold_outbox WHERE ?1 IS NULL OR state = ?1
                 ORDER BY position, key LIMIT ?2",
            )
            .map_err(db)?;
        let rows = statement
            .query_map(params![state.map(EffectState::as_str), limit], |row| {
                Ok(EffectRow {
                    key: row.get(0)?,
                    group: row.get(1)?,
                    name: row.get(2)?,
                    payload: row.get(3)?,
                    position: row.get(4)?,
                    state: row.get(5)?,
                    attempts: row.get(6)?,
                    last_error: row.get(7)?,
                })
            })
            .map_err(db)?;
        let mut effects = Vec::new();
        for row in rows {
            effects.push(row.map_err(db)?.into_effect()?);
        }
        Ok(effects)
    }

    fn finish_effect(
        tx: &mut Self::Tx<'_>,
        key: &str,
        state: EffectState,
        attempts: u32,
        last_error: Option<&str>,
    ) -> Result<(), ProjectionError> {
        tx.prepare_cached(
            "UPDATE eventfold_outbox SET state = ?2, attempts = ?3, last_error = ?4 WHERE key = ?1",
        )
        .map_err(db)?
        .execute(params![key, state.as_str(), attempts, last_error])
        .map_err(db)?;
        Ok(())
    }

    fn point_view(
        tx: &mut Self::Tx<'_>,
        logical: &str,
        physical: Option<&str>,
    ) -> Result<(), ProjectionError> {
        for statement in point_view_sql(logical, physical) {
            tx.execute_batch(&statement).map_err(db)?;
        }
        Ok(())
    }

    fn drop_table(tx: &mut Self::Tx<'_>, physical: &str) -> Result<(), ProjectionError> {
        tx.execute_batch(&drop_table_sql(physical)).map_err(db)?;
        Ok(())
    }
}
