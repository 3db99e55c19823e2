//! Feature retrieval: point-in-time correct training sets from the offline store.
//!
//! For each entity row `(key, timestamp)` and each view, the value is the one of
//! the latest snapshot at or before the timestamp and no older than the view's
//! TTL — never a value from the future, null when nothing qualifies. The join is
//! done in this process (sort + binary search per key), so its cost is
//! O((rows + entities) · log rows) whatever a database's planner would estimate.
//!
//! A view whose rows would take more than the [`MemoryBudget`] is not loaded
//! whole: its rows are streamed ordered by key and joined in key-ordered
//! chunks of at most the budget, each chunk's values written into the result
//! at its entities' positions. Same values, row for row (tests/scale.rs); the
//! memory held is the result plus one chunk, whatever the table's size.

use std::collections::HashMap;
use std::str::FromStr;

use chrono::NaiveDate;
use thiserror::Error;

use crate::data::{Batch, Column};
use crate::kinds::entity::Entity;
use crate::kinds::feature_view::{FeatureView, FeatureViewSpec, parse_ttl};
use crate::kinds::table::{Table, TableSpec};
use crate::spec::{ColumnType, SpecSet};
use crate::store::{Db, StoreError, offline};

/// Why features could not be retrieved.
#[derive(Debug, Error)]
pub enum FeatureError {
    /// A view name that the specs do not declare.
    #[error("no FeatureView named `{0}`")]
    UnknownView(String),
    /// The specs are inconsistent (validation should have caught it).
    #[error("feature view `{view}`: {message}")]
    Invalid {
        /// The view.
        view: String,
        /// What is wrong.
        message: String,
    },
    /// The offline store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How much memory the point-in-time join may spend on one view's stored rows
/// before it works in key-ordered chunks (`--memory-budget`, e.g. `512MiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBudget(pub u64);

impl MemoryBudget {
    /// The default: 1 GiB, a fraction of any machine that trains forests on
    /// millions of rows, and more than the example needs (about 3 MB a view).
    pub const DEFAULT: MemoryBudget = MemoryBudget(1 << 30);

    /// Rows of a view that fit, by [`MemoryBudget::bytes_per_row`] (at least one).
    pub fn rows(self, view: &ResolvedView) -> u64 {
        (self.0 / bytes_per_row(view)).max(1)
    }
}

impl Default for MemoryBudget {
    fn default() -> Self {
        MemoryBudget::DEFAULT
    }
}

impl FromStr for MemoryBudget {
    type Err = String;
    /// Sizes as bytesize reads them: `1GiB`, `512 MiB`, `64MB`, `1000000`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let size = bytesize::ByteSize::from_str(s.trim())
            .map_err(|e| format!("`{s}` is not a size such as 512MiB or 2GiB: {e}"))?;
        if size.as_u64() == 0 {
            return Err("the memory budget must be more than 0 bytes".into());
        }
        Ok(MemoryBudget(size.as_u64()))
    }
}

impl std::fmt::Display for MemoryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", bytesize::ByteSize(self.0).display().iec())
    }
}

/// What one stored row of a view costs held in memory, estimated: its date,
/// its key (a string of about 16 bytes, in the batch and in the index), its
/// index entry and hash-map share, and 24 bytes a feature (an `Option` of a
/// number, or a string's header; short strings' heap counted in).
fn bytes_per_row(view: &ResolvedView) -> u64 {
    const ROW: u64 = 4 + 40 + 16 + 48;
    ROW + 32 * view.features.len() as u64
}

/// A feature view resolved against its table and entity.
#[derive(Debug, Clone)]
pub struct ResolvedView {
    /// View name.
    pub name: String,
    /// Table the features come from.
    pub table: String,
    /// The entity's join key (single-key entities).
    pub key: String,
    /// Features and their declared types.
    pub features: Vec<(String, ColumnType)>,
    /// Validity of a snapshot.
    pub ttl: chrono::Duration,
}

/// Resolves a view of the specs.
pub fn resolve(set: &SpecSet, name: &str) -> Result<ResolvedView, FeatureError> {
    let Some(v) = set.spec::<FeatureView>(name) else {
        return Err(FeatureError::UnknownView(name.to_string()));
    };
    let invalid = |message: String| FeatureError::Invalid {
        view: name.to_string(),
        message,
    };
    let Some(t) = set.spec::<Table>(&v.table.value) else {
        return Err(invalid(format!("no table `{}`", v.table.value)));
    };
    let Some(e) = set.spec::<Entity>(&v.entity.value) else {
        return Err(invalid(format!("no entity `{}`", v.entity.value)));
    };
    let [key] = e.join_keys.as_slice() else {
        return Err(invalid(
            "entities with several join keys are not supported yet".into(),
        ));
    };
    let features = feature_types(v, t)?;
    let ttl =
        parse_ttl(&v.ttl.value).ok_or_else(|| invalid(format!("bad ttl `{}`", v.ttl.value)))?;
    Ok(ResolvedView {
        name: name.to_string(),
        table: t.name.value.clone(),
        key: key.value.clone(),
        features,
        ttl,
    })
}

fn feature_types(
    v: &FeatureViewSpec,
    t: &TableSpec,
) -> Result<Vec<(String, ColumnType)>, FeatureError> {
    v.features
        .iter()
        .map(|f| {
            t.columns
                .get(&f.value)
                .map(|ty| (f.value.clone(), *ty))
                .ok_or_else(|| FeatureError::Invalid {
                    view: v.name.value.clone(),
                    message: format!("table has no column `{}`", f.value),
                })
        })
        .collect()
}

/// Entity rows to build features for: keys with the time each row is "as of".
#[derive(Debug, Clone, Default)]
pub struct EntityRows {
    /// Join key values.
    pub keys: Vec<String>,
    /// The point in time of each row.
    pub timestamps: Vec<NaiveDate>,
}

/// One view's stored values, indexed for as-of lookups.
struct Indexed {
    batch: Batch,
    /// Per key: (as_of, row) sorted by as_of.
    by_key: HashMap<String, Vec<(NaiveDate, usize)>>,
}

/// The key column, then the features: what a view reads of its table.
fn view_read_columns(view: &ResolvedView) -> Vec<(String, ColumnType)> {
    let mut columns = vec![(view.key.clone(), ColumnType::String)];
    columns.extend(view.features.iter().cloned());
    columns
}

/// Every stored row of a view between `bounds` (dates, inclusive), indexed.
async fn load(
    db: &Db,
    view: &ResolvedView,
    bounds: (Option<NaiveDate>, Option<NaiveDate>),
) -> Result<Indexed, FeatureError> {
    let (dates, batch) =
        offline::read_table(db, &view.table, &view_read_columns(view), bounds).await?;
    index(view, batch, &dates)
}

/// Indexes rows (key first) by key, each key's rows sorted by date.
fn index(view: &ResolvedView, batch: Batch, dates: &[NaiveDate]) -> Result<Indexed, FeatureError> {
    let Some((_, Column::Str(keys))) = batch.columns.first() else {
        return Err(FeatureError::Invalid {
            view: view.name.clone(),
            message: format!("join key `{}` is not a text column", view.key),
        });
    };
    let mut by_key: HashMap<String, Vec<(NaiveDate, usize)>> = HashMap::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate() {
        if let Some(k) = k {
            by_key.entry(k.clone()).or_default().push((dates[i], i));
        }
    }
    for rows in by_key.values_mut() {
        rows.sort_unstable();
    }
    Ok(Indexed { batch, by_key })
}

/// The row of the latest snapshot at or before `at` and within `ttl`.
fn as_of_row(rows: &[(NaiveDate, usize)], at: NaiveDate, ttl: chrono::Duration) -> Option<usize> {
    let idx = rows.partition_point(|(d, _)| *d <= at);
    let (date, row) = *rows.get(idx.checked_sub(1)?)?;
    (at - date <= ttl).then_some(row)
}

/// Builds the point-in-time feature table: the entity key, its timestamp, then
/// one column per feature named `view.feature`. Within the default budget.
pub async fn historical(
    db: &Db,
    views: &[ResolvedView],
    entities: &EntityRows,
) -> Result<Batch, FeatureError> {
    historical_within(db, views, entities, MemoryBudget::DEFAULT).await
}

/// As [`historical`]: each view loaded whole when its rows fit `budget`,
/// joined in key-ordered chunks when they do not.
pub async fn historical_within(
    db: &Db,
    views: &[ResolvedView],
    entities: &EntityRows,
    budget: MemoryBudget,
) -> Result<Batch, FeatureError> {
    let mut out = entity_columns(views, entities);
    let (Some(&from), Some(&to)) = (
        entities.timestamps.iter().min(),
        entities.timestamps.iter().max(),
    ) else {
        // No entity rows: nothing to read; the result still has every column.
        for v in views {
            for (feature, ty) in &v.features {
                out.columns.push((
                    format!("{}.{feature}", v.name),
                    Column::with_capacity(*ty, 0),
                ));
            }
        }
        return Ok(out);
    };
    // The positions of each key's entity rows, built once for chunked views.
    let mut positions: Option<HashMap<&str, Vec<usize>>> = None;
    for view in views {
        // Only snapshots that can qualify: within the TTL before the earliest
        // point in time, and not after the latest.
        let bounds = (from.checked_sub_signed(view.ttl), Some(to));
        let stored = offline::rows_between(db, &view.table, bounds).await?;
        if stored as u64 <= budget.rows(view) {
            let data = load(db, view, bounds).await?;
            out.columns.extend(view_columns(view, &data, entities));
        } else {
            let positions = positions.get_or_insert_with(|| {
                let mut m: HashMap<&str, Vec<usize>> = HashMap::with_capacity(entities.keys.len());
                for (i, k) in entities.keys.iter().enumerate() {
                    m.entry(k.as_str()).or_default().push(i);
                }
                m
            });
            let columns = chunked_view(db, view, bounds, entities, positions, budget).await?;
            out.columns.extend(columns);
        }
    }
    Ok(out)
}

/// Every key present in any of the views at or before `at`, each as of `at`,
/// joined point-in-time: the training set "every user as of a date". Each view's
/// table is read once. Within the default budget.
pub async fn historical_as_of(
    db: &Db,
    views: &[ResolvedView],
    at: NaiveDate,
) -> Result<Batch, FeatureError> {
    historical_as_of_within(db, views, at, MemoryBudget::DEFAULT).await
}

/// As [`historical_as_of`], within `budget`: when every view fits, each table
/// is read once; otherwise the keys are read first (one `DISTINCT` query a
/// view) and the join is [`historical_within`]'s, chunked where needed.
pub async fn historical_as_of_within(
    db: &Db,
    views: &[ResolvedView],
    at: NaiveDate,
    budget: MemoryBudget,
) -> Result<Batch, FeatureError> {
    let mut fits = true;
    for view in views {
        let stored = offline::rows_between(db, &view.table, (None, Some(at))).await?;
        fits &= stored as u64 <= budget.rows(view);
    }
    if !fits {
        let mut keys = std::collections::BTreeSet::new();
        for view in views {
            keys.extend(offline::distinct_keys(db, &view.table, &view.key, at).await?);
        }
        let entities = EntityRows {
            timestamps: vec![at; keys.len()],
            keys: keys.into_iter().collect(),
        };
        return historical_within(db, views, &entities, budget).await;
    }
    let mut loaded = Vec::with_capacity(views.len());
    for view in views {
        // Every snapshot up to `at`: an entity known then is listed even when its
        // values have expired (they come out null).
        loaded.push(load(db, view, (None, Some(at))).await?);
    }
    let mut keys = std::collections::BTreeSet::new();
    for data in &loaded {
        for (k, rows) in &data.by_key {
            if rows.first().is_some_and(|(d, _)| *d <= at) {
                keys.insert(k.as_str());
            }
        }
    }
    let entities = EntityRows {
        timestamps: vec![at; keys.len()],
        keys: keys.into_iter().map(str::to_string).collect(),
    };
    let mut out = entity_columns(views, &entities);
    for (view, data) in views.iter().zip(&loaded) {
        out.columns.extend(view_columns(view, data, &entities));
    }
    Ok(out)
}

/// The key and timestamp columns of the result.
fn entity_columns(views: &[ResolvedView], entities: &EntityRows) -> Batch {
    let n = entities.keys.len();
    let key_name = views.first().map_or("key".to_string(), |v| v.key.clone());
    Batch {
        columns: vec![
            (
                key_name,
                Column::Str(entities.keys.iter().cloned().map(Some).collect()),
            ),
            (
                "as_of".to_string(),
                Column::Date(entities.timestamps.iter().copied().map(Some).collect()),
            ),
        ],
        lines: (1..=n as u64).collect(),
    }
}

/// One view's feature columns for every entity row, from its loaded rows.
fn view_columns(
    view: &ResolvedView,
    data: &Indexed,
    entities: &EntityRows,
) -> Vec<(String, Column)> {
    let picks: Vec<Option<usize>> = entities
        .keys
        .iter()
        .zip(&entities.timestamps)
        .map(|(k, at)| {
            data.by_key
                .get(k)
                .and_then(|rows| as_of_row(rows, *at, view.ttl))
        })
        .collect();
    let mut out = Vec::with_capacity(view.features.len());
    for (fi, (feature, _)) in view.features.iter().enumerate() {
        let source = &data.batch.columns[fi + 1].1;
        let column = match source {
            Column::Str(v) => {
                Column::Str(picks.iter().map(|p| p.and_then(|i| v[i].clone())).collect())
            }
            Column::Int(v) => Column::Int(picks.iter().map(|p| p.and_then(|i| v[i])).collect()),
            Column::Float(v) => Column::Float(picks.iter().map(|p| p.and_then(|i| v[i])).collect()),
            Column::Bool(v) => Column::Bool(picks.iter().map(|p| p.and_then(|i| v[i])).collect()),
            Column::Date(v) => Column::Date(picks.iter().map(|p| p.and_then(|i| v[i])).collect()),
        };
        out.push((format!("{}.{feature}", view.name), column));
    }
    out
}

/// One view's feature columns for every entity row, its stored rows streamed
/// in key order and joined a chunk (at most `budget`, whole keys) at a time.
async fn chunked_view(
    db: &Db,
    view: &ResolvedView,
    bounds: (Option<NaiveDate>, Option<NaiveDate>),
    entities: &EntityRows,
    positions: &HashMap<&str, Vec<usize>>,
    budget: MemoryBudget,
) -> Result<Vec<(String, Column)>, FeatureError> {
    let n = entities.keys.len();
    let mut columns: Vec<Column> = view.features.iter().map(|(_, ty)| nulls(*ty, n)).collect();
    let chunk_rows = usize::try_from(budget.rows(view)).unwrap_or(usize::MAX);
    let mut join = |dates: Vec<NaiveDate>, batch: Batch| -> Result<(), FeatureError> {
        let data = index(view, batch, &dates)?;
        for (key, rows) in &data.by_key {
            let Some(at) = positions.get(key.as_str()) else {
                continue;
            };
            for &p in at {
                if let Some(i) = as_of_row(rows, entities.timestamps[p], view.ttl) {
                    for (fi, column) in columns.iter_mut().enumerate() {
                        set_from(column, p, &data.batch.columns[fi + 1].1, i);
                    }
                }
            }
        }
        Ok(())
    };
    offline::read_table_by_key(
        db,
        &view.table,
        &view_read_columns(view),
        bounds,
        offline::KeyRows::All,
        chunk_rows,
        |dates, batch| std::future::ready(join(dates, batch)),
    )
    .await?;
    Ok(view
        .features
        .iter()
        .map(|(f, _)| format!("{}.{f}", view.name))
        .zip(columns)
        .collect())
}

/// `n` nulls of a type.
fn nulls(ty: ColumnType, n: usize) -> Column {
    match ty {
        ColumnType::String => Column::Str(vec![None; n]),
        ColumnType::Int => Column::Int(vec![None; n]),
        ColumnType::Float => Column::Float(vec![None; n]),
        ColumnType::Bool => Column::Bool(vec![None; n]),
        ColumnType::Date => Column::Date(vec![None; n]),
    }
}

/// `dst[p] = src[i]` (both of the view's declared type).
fn set_from(dst: &mut Column, p: usize, src: &Column, i: usize) {
    match (dst, src) {
        (Column::Str(d), Column::Str(s)) => d[p].clone_from(&s[i]),
        (Column::Int(d), Column::Int(s)) => d[p] = s[i],
        (Column::Float(d), Column::Float(s)) => d[p] = s[i],
        (Column::Bool(d), Column::Bool(s)) => d[p] = s[i],
        (Column::Date(d), Column::Date(s)) => d[p] = s[i],
        _ => {}
    }
}

/// Writes a batch as CSV (booleans `True`/`False`, nulls empty).
pub fn write_csv(batch: &Batch, out: impl std::io::Write) -> std::io::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(batch.columns.iter().map(|(n, _)| n.as_str()))?;
    for i in 0..batch.rows() {
        w.write_record(batch.columns.iter().map(|(_, c)| {
            if c.is_null(i) {
                String::new()
            } else {
                c.display(i)
            }
        }))?;
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn as_of_never_looks_ahead_and_respects_ttl() {
        let rows = vec![(d("2024-01-31"), 0), (d("2024-02-29"), 1)];
        let ttl = chrono::Duration::days(30);
        assert_eq!(
            as_of_row(&rows, d("2024-01-30"), ttl),
            None,
            "before the first snapshot"
        );
        assert_eq!(
            as_of_row(&rows, d("2024-01-31"), ttl),
            Some(0),
            "at the snapshot"
        );
        assert_eq!(
            as_of_row(&rows, d("2024-02-28"), ttl),
            Some(0),
            "between: the earlier one"
        );
        assert_eq!(as_of_row(&rows, d("2024-02-29"), ttl), Some(1));
        assert_eq!(
            as_of_row(&rows, d("2024-03-30"), ttl),
            Some(1),
            "30 days later, within ttl"
        );
        assert_eq!(
            as_of_row(&rows, d("2024-03-31"), ttl),
            None,
            "31 days later, expired"
        );
    }
}
