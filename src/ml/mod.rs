//! Machine learning: turning a point-in-time training set into a model.
//!
//! - [`encode`]: typed feature columns → a numeric matrix, by declared rules
//!   (one-hot strings, 0/1 booleans, declared null handling); the encoder is part
//!   of the artifact so serving encodes exactly as training did.
//! - [`forest`]: our random forest / decision tree, a linfa estimator
//!   (`Fit` / `PredictInplace`) that gives class probabilities and is fast enough
//!   to retrain inside an apply.
//! - [`metrics`]: validation metrics (AUC, F1, log loss, …).
//! - [`train`]: algorithm dispatch, the validation split and the model artifact.

pub mod encode;
pub mod forest;
pub mod metrics;
pub mod train;
