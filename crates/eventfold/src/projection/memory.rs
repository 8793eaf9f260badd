//! A read model in memory, for tests: tables are ordered maps of JSON values.

use std::collections::BTreeMap;

use super::ProjectionError;
use super::outbox::{Effect, EffectState};
use super::read_model::rows::{GenerationRow, GenerationState};
use super::read_model::{ReadModel, ReadModelDb};

/// One table: rows by key.
pub type MemoryTable = BTreeMap<String, serde_json::Value>;

#[derive(Debug, Clone, Default)]
struct State {
    tables: BTreeMap<String, MemoryTable>,
    generations: BTreeMap<(String, u64), GenerationRow>,
    outbox: BTreeMap<String, Effect>,
}

/// A read model held in memory, transactional like the real ones (a transaction works
/// on a copy that replaces the state when it commits). For tests; it is gone when
/// the process ends.
///
/// ```
/// use eventfold::projection::MemoryReadModel;
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let db = MemoryReadModel::open().await.unwrap();
/// assert_eq!(db.call(|m| m.live_table("group", "table").is_none()).await.unwrap(), true);
/// # });
/// ```
#[derive(Debug, Default)]
pub struct MemoryReadModel {
    state: State,
}

impl MemoryReadModel {
    /// An empty read model on its own thread.
    pub async fn open() -> Result<ReadModelDb<MemoryReadModel>, ProjectionError> {
        ReadModelDb::spawn("memory", || Ok(MemoryReadModel::default())).await
    }

    /// Table `physical` (for example `counts_g1`), if it exists.
    pub fn table(&self, physical: &str) -> Option<&MemoryTable> {
        self.state.tables.get(physical)
    }

    /// The names of every table.
    pub fn table_names(&self) -> Vec<String> {
        self.state.tables.keys().cloned().collect()
    }

    /// Table `logical` of the live generation of `group`, as readers see it. A table
    /// the projection never wrote to reads as empty.
    pub fn live_table(&self, group: &str, logical: &str) -> Option<MemoryTable> {
        let live = self
            .state
            .generations
            .values()
            .find(|row| row.group == group && row.state == GenerationState::Live)?;
        let (_, physical) = live.tables.iter().find(|(l, _)| l == logical)?;
        Some(self.state.tables.get(physical).cloned().unwrap_or_default())
    }
}

/// A transaction on a [`MemoryReadModel`].
#[derive(Debug)]
pub struct MemoryTx<'t> {
    state: &'t mut State,
}

impl MemoryTx<'_> {
    /// Table `physical`, created empty if need be.
    pub fn table(&mut self, physical: &str) -> &mut MemoryTable {
        self.state.tables.entry(physical.to_string()).or_default()
    }
}

impl ReadModel for MemoryReadModel {
    type Tx<'t> = MemoryTx<'t>;

    fn transaction<R>(
        &mut self,
        f: impl FnOnce(&mut Self::Tx<'_>) -> Result<R, ProjectionError>,
    ) -> Result<R, ProjectionError> {
        let mut copy = self.state.clone();
        let result = f(&mut MemoryTx { state: &mut copy })?;
        self.state = copy;
        Ok(result)
    }

    fn generations(
        tx: &mut Self::Tx<'_>,
        group: &str,
    ) -> Result<Vec<GenerationRow>, ProjectionError> {
        Ok(tx
            .state
            .generations
            .values()
            .filter(|row| row.group == group)
            .cloned()
            .collect())
    }

    fn put_generation(tx: &mut Self::Tx<'_>, row: &GenerationRow) -> Result<(), ProjectionError> {
        tx.state
            .generations
            .insert((row.group.clone(), row.generation), row.clone());
        Ok(())
    }

    fn record_effect(tx: &mut Self::Tx<'_>, effect: &Effect) -> Result<bool, ProjectionError> {
        if tx.state.outbox.contains_key(&effect.key) {
            return Ok(false);
        }
        tx.state.outbox.insert(effect.key.clone(), effect.clone());
        Ok(true)
    }

    fn effects(
        tx: &mut Self::Tx<'_>,
        state: Option<EffectState>,
        limit: u32,
    ) -> Result<Vec<Effect>, ProjectionError> {
        let mut effects: Vec<Effect> = tx
            .state
            .outbox
            .values()
            .filter(|effect| state.is_none_or(|state| effect.state == state))
            .cloned()
            .collect();
        effects.sort_by(|a, b| (a.position, &a.key).cmp(&(b.position, &b.key)));
        effects.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(effects)
    }

    fn finish_effect(
        tx: &mut Self::Tx<'_>,
        key: &str,
        state: EffectState,
        attempts: u32,
        last_error: Option<&str>,
    ) -> Result<(), ProjectionError> {
        if let Some(effect) = tx.state.outbox.get_mut(key) {
            effect.state = state;
            effect.attempts = attempts;
            effect.last_error = last_error.map(str::to_string);
        }
        Ok(())
    }

    fn point_view(
        _tx: &mut Self::Tx<'_>,
        _logical: &str,
        _physical: Option<&str>,
    ) -> Result<(), ProjectionError> {
        // Readers find the live table through the generation rows (`live_table`).
        Ok(())
    }

    fn drop_table(tx: &mut Self::Tx<'_>, physical: &str) -> Result<(), ProjectionError> {
        tx.state.tables.remove(physical);
        Ok(())
    }
}
