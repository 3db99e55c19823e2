//! Training: the validation split, algorithm dispatch, metrics and the model
//! artifact (encoder + estimator) that the registry stores and the endpoint loads.
//!
//! Everything here is deterministic for its inputs: the split and the forest are
//! seeded, the forest's trees are seeded per tree (not per thread), so the same
//! training set and spec give the same artifact bytes on any machine.

use std::time::Instant;

use linfa::prelude::*;
use ndarray::{Array1, Array2, ArrayView2};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::encode::{EncodeError, Encoder};
use super::forest::{ForestError, MaxFeatures, MaxSamples, RandomForest, RandomForestParams};
use super::metrics::{Metrics, evaluate};
use crate::data::Column;
use crate::kinds::training_run::spec::{
    Algorithm, ClassWeight, DEFAULT_MAX_SAMPLES, LogisticSpec, MaxFeaturesName, MaxFeaturesSpec,
    MaxSamplesSpec, NullPolicy, ValidationSpec,
};
use crate::spec::ColumnType;

/// Part of every version's identity: a change to how models are trained or
/// stored changes the identity, so old versions are never mistaken for new ones.
/// 3: a forest's trees draw at most `maxSamples` rows (by default 100 000), so
/// a set past that trains a different model than version 2 did.
pub const TRAINER_VERSION: &str = concat!("reconcile-trainer/3 ", env!("CARGO_PKG_VERSION"));

/// Why training failed.
#[derive(Debug, Error)]
pub enum TrainError {
    /// The training set could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The forest refused its input.
    #[error(transparent)]
    Forest(#[from] ForestError),
    /// linfa's logistic regression failed.
    #[error("logistic regression: {0}")]
    Logistic(String),
    /// Not enough rows of each class to train and validate.
    #[error(
        "the training set has {positives} positive and {negatives} negative label(s); training needs both classes in the training and validation parts"
    )]
    OneClass {
        /// Label 1 rows.
        positives: usize,
        /// Label 0 rows.
        negatives: usize,
    },
    /// The artifact could not be (de)serialized.
    #[error("model artifact: {0}")]
    Artifact(String),
}

/// A point-in-time training set: one row per entity key, features and a 0/1 label.
#[derive(Debug, Clone)]
pub struct TrainingSet {
    /// Entity keys, sorted (the row order is part of the identity).
    pub keys: Vec<String>,
    /// Feature columns named `view.feature`.
    pub columns: Vec<(String, Column)>,
    /// Declared type of each feature.
    pub types: Vec<ColumnType>,
    /// Labels, 0 or 1.
    pub labels: Vec<usize>,
}

impl TrainingSet {
    /// Hash of the set's content: keys, labels and every value with its column
    /// name and type. The training set's bytes, as far as identity is concerned.
    pub fn content_hash(&self) -> String {
        let mut h = blake3::Hasher::new();
        let mut put = |b: &[u8]| {
            h.update(&(b.len() as u64).to_le_bytes());
            h.update(b);
        };
        for k in &self.keys {
            put(k.as_bytes());
        }
        put(&self.labels.iter().map(|&l| l as u8).collect::<Vec<_>>());
        for ((name, column), ty) in self.columns.iter().zip(&self.types) {
            put(name.as_bytes());
            put(ty.as_str().as_bytes());
            for i in 0..column.len() {
                if column.is_null(i) {
                    put(b"\0null");
                } else {
                    put(column.display(i).as_bytes());
                }
            }
        }
        h.finalize().to_hex().to_string()
    }

    /// Rows with label 1.
    pub fn positives(&self) -> usize {
        self.labels.iter().filter(|&&l| l == 1).count()
    }
}

/// The stored model: how to encode features and how to score them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Artifact {
    /// Encoding learned from the training rows.
    pub encoder: Encoder,
    /// The fitted estimator.
    pub estimator: Estimator,
}

/// A fitted estimator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Estimator {
    /// A random forest or a single tree.
    Forest(RandomForest),
    /// Logistic regression on standardised inputs, oriented so that the score is P(label 1).
    Linear {
        /// Per-column mean used to standardise.
        mean: Vec<f64>,
        /// Per-column scale used to standardise.
        scale: Vec<f64>,
        /// Coefficients.
        weights: Vec<f64>,
        /// Intercept (after the class-weight prior correction).
        intercept: f64,
    },
}

impl Artifact {
    /// P(label 1) of each row of a row-major encoded matrix.
    pub fn predict_proba(&self, x: &[f64]) -> Vec<f64> {
        let width = self.encoder.width().max(1);
        match &self.estimator {
            Estimator::Forest(f) => match ArrayView2::from_shape((x.len() / width, width), x) {
                Ok(view) => f.predict_proba(view),
                Err(_) => Vec::new(),
            },
            Estimator::Linear { .. } => x.chunks(width).map(|r| self.predict_row(r)).collect(),
        }
    }

    /// P(label 1) of one encoded row.
    pub fn predict_row(&self, row: &[f64]) -> f64 {
        self.estimator.predict_row(row)
    }

    /// Serialized bytes (postcard): compact and deterministic.
    pub fn to_bytes(&self) -> Result<Vec<u8>, TrainError> {
        postcard::to_stdvec(self).map_err(|e| TrainError::Artifact(e.to_string()))
    }

    /// Reads serialized bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Artifact, TrainError> {
        postcard::from_bytes(bytes).map_err(|e| TrainError::Artifact(e.to_string()))
    }
}

impl Estimator {
    /// P(label 1) of one encoded row.
    pub fn predict_row(&self, row: &[f64]) -> f64 {
        match self {
            Estimator::Forest(f) => f.predict_proba_row(row),
            Estimator::Linear {
                mean,
                scale,
                weights,
                intercept,
            } => {
                let z = row
                    .iter()
                    .zip(mean)
                    .zip(scale)
                    .zip(weights)
                    .fold(*intercept, |z, (((x, m), s), w)| z + (x - m) / s * w);
                1.0 / (1.0 + (-z).exp())
            }
        }
    }
}

/// What a fit produced.
#[derive(Debug, Clone)]
pub struct Trained {
    /// The model.
    pub artifact: Artifact,
    /// Validation metrics.
    pub metrics: Metrics,
    /// Wall time of the fit alone.
    pub training_ms: u64,
    /// Rows trained on.
    pub train_rows: usize,
    /// Rows validated on.
    pub valid_rows: usize,
}

impl Trained {
    /// The metrics as the registry records them (`val_auc`, …).
    pub fn metrics_json(&self) -> serde_json::Value {
        let m = &self.metrics;
        serde_json::json!({
            "val_auc": m.auc,
            "val_f1": m.f1,
            "val_accuracy": m.accuracy,
            "val_precision": m.precision,
            "val_recall": m.recall,
            "val_log_loss": m.log_loss,
            "confusion": m.confusion,
            "train_rows": self.train_rows,
            "valid_rows": self.valid_rows,
        })
    }
}

/// Splits row indices into (train, validation), stratified by label when asked.
/// Deterministic for (labels, fraction, seed).
pub fn split(
    labels: &[usize],
    fraction: f64,
    stratify: bool,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let groups: Vec<Vec<usize>> = if stratify {
        (0..2)
            .map(|c| (0..labels.len()).filter(|&i| labels[i] == c).collect())
            .collect()
    } else {
        vec![(0..labels.len()).collect()]
    };
    let (mut train, mut valid) = (Vec::new(), Vec::new());
    for mut g in groups {
        for i in (1..g.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            g.swap(i, j);
        }
        let n_valid = ((g.len() as f64) * fraction).round() as usize;
        valid.extend_from_slice(&g[..n_valid]);
        train.extend_from_slice(&g[n_valid..]);
    }
    train.sort_unstable();
    valid.sort_unstable();
    (train, valid)
}

/// Encodes, fits and validates. CPU-bound: call it off the async executor.
pub fn train(
    set: &TrainingSet,
    algorithm: &Algorithm,
    validation: &ValidationSpec,
    nulls: NullPolicy,
    seed: u64,
) -> Result<Trained, TrainError> {
    let (train_rows, valid_rows) =
        split(&set.labels, validation.fraction, validation.stratify, seed);
    let one_class = |rows: &[usize]| {
        let pos = rows.iter().filter(|&&i| set.labels[i] == 1).count();
        pos == 0 || pos == rows.len()
    };
    if one_class(&train_rows) || one_class(&valid_rows) {
        let positives = set.positives();
        return Err(TrainError::OneClass {
            positives,
            negatives: set.labels.len() - positives,
        });
    }
    let encoder = Encoder::fit(&set.columns, &set.types, &train_rows, nulls)?;
    let batch = crate::data::Batch {
        columns: set.columns.clone(),
        lines: Vec::new(),
    };
    let width = encoder.width();
    let x_train = Array2::from_shape_vec(
        (train_rows.len(), width),
        encoder.encode_batch(&batch, &train_rows)?,
    )
    .map_err(|e| TrainError::Artifact(e.to_string()))?;
    let y_train: Array1<usize> = train_rows.iter().map(|&i| set.labels[i]).collect();
    let x_valid = encoder.encode_batch(&batch, &valid_rows)?;
    let y_valid: Vec<usize> = valid_rows.iter().map(|&i| set.labels[i]).collect();

    let started = Instant::now();
    let estimator = match algorithm {
        Algorithm::RandomForest(f) => {
            let params = RandomForestParams {
                trees: f.trees,
                max_features: max_features(f.max_features),
                max_depth: f.max_depth,
                min_samples_leaf: f.min_samples_leaf,
                balanced: f.class_weight == ClassWeight::Balanced,
                bootstrap: true,
                max_samples: Some(max_samples(f.max_samples)),
                seed,
            };
            Estimator::Forest(params.fit(&Dataset::new(x_train, y_train))?)
        }
        Algorithm::DecisionTree(t) => {
            let mut params = RandomForestParams::decision_tree(
                t.class_weight == ClassWeight::Balanced,
                seed,
                t.max_depth,
            );
            params.min_samples_leaf = t.min_samples_leaf;
            Estimator::Forest(params.fit(&Dataset::new(x_train, y_train))?)
        }
        Algorithm::LogisticRegression(l) => logistic(x_train, y_train, l)?,
    };
    let training_ms = started.elapsed().as_millis() as u64;
    let artifact = Artifact { encoder, estimator };
    let proba = artifact.predict_proba(&x_valid);
    Ok(Trained {
        metrics: evaluate(&y_valid, &proba),
        artifact,
        training_ms,
        train_rows: train_rows.len(),
        valid_rows: valid_rows.len(),
    })
}

/// The forest's draws per tree: as written, or every row up to
/// [`DEFAULT_MAX_SAMPLES`] when the spec leaves it out.
fn max_samples(m: Option<MaxSamplesSpec>) -> MaxSamples {
    match m {
        None => MaxSamples::Count(DEFAULT_MAX_SAMPLES),
        Some(MaxSamplesSpec::Count(n)) => MaxSamples::Count(n),
        Some(MaxSamplesSpec::Fraction(f)) => MaxSamples::Fraction(f),
    }
}

fn max_features(m: MaxFeaturesSpec) -> MaxFeatures {
    match m {
        MaxFeaturesSpec::Named(MaxFeaturesName::Sqrt) => MaxFeatures::Sqrt,
        MaxFeaturesSpec::Named(MaxFeaturesName::Log2) => MaxFeatures::Log2,
        MaxFeaturesSpec::Named(MaxFeaturesName::All) => MaxFeatures::All,
        MaxFeaturesSpec::Count(n) => MaxFeatures::Count(n),
        MaxFeaturesSpec::Fraction(f) => MaxFeatures::Fraction(f),
    }
}

/// linfa-logistic on standardised inputs. linfa-logistic takes no sample
/// weights, so balanced class weights are applied as the prior correction of
/// the intercept (ln(n₀/n₁)), which is what reweighting does to a logistic
/// model's log-odds; the ranking (AUC) is unchanged by it.
pub fn logistic(
    x: Array2<f64>,
    y: Array1<usize>,
    spec: &LogisticSpec,
) -> Result<Estimator, TrainError> {
    let n = x.nrows() as f64;
    let mean: Vec<f64> = x.columns().into_iter().map(|c| c.sum() / n).collect();
    let scale: Vec<f64> = x
        .columns()
        .into_iter()
        .zip(&mean)
        .map(|(c, m)| {
            let var = c.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n;
            if var > 0.0 { var.sqrt() } else { 1.0 }
        })
        .collect();
    let mut z = x;
    for (mut c, (m, s)) in z.columns_mut().into_iter().zip(mean.iter().zip(&scale)) {
        c.mapv_inplace(|v| (v - m) / s);
    }
    let positives = y.iter().filter(|&&l| l == 1).count() as f64;
    let fitted = linfa_logistic::LogisticRegression::default()
        .alpha(spec.alpha)
        .max_iterations(spec.max_iterations)
        .fit(&Dataset::new(z, y))
        .map_err(|e| TrainError::Logistic(e.to_string()))?;
    // linfa picks which label is "positive"; orient the model so that its score
    // is always P(label 1), whatever it picked.
    let sign = if fitted.labels().pos.class == 1 {
        1.0
    } else {
        -1.0
    };
    let mut intercept = sign * fitted.intercept();
    if spec.class_weight == ClassWeight::Balanced && positives > 0.0 && positives < n {
        intercept += ((n - positives) / positives).ln();
    }
    Ok(Estimator::Linear {
        mean,
        scale,
        weights: fitted.params().iter().map(|w| sign * w).collect(),
        intercept,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_stratified_deterministic_and_disjoint() {
        let labels: Vec<usize> = (0..100).map(|i| usize::from(i % 4 == 0)).collect();
        let (t, v) = split(&labels, 0.25, true, 42);
        assert_eq!((t.len(), v.len()), (75, 25));
        assert_eq!(v.iter().filter(|&&i| labels[i] == 1).count(), 6);
        assert!(t.iter().all(|i| !v.contains(i)));
        assert_eq!(split(&labels, 0.25, true, 42), (t.clone(), v.clone()));
        assert_ne!(split(&labels, 0.25, true, 7).1, v);
    }

    fn toy(n: usize) -> TrainingSet {
        // Label 1 when x is large; y is noise. The mapping of classes matters:
        // a model reading the wrong class's probability has AUC ≈ 0.
        let x: Vec<Option<f64>> = (0..n).map(|i| Some(i as f64)).collect();
        let y: Vec<Option<f64>> = (0..n).map(|i| Some(((i * 7919) % 13) as f64)).collect();
        TrainingSet {
            keys: (0..n).map(|i| format!("k{i:04}")).collect(),
            columns: vec![
                ("v.x".into(), Column::Float(x)),
                ("v.y".into(), Column::Float(y)),
            ],
            types: vec![ColumnType::Float, ColumnType::Float],
            labels: (0..n).map(|i| usize::from(i * 3 > n * 2)).collect(),
        }
    }

    #[test]
    fn logistic_regression_scores_the_positive_class() {
        let set = toy(200);
        let algo = Algorithm::LogisticRegression(crate::kinds::training_run::spec::LogisticSpec {
            alpha: 1.0,
            max_iterations: 100,
            class_weight: ClassWeight::Balanced,
        });
        let t = train(&set, &algo, &ValidationSpec::default(), NullPolicy::Fail, 1).unwrap();
        assert!(t.metrics.auc > 0.95, "auc {}", t.metrics.auc);
        let bytes = t.artifact.to_bytes().unwrap();
        let back = Artifact::from_bytes(&bytes).unwrap();
        assert!(back.predict_row(&[199.0, 0.0]) > 0.5);
        assert!(back.predict_row(&[0.0, 0.0]) < 0.5);
    }

    #[test]
    fn max_samples_is_read_from_the_spec_and_defaults_to_a_cap() -> Result<(), String> {
        let forest = |yaml: &str| -> Result<crate::kinds::training_run::spec::ForestSpec, String> {
            serde_saphyr::from_str(yaml).map_err(|e| e.to_string())
        };
        let absent = forest("trees: 10")?;
        assert_eq!(absent.max_samples, None);
        assert_eq!(
            max_samples(absent.max_samples),
            MaxSamples::Count(DEFAULT_MAX_SAMPLES)
        );
        // Absent stays absent when serialized: a spec's hash (and the
        // identity of the versions trained from it) does not change.
        let json = serde_json::to_value(&absent).map_err(|e| e.to_string())?;
        assert!(json.get("maxSamples").is_none(), "{json}");
        let count = forest("maxSamples: 50000")?;
        assert_eq!(count.max_samples, Some(MaxSamplesSpec::Count(50_000)));
        let share = forest("maxSamples: 0.5")?;
        assert_eq!(share.max_samples, Some(MaxSamplesSpec::Fraction(0.5)));
        assert_eq!(max_samples(share.max_samples), MaxSamples::Fraction(0.5));

        // Below the cap the default is every row: the same model as `1.0`.
        let set = toy(200);
        let bytes = |yaml: &str| -> Result<Vec<u8>, String> {
            let algo = Algorithm::RandomForest(forest(yaml)?);
            let t = train(&set, &algo, &ValidationSpec::default(), NullPolicy::Fail, 3)
                .map_err(|e| e.to_string())?;
            t.artifact.to_bytes().map_err(|e| e.to_string())
        };
        assert_eq!(
            bytes("trees: 10")?,
            bytes("{ trees: 10, maxSamples: 1.0 }")?
        );
        assert_ne!(bytes("trees: 10")?, bytes("{ trees: 10, maxSamples: 20 }")?);
        Ok(())
    }

    #[test]
    fn one_class_is_refused_with_counts() {
        let mut set = toy(40);
        set.labels = vec![0; 40];
        let algo = Algorithm::DecisionTree(crate::kinds::training_run::spec::TreeSpec {
            max_depth: None,
            min_samples_leaf: 1,
            class_weight: ClassWeight::None,
        });
        let err = train(&set, &algo, &ValidationSpec::default(), NullPolicy::Fail, 1).unwrap_err();
        assert!(
            err.to_string().contains("0 positive and 40 negative"),
            "{err}"
        );
    }
}
