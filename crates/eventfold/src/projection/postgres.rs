//! Read models in PostgreSQL, through the blocking client of tokio-postgres (the
//! `postgres` crate) on the read model's own thread.

use postgres::{Client, NoTls, Transaction};

use super::ProjectionError;
use super::outbox::{Effect, EffectState};
use super::read_model::rows::{GenerationRow, GenerationState};
use super::read_model::{
    EffectRow, ReadModel, ReadModelDb, drop_table_sql, point_view_sql, position_from_sql,
    position_to_sql, quote_ident, tables_from_json, tables_to_json,
};

const BOOKKEEPING: &str = "
CREATE TABLE IF NOT EXISTS eventfold_generations (
    grp TEXT NOT NULL,
    generation BIGINT NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    replay_until BIGINT,
    checkpoint BIGINT,
    tables TEXT NOT NULL,
    PRIMARY KEY (grp, generation)
);
CREATE TABLE IF NOT EXISTS eventfold_outbox (
    key TEXT PRIMARY KEY,
    grp TEXT NOT NULL,
    name TEXT NOT NULL,
    payload TEXT NOT NULL,
    position BIGINT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS eventfold_outbox_by_state ON eventfold_outbox (state, position);
";

/// A read model in a PostgreSQL schema. Projections write through a
/// [`postgres::Transaction`] whose `search_path` is the schema, so they name their
/// tables without a schema; the runner's bookkeeping (`eventfold_generations`,
/// `eventfold_outbox`) lives in the same schema and commits with them.
///
/// Several runners (processes) may share a schema: each batch locks its group's
/// generation rows, so they take turns, and a swap by one is seen by the others.
///
/// ```no_run
/// use eventfold::projection::PostgresReadModel;
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let db = PostgresReadModel::connect("postgres://postgres@127.0.0.1:5432/app", "read_models")
///     .await
///     .unwrap();
/// // Readers query the views (named after the projections' tables) in the schema.
/// let rows = db
///     .call(|m| m.client().query("SELECT seller, count FROM unread", &[]))
///     .await
///     .unwrap();
/// # let _ = rows;
/// # });
/// ```
pub struct PostgresReadModel {
    client: Client,
    schema: String,
}

impl std::fmt::Debug for PostgresReadModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresReadModel")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PostgresReadModel {
    /// Connects to `url` (`postgres://user@host:port/database`), creates `schema` if
    /// need be, and keeps the read models there.
    pub async fn connect(
        url: &str,
        schema: &str,
    ) -> Result<ReadModelDb<PostgresReadModel>, ProjectionError> {
        let url = url.to_string();
        let schema = schema.to_string();
        ReadModelDb::spawn("postgres", move || {
            let mut client = Client::connect(&url, NoTls).map_err(ProjectionError::database)?;
            let quoted = quote_ident(&schema);
            client
                .batch_execute(&format!(
                    "CREATE SCHEMA IF NOT EXISTS {quoted}; SET search_path TO {quoted};"
                ))
                .map_err(ProjectionError::database)?;
            client
                .batch_execute(BOOKKEEPING)
                .map_err(ProjectionError::database)?;
            Ok(PostgresReadModel { client, schema })
        })
        .await
    }

    /// The client, for reading the read model (its `search_path` is the schema).
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// The schema holding the read models.
    pub fn schema(&self) -> &str {
        &self.schema
    }
}

fn db(error: postgres::Error) -> ProjectionError {
    ProjectionError::database(error)
}

impl ReadModel for PostgresReadModel {
    type Tx<'t> = Transaction<'t>;

    fn transaction<R>(
        &mut self,
        f: impl FnOnce(&mut Self::Tx<'_>) -> Result<R, ProjectionError>,
    ) -> Result<R, ProjectionError> {
        let mut tx = self.client.transaction().map_err(db)?;
        // On an error `tx` is dropped, which rolls it back.
        let result = f(&mut tx)?;
        tx.commit().map_err(db)?;
        Ok(result)
    }

    fn generations(
        tx: &mut Self::Tx<'_>,
        group: &str,
    ) -> Result<Vec<GenerationRow>, ProjectionError> {
        // FOR UPDATE: a batch and a swap of the same group never interleave.
        let rows = tx
            .query(
                "SELECT generation, fingerprint, state, replay_until, checkpoint, tables
                 FROM eventfold_generations WHERE grp = $1 ORDER BY generation FOR UPDATE",
                &[&group],
            )
            .map_err(db)?;
        let mut generations = Vec::with_capacity(rows.len());
        for row in rows {
            let generation: i64 = row.try_get(0).map_err(db)?;
            let state: String = row.try_get(2).map_err(db)?;
            let replay_until: Option<i64> = row.try_get(3).map_err(db)?;
            let checkpoint: Option<i64> = row.try_get(4).map_err(db)?;
            let tables: String = row.try_get(5).map_err(db)?;
            generations.push(GenerationRow {
                group: group.to_string(),
                generation: u64::try_from(generation)
                    .map_err(|_| ProjectionError::database("stored generation is negative"))?,
                fingerprint: row.try_get(1).map_err(db)?,
                state: GenerationState::parse(&state).ok_or_else(|| {
                    ProjectionError::database(format!("unknown generation state '{state}'"))
                })?,
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
        tx.execute(
            "INSERT INTO eventfold_generations
                 (grp, generation, fingerprint, state, replay_until, checkpoint, tables)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (grp, generation) DO UPDATE
                 SET state = excluded.state, checkpoint = excluded.checkpoint",
            &[
                &row.group,
                &generation,
                &row.fingerprint,
                &row.state.as_str(),
                &replay_until,
                &checkpoint,
                &tables_to_json(&row.tables),
            ],
        )
        .map_err(db)?;
        Ok(())
    }

    fn record_effect(tx: &mut Self::Tx<'_>, effect: &Effect) -> Result<bool, ProjectionError> {
        let inserted = tx
            .execute(
                "INSERT INTO eventfold_outbox (key, grp, name, payload, position, state, attempts)
                 VALUES ($1, $2, $3, $4, $5, $6, 0)
                 ON CONFLICT (key) DO NOTHING",
                &[
                    &effect.key,
                    &effect.group,
                    &effect.name,
                    &effect.payload.to_string(),
                    &position_to_sql(effect.position)?,
                    &effect.state.as_str(),
                ],
            )
            .map_err(db)?;
        Ok(inserted == 1)
    }

    fn effects(
        tx: &mut Self::Tx<'_>,
        state: Option<EffectState>,
        limit: u32,
    ) -> Result<Vec<Effect>, ProjectionError> {
        let rows = tx
            .query(
                "SELECT key, grp, name, payload, position, state, attempts, last_error
                 FROM eventfold_outbox WHERE $1::TEXT IS NULL OR state = $1
                 ORDER BY position, key LIMIT $2",
                &[&state.map(EffectState::as_str), &i64::from(limit)],
            )
            .map_err(db)?;
        let mut effects = Vec::with_capacity(rows.len());
        for row in rows {
            effects.push(
                EffectRow {
                    key: row.try_get(0).map_err(db)?,
                    group: row.try_get(1).map_err(db)?,
                    name: row.try_get(2).map_err(db)?,
                    payload: row.try_get(3).map_err(db)?,
                    position: row.try_get(4).map_err(db)?,
                    state: row.try_get(5).map_err(db)?,
                    attempts: row.try_get(6).map_err(db)?,
                    last_error: row.try_get(7).map_err(db)?,
                }
                .into_effect()?,
            );
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
        tx.execute(
            "UPDATE eventfold_outbox SET state = $2, attempts = $3, last_error = $4 WHERE key = $1",
            &[&key, &state.as_str(), &i64::from(attempts), &last_error],
        )
        .map_err(db)?;
        Ok(())
    }

    fn point_view(
        tx: &mut Self::Tx<'_>,
        logical: &str,
        physical: Option<&str>,
    ) -> Result<(), ProjectionError> {
        for statement in point_view_sql(logical, physical) {
            tx.batch_execute(&statement).map_err(db)?;
        }
        Ok(())
    }

    fn drop_table(tx: &mut Self::Tx<'_>, physical: &str) -> Result<(), ProjectionError> {
        tx.batch_execute(&drop_table_sql(physical)).map_err(db)?;
        Ok(())
    }
}
