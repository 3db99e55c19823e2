//! Typed feature columns → a numeric matrix, by declared rules rather than
//! guesses: numbers as they are, booleans 0/1, dates as days since 1970-01-01,
//! strings one-hot (a null is a category of its own), and nulls in the other
//! types as the run's [`NullPolicy`] says.
//!
//! Everything learned (means, categories) is learned from the training rows only
//! and kept in the [`Encoder`], which travels inside the model artifact so the
//! endpoint encodes a request exactly as training did.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::data::{Batch, Column};
use crate::kinds::training_run::spec::NullPolicy;
use crate::spec::ColumnType;

/// Why a training set could not be encoded.
#[derive(Debug, Error, PartialEq)]
pub enum EncodeError {
    /// `nulls: fail` and a feature has nulls.
    #[error(
        "feature `{feature}` has {count} null value(s) and the run says `nulls: fail`; declare `nulls: indicator`, `mean` or `zero`, or add a notNull expectation to its table"
    )]
    Nulls {
        /// The feature.
        feature: String,
        /// How many.
        count: usize,
    },
    /// A request lacks a feature the model was trained on.
    #[error("feature `{0}` is missing")]
    Missing(String),
    /// A request's value has the wrong type.
    #[error("feature `{feature}` should be {expected}, got {got}")]
    WrongType {
        /// The feature.
        feature: String,
        /// Its declared type.
        expected: &'static str,
        /// What came.
        got: String,
    },
}

/// How one input feature becomes encoded columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Rule {
    /// One column; nulls become `fill`, plus a 0/1 missing column when `indicator`.
    Numeric {
        /// Value used for nulls.
        fill: f64,
        /// Add a `feature__missing` column.
        indicator: bool,
    },
    /// One 0/1 column per training category (sorted), plus one for null when
    /// the training rows had nulls; an unseen value sets none of them.
    OneHot {
        /// Categories seen in training.
        categories: Vec<String>,
        /// Add a `feature=∅` column.
        null_column: bool,
    },
}

/// One input feature and its rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputFeature {
    /// `view.feature`.
    pub name: String,
    /// Declared type.
    pub ty: ColumnType,
    /// How it is encoded.
    pub rule: Rule,
}

/// The learned encoding of a run's features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Encoder {
    /// Input features in order.
    pub inputs: Vec<InputFeature>,
    /// Names of the encoded columns, in matrix order.
    pub columns: Vec<String>,
}

/// A single value of a feature, as the endpoint receives it from the online
/// store; text is borrowed, so encoding a served row copies no string.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// Null or absent.
    Null,
    /// A number (ints, floats, dates as days).
    Number(f64),
    /// A boolean.
    Bool(bool),
    /// Text.
    Text(&'a str),
}

fn numeric(c: &Column, i: usize) -> Option<f64> {
    match c {
        Column::Int(v) => v[i].map(|x| x as f64),
        Column::Float(v) => v[i],
        Column::Bool(v) => v[i].map(|b| f64::from(u8::from(b))),
        Column::Date(v) => v[i].map(days),
        Column::Str(_) => None,
    }
}

fn days(d: chrono::NaiveDate) -> f64 {
    f64::from(
        d.signed_duration_since(chrono::NaiveDate::default())
            .num_days() as i32,
    )
}

impl Encoder {
    /// Learns the encoding of `columns` (name, column) from the rows `train`.
    pub fn fit(
        columns: &[(String, Column)],
        types: &[ColumnType],
        train: &[usize],
        nulls: NullPolicy,
    ) -> Result<Encoder, EncodeError> {
        let mut inputs = Vec::with_capacity(columns.len());
        let mut names = Vec::new();
        for ((name, column), ty) in columns.iter().zip(types) {
            let null_count = train.iter().filter(|&&i| column.is_null(i)).count();
            let rule = if let Column::Str(values) = column {
                let mut categories: Vec<String> =
                    train.iter().filter_map(|&i| values[i].clone()).collect();
                categories.sort_unstable();
                categories.dedup();
                Rule::OneHot {
                    categories,
                    null_column: null_count > 0,
                }
            } else {
                if null_count > 0 && nulls == NullPolicy::Fail {
                    return Err(EncodeError::Nulls {
                        feature: name.clone(),
                        count: null_count,
                    });
                }
                let (sum, n) = train
                    .iter()
                    .filter_map(|&i| numeric(column, i))
                    .fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
                let mean = if n == 0 { 0.0 } else { sum / n as f64 };
                Rule::Numeric {
                    fill: if nulls == NullPolicy::Zero { 0.0 } else { mean },
                    indicator: nulls == NullPolicy::Indicator && null_count > 0,
                }
            };
            match &rule {
                Rule::Numeric { indicator, .. } => {
                    names.push(name.clone());
                    if *indicator {
                        names.push(format!("{name}__missing"));
                    }
                }
                Rule::OneHot {
                    categories,
                    null_column,
                } => {
                    names.extend(categories.iter().map(|c| format!("{name}={c}")));
                    if *null_column {
                        names.push(format!("{name}=∅"));
                    }
                }
            }
            inputs.push(InputFeature {
                name: name.clone(),
                ty: *ty,
                rule,
            });
        }
        Ok(Encoder {
            inputs,
            columns: names,
        })
    }

    /// Number of encoded columns.
    pub fn width(&self) -> usize {
        self.columns.len()
    }

    /// Encodes rows `rows` of a batch holding the input features (by name),
    /// row-major.
    pub fn encode_batch(&self, batch: &Batch, rows: &[usize]) -> Result<Vec<f64>, EncodeError> {
        let cols: Vec<&Column> = self
            .inputs
            .iter()
            .map(|f| {
                batch
                    .column(&f.name)
                    .ok_or_else(|| EncodeError::Missing(f.name.clone()))
            })
            .collect::<Result<_, _>>()?;
        let width = self.width();
        let mut out = vec![0.0; rows.len() * width];
        for (r, &i) in rows.iter().enumerate() {
            let row = &mut out[r * width..(r + 1) * width];
            let mut at = 0;
            for (f, c) in self.inputs.iter().zip(&cols) {
                let value = match c {
                    Column::Str(v) => v[i].as_deref().map_or(Value::Null, Value::Text),
                    other => numeric(other, i).map_or(Value::Null, Value::Number),
                };
                at += write(f, &value, &mut row[at..]);
            }
        }
        Ok(out)
    }

    /// Encodes one row given as values in input order (the serving path).
    pub fn encode_values(&self, values: &[Value<'_>], out: &mut [f64]) -> Result<(), EncodeError> {
        let mut at = 0;
        for (f, v) in self.inputs.iter().zip(values) {
            at += Encoder::encode_input(f, *v, &mut out[at..])?;
        }
        Ok(())
    }

    /// Encodes the value of one input feature into the start of `out` (checked
    /// against its declared type); returns how many columns it wrote. The
    /// serving path calls it input by input, so no row of values is built.
    pub fn encode_input(
        f: &InputFeature,
        v: Value<'_>,
        out: &mut [f64],
    ) -> Result<usize, EncodeError> {
        let v = match (f.ty, v) {
            (_, Value::Null) => Value::Null,
            (ColumnType::String, Value::Text(_)) => v,
            (ColumnType::Bool, Value::Bool(b)) => Value::Number(f64::from(u8::from(b))),
            (ColumnType::Int | ColumnType::Float, Value::Number(_)) => v,
            (ColumnType::Date, Value::Text(s)) => {
                match chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                    Ok(d) => Value::Number(days(d)),
                    Err(_) => {
                        return Err(EncodeError::WrongType {
                            feature: f.name.clone(),
                            expected: "date",
                            got: s.to_string(),
                        });
                    }
                }
            }
            (ty, other) => {
                return Err(EncodeError::WrongType {
                    feature: f.name.clone(),
                    expected: ty.as_str(),
                    got: format!("{other:?}"),
                });
            }
        };
        Ok(write(f, &v, out))
    }
}

/// Writes one feature's encoded columns; returns how many.
fn write(f: &InputFeature, value: &Value<'_>, out: &mut [f64]) -> usize {
    match &f.rule {
        Rule::Numeric { fill, indicator } => {
            let x = match value {
                Value::Number(x) => Some(*x),
                Value::Bool(b) => Some(f64::from(u8::from(*b))),
                _ => None,
            };
            out[0] = x.unwrap_or(*fill);
            if *indicator {
                out[1] = if x.is_none() { 1.0 } else { 0.0 };
                2
            } else {
                1
            }
        }
        Rule::OneHot {
            categories,
            null_column,
        } => {
            let n = categories.len() + usize::from(*null_column);
            out[..n].fill(0.0);
            match value {
                Value::Text(s) => {
                    if let Ok(k) = categories.binary_search_by(|c| c.as_str().cmp(s)) {
                        out[k] = 1.0;
                    }
                }
                _ if *null_column => out[categories.len()] = 1.0,
                _ => {}
            }
            n
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<(String, Column)> {
        vec![
            (
                "v.fee".into(),
                Column::Float(vec![Some(10.0), None, Some(30.0)]),
            ),
            (
                "v.tv".into(),
                Column::Bool(vec![Some(true), None, Some(false)]),
            ),
            (
                "v.net".into(),
                Column::Str(vec![Some("DSL".into()), Some("No".into()), None]),
            ),
        ]
    }

    const TYPES: [ColumnType; 3] = [ColumnType::Float, ColumnType::Bool, ColumnType::String];

    #[test]
    fn indicator_policy_fills_means_and_flags_nulls() {
        let c = cols();
        let e = Encoder::fit(&c, &TYPES, &[0, 1, 2], NullPolicy::Indicator).unwrap();
        assert_eq!(
            e.columns,
            [
                "v.fee",
                "v.fee__missing",
                "v.tv",
                "v.tv__missing",
                "v.net=DSL",
                "v.net=No",
                "v.net=∅"
            ]
        );
        let batch = Batch {
            columns: c,
            lines: vec![1, 2, 3],
        };
        let x = e.encode_batch(&batch, &[1]).unwrap();
        assert_eq!(x, [20.0, 1.0, 0.5, 1.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn statistics_come_from_training_rows_only() {
        let c = cols();
        let e = Encoder::fit(&c, &TYPES, &[0], NullPolicy::Mean).unwrap();
        assert_eq!(
            e.inputs[0].rule,
            Rule::Numeric {
                fill: 10.0,
                indicator: false
            }
        );
        // `No` was not seen in training: encodes as no category at all.
        let batch = Batch {
            columns: c,
            lines: vec![1, 2, 3],
        };
        assert_eq!(e.encode_batch(&batch, &[1]).unwrap(), [10.0, 1.0, 0.0]);
    }

    #[test]
    fn fail_policy_names_the_feature() {
        let err = Encoder::fit(&cols(), &TYPES, &[0, 1, 2], NullPolicy::Fail).unwrap_err();
        assert_eq!(
            err,
            EncodeError::Nulls {
                feature: "v.fee".into(),
                count: 1
            }
        );
    }

    #[test]
    fn serving_values_encode_like_training_rows() {
        let c = cols();
        let e = Encoder::fit(&c, &TYPES, &[0, 1, 2], NullPolicy::Indicator).unwrap();
        let batch = Batch {
            columns: c,
            lines: vec![1, 2, 3],
        };
        let want = e.encode_batch(&batch, &[0]).unwrap();
        let mut got = vec![0.0; e.width()];
        e.encode_values(
            &[Value::Number(10.0), Value::Bool(true), Value::Text("DSL")],
            &mut got,
        )
        .unwrap();
        assert_eq!(got, want);
        let err = e
            .encode_values(&[Value::Text("x"), Value::Null, Value::Null], &mut got)
            .unwrap_err();
        assert!(matches!(err, EncodeError::WrongType { .. }));
    }
}
