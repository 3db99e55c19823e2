//! Expectations checked on a parsed snapshot before anything is stored.
//!
//! The primary key implies `notNull` and `unique` on its columns. A report lists
//! each failing expectation with how many rows failed and a few of them, by CSV line.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::Serialize;

use super::spec::{Expectation, TableSpec};
use crate::data::{Batch, KeyPart};

/// How many offending rows a failure shows.
pub const SAMPLES: usize = 5;

/// One expectation that did not hold.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// Which expectation, e.g. `between(months_active)`.
    pub expectation: String,
    /// What it requires, in words.
    pub requirement: String,
    /// Rows that broke it (0 for table-level checks such as rowCount).
    pub failed_rows: usize,
    /// A few offending rows: CSV line and the value seen.
    pub samples: Vec<(u64, String)>,
}

/// The outcome of validating one snapshot.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Rows checked.
    pub rows: usize,
    /// Failures; empty means valid.
    pub failures: Vec<Failure>,
}

impl Report {
    /// True when every expectation holds.
    pub fn is_valid(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for fl in &self.failures {
            write!(f, "  ✗ {} — {}", fl.expectation, fl.requirement)?;
            if fl.failed_rows > 0 {
                write!(f, ": {} of {} rows fail", fl.failed_rows, self.rows)?;
            }
            writeln!(f)?;
            for (line, value) in &fl.samples {
                writeln!(f, "      line {line}: {value}")?;
            }
        }
        Ok(())
    }
}

/// Checks every expectation of `spec` (and its primary key) against `batch`.
pub fn check(spec: &TableSpec, batch: &Batch) -> Report {
    let mut report = Report {
        rows: batch.rows(),
        failures: Vec::new(),
    };
    let pk: Vec<String> = spec.primary_key.iter().map(|s| s.value.clone()).collect();
    let mut rules: Vec<(String, Rule)> = vec![
        (
            format!("primaryKey({})", pk.join(", ")),
            Rule::NotNull(pk.clone()),
        ),
        (format!("primaryKey({})", pk.join(", ")), Rule::Unique(pk)),
    ];
    for e in &spec.expect {
        let cols =
            |v: &[crate::spec::SpannedStr]| v.iter().map(|s| s.value.clone()).collect::<Vec<_>>();
        let rule = match e {
            Expectation::NotNull(c) => Rule::NotNull(cols(c)),
            Expectation::Unique(c) => Rule::Unique(cols(c)),
            Expectation::NotConstant(c) => Rule::NotConstant(cols(c)),
            Expectation::Between(b) => Rule::Between(b.column.value.clone(), b.min, b.max),
            Expectation::InSet(s) => {
                Rule::InSet(s.column.value.clone(), s.values.iter().cloned().collect())
            }
            Expectation::Regex(r) => match regex::Regex::new(&r.pattern.value) {
                Ok(rx) => Rule::Regex(r.column.value.clone(), rx),
                Err(_) => continue, // validation rejects invalid patterns earlier
            },
            Expectation::RowCount(rc) => Rule::RowCount(rc.min, rc.max),
            Expectation::ExactColumns(_) => continue, // checked while reading the header
        };
        rules.push((e.label(), rule));
    }
    let mut checked_unique: Vec<Vec<String>> = Vec::new();
    for (label, rule) in rules {
        if let Rule::Unique(cols) = &rule {
            // The primary key already implies uniqueness; do not hash the same key twice.
            if checked_unique.contains(cols) {
                continue;
            }
            checked_unique.push(cols.clone());
        }
        if let Some(f) = rule.check(&label, batch) {
            report.failures.push(f);
        }
    }
    report
}

enum Rule {
    NotNull(Vec<String>),
    Unique(Vec<String>),
    NotConstant(Vec<String>),
    Between(String, Option<f64>, Option<f64>),
    InSet(String, HashSet<String>),
    Regex(String, regex::Regex),
    RowCount(Option<u64>, Option<u64>),
}

impl Rule {
    fn check(&self, label: &str, b: &Batch) -> Option<Failure> {
        let fail = |requirement: String, rows: Vec<(u64, String)>, count: usize| {
            (count > 0).then(|| Failure {
                expectation: label.to_string(),
                requirement,
                failed_rows: count,
                samples: rows,
            })
        };
        match self {
            Rule::NotNull(cols) => {
                let mut samples = Vec::new();
                let mut count = 0;
                for name in cols {
                    let Some(col) = b.column(name) else { continue };
                    for i in 0..b.rows() {
                        if col.is_null(i) {
                            count += 1;
                            if samples.len() < SAMPLES {
                                samples.push((b.lines[i], format!("{name} is empty")));
                            }
                        }
                    }
                }
                fail(
                    format!("no empty values in {}", cols.join(", ")),
                    samples,
                    count,
                )
            }
            Rule::Unique(cols) => {
                let columns: Vec<_> = cols.iter().filter_map(|c| b.column(c)).collect();
                if let [crate::data::Column::Str(values)] = columns.as_slice() {
                    // The common case (a text key): hash borrowed strings, clone nothing.
                    let mut first_seen: HashMap<&str, u64> = HashMap::with_capacity(values.len());
                    let (mut samples, mut count) = (Vec::new(), 0);
                    for (i, v) in values.iter().enumerate() {
                        let Some(v) = v else { continue };
                        match first_seen.get(v.as_str()) {
                            Some(first) => {
                                count += 1;
                                if samples.len() < SAMPLES {
                                    samples
                                        .push((b.lines[i], format!("{v} (first at line {first})")));
                                }
                            }
                            None => {
                                first_seen.insert(v, b.lines[i]);
                            }
                        }
                    }
                    return fail(
                        format!("each value of ({}) appears once", cols.join(", ")),
                        samples,
                        count,
                    );
                }
                let mut first_seen: HashMap<Vec<Option<KeyPart>>, u64> =
                    HashMap::with_capacity(b.rows());
                let mut samples = Vec::new();
                let mut count = 0;
                for i in 0..b.rows() {
                    let key: Vec<Option<KeyPart>> = columns.iter().map(|c| c.key(i)).collect();
                    if key.iter().any(Option::is_none) {
                        continue; // nulls are notNull's business
                    }
                    if let Some(first) = first_seen.get(&key) {
                        count += 1;
                        if samples.len() < SAMPLES {
                            let shown: Vec<String> = columns.iter().map(|c| c.display(i)).collect();
                            samples.push((
                                b.lines[i],
                                format!("{} (first at line {first})", shown.join(", ")),
                            ));
                        }
                    } else {
                        first_seen.insert(key, b.lines[i]);
                    }
                }
                fail(
                    format!("each value of ({}) appears once", cols.join(", ")),
                    samples,
                    count,
                )
            }
            Rule::NotConstant(cols) => {
                let mut constant = Vec::new();
                for name in cols {
                    let Some(col) = b.column(name) else { continue };
                    let mut distinct = HashSet::new();
                    for i in 0..b.rows() {
                        if let Some(k) = col.key(i) {
                            distinct.insert(k);
                            if distinct.len() > 1 {
                                break;
                            }
                        }
                    }
                    if distinct.len() <= 1 {
                        let v = (0..b.rows())
                            .find(|&i| !col.is_null(i))
                            .map_or("NULL".into(), |i| col.display(i));
                        constant.push((0, format!("{name} is always {v}")));
                    }
                }
                let n = constant.len();
                (n > 0).then(|| Failure {
                    expectation: label.to_string(),
                    requirement: "at least two distinct values".into(),
                    failed_rows: 0,
                    samples: constant,
                })
            }
            Rule::Between(name, min, max) => {
                let col = b.column(name)?;
                let mut samples = Vec::new();
                let mut count = 0;
                for i in 0..b.rows() {
                    if let Some(x) = col.as_f64(i)
                        && (min.is_some_and(|m| x < m) || max.is_some_and(|m| x > m))
                    {
                        count += 1;
                        if samples.len() < SAMPLES {
                            samples.push((b.lines[i], format!("{name} = {}", col.display(i))));
                        }
                    }
                }
                let bounds = match (min, max) {
                    (Some(a), Some(z)) => format!("between {a} and {z}"),
                    (Some(a), None) => format!("at least {a}"),
                    (None, Some(z)) => format!("at most {z}"),
                    (None, None) => "any value".into(),
                };
                fail(format!("{name} {bounds}"), samples, count)
            }
            Rule::InSet(name, set) => {
                let col = b.column(name)?;
                let mut samples = Vec::new();
                let mut count = 0;
                for i in 0..b.rows() {
                    if col.is_null(i) {
                        continue;
                    }
                    let v = col.display(i);
                    if !set.contains(&v) {
                        count += 1;
                        if samples.len() < SAMPLES {
                            samples.push((b.lines[i], format!("{name} = {v:?}")));
                        }
                    }
                }
                let mut allowed: Vec<&String> = set.iter().collect();
                allowed.sort();
                fail(format!("{name} in {allowed:?}"), samples, count)
            }
            Rule::Regex(name, rx) => {
                let col = b.column(name)?;
                let crate::data::Column::Str(values) = col else {
                    return None;
                };
                let mut samples = Vec::new();
                let mut count = 0;
                for (i, v) in values.iter().enumerate() {
                    if let Some(v) = v
                        && !rx.is_match(v)
                    {
                        count += 1;
                        if samples.len() < SAMPLES {
                            samples.push((b.lines[i], format!("{name} = {v:?}")));
                        }
                    }
                }
                fail(format!("{name} matches /{}/", rx.as_str()), samples, count)
            }
            Rule::RowCount(min, max) => {
                let n = b.rows() as u64;
                let bad = min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m);
                bad.then(|| Failure {
                    expectation: label.to_string(),
                    requirement: format!(
                        "row count between {} and {}, got {n}",
                        min.map_or("0".into(), |m| m.to_string()),
                        max.map_or("∞".into(), |m| m.to_string())
                    ),
                    failed_rows: 0,
                    samples: Vec::new(),
                })
            }
        }
    }
}
