//! Feature retrieval: point-in-time correct training sets from the offline store.
//!
//! For each entity row `(key, timestamp)` and each view, the value is the one of
//! the latest snapshot at or before the timestamp and no older than the view's
//! TTL — never a value from the future, null when nothing qualifies. The join is
//! done in memory (sort + binary search per key), so its cost is
//! O((rows + entities) · log rows) whatever a database's planner would estimate.

use std::collections::HashMap;

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

async fn load(
    db: &Db,
    view: &ResolvedView,
    from: Option<NaiveDate>,
    to: NaiveDate,
) -> Result<Indexed, FeatureError> {
    let mut columns = vec![(view.key.clone(), ColumnType::String)];
    columns.extend(view.features.iter().cloned());
    // Only snapshots that can qualify: within the TTL before the earliest point in
    // time, and not after the latest.
    let (dates, batch) = offline::read_table(
        db,
        &view.table,
        &columns,
        (from.and_then(|f| f.checked_sub_signed(view.ttl)), Some(to)),
    )
    .await?;
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
/// one column per feature named `view.feature`.
pub async fn historical(
    db: &Db,
    views: &[ResolvedView],
    entities: &EntityRows,
) -> Result<Batch, FeatureError> {
    let (Some(&from), Some(&to)) = (
        entities.timestamps.iter().min(),
        entities.timestamps.iter().max(),
    ) else {
        // No entity rows: nothing to read; the result still has every column.
        let empty: Vec<Indexed> = views
            .iter()
            .map(|v| Indexed {
                batch: Batch {
                    columns: std::iter::once((v.key.clone(), ColumnType::String))
                        .chain(v.features.iter().cloned())
                        .map(|(n, t)| (n, Column::with_capacity(t, 0)))
                        .collect(),
                    lines: Vec::new(),
                },
                by_key: HashMap::new(),
            })
            .collect();
        return Ok(join(views, &empty, entities));
    };
    let mut loaded = Vec::with_capacity(views.len());
    for view in views {
        loaded.push(load(db, view, Some(from), to).await?);
    }
    Ok(join(views, &loaded, entities))
}

/// Every key present in any of the views at or before `at`, each as of `at`,
/// joined point-in-time: the training set "every user as of a date". Each view's
/// table is read once.
pub async fn historical_as_of(
    db: &Db,
    views: &[ResolvedView],
    at: NaiveDate,
) -> Result<Batch, FeatureError> {
    let mut loaded = Vec::with_capacity(views.len());
    for view in views {
        // Every snapshot up to `at`: an entity known then is listed even when its
        // values have expired (they come out null).
        loaded.push(load(db, view, None, at).await?);
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
    Ok(join(views, &loaded, &entities))
}

fn join(views: &[ResolvedView], loaded: &[Indexed], entities: &EntityRows) -> Batch {
    let n = entities.keys.len();
    let key_name = views.first().map_or("key".to_string(), |v| v.key.clone());
    let mut out = Batch {
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
    };
    for (view, data) in views.iter().zip(loaded) {
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
        for (fi, (feature, _)) in view.features.iter().enumerate() {
            let source = &data.batch.columns[fi + 1].1;
            let column = match source {
                Column::Str(v) => {
                    Column::Str(picks.iter().map(|p| p.and_then(|i| v[i].clone())).collect())
                }
                Column::Int(v) => Column::Int(picks.iter().map(|p| p.and_then(|i| v[i])).collect()),
                Column::Float(v) => {
                    Column::Float(picks.iter().map(|p| p.and_then(|i| v[i])).collect())
                }
                Column::Bool(v) => {
                    Column::Bool(picks.iter().map(|p| p.and_then(|i| v[i])).collect())
                }
                Column::Date(v) => {
                    Column::Date(picks.iter().map(|p| p.and_then(|i| v[i])).collect())
                }
            };
            out.columns
                .push((format!("{}.{feature}", view.name), column));
        }
    }
    out
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
