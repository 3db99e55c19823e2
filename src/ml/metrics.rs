//! Binary classification metrics of a validation split: ROC AUC, F1, accuracy,
//! precision, recall, log loss and the confusion matrix.
//!
//! They exist so that every algorithm is judged by the same code on the same
//! rows, and so that the registry can gate and compare versions on numbers that
//! mean what scikit-learn's functions of the same name mean.
//!
//! Labels are `0` or `1`; a label other than `1` counts as negative. Scores are
//! P(label 1). Thresholded metrics predict class 1 when the score is ≥ 0.5.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// Probabilities are clipped to `[EPS, 1 - EPS]` before the log loss, as
/// scikit-learn does, so that one confident mistake gives a large finite loss.
const LOG_LOSS_EPS: f64 = 1e-15;

/// Threshold on P(label 1) at which a row is predicted positive.
const THRESHOLD: f64 = 0.5;

/// Most points of the recorded ROC curve: enough to draw it, small enough to
/// keep in every version's metrics.
pub const ROC_POINTS: usize = 101;

/// Validation metrics of a binary classifier; what the registry records for a
/// version and what promotion gates compare.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Area under the ROC curve (0.5 when one class is absent).
    pub auc: f64,
    /// Harmonic mean of precision and recall (0 when both are 0).
    pub f1: f64,
    /// Share of rows predicted correctly.
    pub accuracy: f64,
    /// tp / (tp + fp), 0 when nothing is predicted positive.
    pub precision: f64,
    /// tp / (tp + fn), 0 when there are no positives.
    pub recall: f64,
    /// Mean negative log-likelihood, probabilities clipped to [1e-15, 1 − 1e-15].
    pub log_loss: f64,
    /// [[tn, fp], [fn, tp]] at threshold 0.5
    pub confusion: [[u64; 2]; 2],
    /// Rows evaluated.
    pub rows: usize,
    /// The ROC curve as `[fpr, tpr]` points from `[0, 0]` to `[1, 1]`, at
    /// most [`ROC_POINTS`] of them (see [`roc_curve`]); empty when a class is absent.
    pub roc: Vec<[f64; 2]>,
}

/// `a / b`, or 0 when `b` is 0: undefined ratios are reported as 0, not NaN.
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// Computes every metric of `proba` (P(label 1)) against `labels` (0 or 1).
///
/// Pairs are taken up to the shorter of the two slices. An empty input gives
/// AUC 0.5 and zeros elsewhere.
pub fn evaluate(labels: &[usize], proba: &[f64]) -> Metrics {
    let rows = labels.len().min(proba.len());
    let (labels, proba) = (&labels[..rows], &proba[..rows]);
    let mut confusion = [[0u64; 2]; 2];
    let mut loss = 0.0;
    for (&label, &p) in labels.iter().zip(proba) {
        let actual = usize::from(label == 1);
        let predicted = usize::from(p >= THRESHOLD);
        confusion[actual][predicted] += 1;
        let clipped = if p.is_nan() {
            0.5
        } else {
            p.clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
        };
        loss -= if actual == 1 {
            clipped.ln()
        } else {
            (1.0 - clipped).ln()
        };
    }
    let [[tn, fp], [fn_, tp]] = confusion.map(|r| r.map(|c| c as f64));
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, tp + fn_);
    Metrics {
        auc: roc_auc(labels, proba),
        f1: ratio(2.0 * precision * recall, precision + recall),
        accuracy: ratio(tp + tn, rows as f64),
        precision,
        recall,
        log_loss: ratio(loss, rows as f64),
        confusion,
        rows,
        roc: roc_curve(labels, proba, ROC_POINTS),
    }
}

/// The ROC curve: `[false positive rate, true positive rate]` after each
/// distinct score taken as the threshold, highest first (tied scores move
/// both rates at once, as scikit-learn's `roc_curve` does), from `[0, 0]` to
/// `[1, 1]`; thinned to at most `max_points` evenly spaced points (the first
/// and last kept), rates rounded to 4 decimals. Empty when either class is
/// absent, where the curve is undefined.
pub fn roc_curve(labels: &[usize], proba: &[f64], max_points: usize) -> Vec<[f64; 2]> {
    let rows = labels.len().min(proba.len());
    let positives = labels[..rows].iter().filter(|&&l| l == 1).count();
    let negatives = rows - positives;
    if positives == 0 || negatives == 0 || max_points < 2 {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..rows).collect();
    order.sort_unstable_by(|&a, &b| proba[b].total_cmp(&proba[a]));
    let (p, n) = (positives as f64, negatives as f64);
    let mut points = vec![[0.0, 0.0]];
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut start = 0;
    while start < rows {
        let value = proba[order[start]];
        let mut end = start;
        while end < rows && proba[order[end]].total_cmp(&value) == Ordering::Equal {
            if labels[order[end]] == 1 {
                tp += 1;
            } else {
                fp += 1;
            }
            end += 1;
        }
        points.push([fp as f64 / n, tp as f64 / p]);
        start = end;
    }
    let kept: Vec<[f64; 2]> = if points.len() <= max_points {
        points
    } else {
        let last = points.len() - 1;
        (0..max_points)
            .map(|i| points[(i * last + (max_points - 1) / 2) / (max_points - 1)])
            .collect()
    };
    let round = |x: f64| (x * 10_000.0).round() / 10_000.0;
    kept.into_iter()
        .map(|[x, y]| [round(x), round(y)])
        .collect()
}

/// ROC AUC by ranks (Mann–Whitney U): the probability that a random positive
/// scores above a random negative, ties counting one half (average ranks).
///
/// Returns 0.5 when either class is absent, where the AUC is undefined. Pairs
/// are taken up to the shorter slice; NaN scores rank above every number.
pub fn roc_auc(labels: &[usize], proba: &[f64]) -> f64 {
    let rows = labels.len().min(proba.len());
    let mut order: Vec<usize> = (0..rows).collect();
    order.sort_unstable_by(|&a, &b| proba[a].total_cmp(&proba[b]));
    let positives = labels[..rows].iter().filter(|&&l| l == 1).count();
    let negatives = rows - positives;
    if positives == 0 || negatives == 0 {
        return 0.5;
    }
    // Sum of the (1-based, tie-averaged) ranks of the positives.
    let mut rank_sum = 0.0;
    let mut start = 0;
    while start < rows {
        let value = proba[order[start]];
        let mut end = start + 1;
        while end < rows && proba[order[end]].total_cmp(&value) == Ordering::Equal {
            end += 1;
        }
        // Ranks start+1 ..= end share their average.
        let average = (start + 1 + end) as f64 / 2.0;
        let tied_positives = order[start..end]
            .iter()
            .filter(|&&i| labels[i] == 1)
            .count();
        rank_sum += average * tied_positives as f64;
        start = end;
    }
    let (p, n) = (positives as f64, negatives as f64);
    (rank_sum - p * (p + 1.0) / 2.0) / (p * n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn auc_of_perfect_reversed_and_tied_scores() {
        let labels = [0, 0, 1, 1];
        assert_eq!(roc_auc(&labels, &[0.1, 0.2, 0.8, 0.9]), 1.0);
        assert_eq!(roc_auc(&labels, &[0.9, 0.8, 0.2, 0.1]), 0.0);
        // All tied: every pair counts one half.
        assert_eq!(roc_auc(&labels, &[0.5; 4]), 0.5);
        // scikit-learn: roc_auc_score([0,0,1,1], [0.1,0.4,0.35,0.8]) == 0.75
        assert!(close(roc_auc(&labels, &[0.1, 0.4, 0.35, 0.8]), 0.75));
        // One tie between a positive and a negative (0.4): 3 wins + 0.5 of 4 pairs.
        assert!(close(roc_auc(&labels, &[0.1, 0.4, 0.4, 0.8]), 0.875));
    }

    #[test]
    fn auc_is_one_half_when_a_class_is_absent() {
        assert_eq!(roc_auc(&[1, 1, 1], &[0.1, 0.5, 0.9]), 0.5);
        assert_eq!(roc_auc(&[0, 0], &[0.1, 0.9]), 0.5);
        assert_eq!(roc_auc(&[], &[]), 0.5);
    }

    #[test]
    fn confusion_and_thresholded_metrics() {
        // tn: row 0; fp: rows 1, 2; fn: row 3; tp: rows 4, 5, 6 (0.5 is positive).
        let labels = [0, 0, 0, 1, 1, 1, 1];
        let proba = [0.1, 0.6, 0.5, 0.4, 0.5, 0.7, 0.99];
        let m = evaluate(&labels, &proba);
        assert_eq!(m.confusion, [[1, 2], [1, 3]]);
        assert_eq!(m.rows, 7);
        assert!(close(m.accuracy, 4.0 / 7.0));
        assert!(close(m.precision, 3.0 / 5.0));
        assert!(close(m.recall, 3.0 / 4.0));
        assert!(close(m.f1, 2.0 * 0.6 * 0.75 / (0.6 + 0.75)));
    }

    #[test]
    fn undefined_ratios_are_zero_not_nan() {
        // Nothing predicted positive and no positives at all.
        let m = evaluate(&[0, 0], &[0.1, 0.2]);
        assert_eq!((m.precision, m.recall, m.f1), (0.0, 0.0, 0.0));
        assert_eq!(m.accuracy, 1.0);
        let empty = evaluate(&[], &[]);
        assert_eq!(empty.rows, 0);
        assert!(!empty.log_loss.is_nan() && !empty.accuracy.is_nan());
    }

    #[test]
    fn log_loss_of_a_known_case() {
        // scikit-learn: log_loss([1, 0, 1], [0.9, 0.2, 0.6]) == 0.27977656357934...
        let m = evaluate(&[1, 0, 1], &[0.9, 0.2, 0.6]);
        let expected = -((0.9f64).ln() + (0.8f64).ln() + (0.6f64).ln()) / 3.0;
        assert!(close(m.log_loss, expected));
        assert!((m.log_loss - 0.279_776_563_579_342_3).abs() < 1e-12);
        // Certainty that is wrong is clipped, not infinite.
        let wrong = evaluate(&[1], &[0.0]);
        assert!(close(wrong.log_loss, -(1e-15f64).ln()));
    }

    #[test]
    fn roc_curve_of_known_cases() {
        // scikit-learn: roc_curve([0,0,1,1], [0.1,0.4,0.35,0.8]) gives
        // fpr [0, 0, 0.5, 0.5, 1], tpr [0, 0.5, 0.5, 1, 1] (with drop_intermediate=False).
        let c = roc_curve(&[0, 0, 1, 1], &[0.1, 0.4, 0.35, 0.8], ROC_POINTS);
        assert_eq!(
            c,
            vec![[0.0, 0.0], [0.0, 0.5], [0.5, 0.5], [0.5, 1.0], [1.0, 1.0]]
        );
        // Ties move both rates at once.
        let tied = roc_curve(&[0, 1], &[0.5, 0.5], ROC_POINTS);
        assert_eq!(tied, vec![[0.0, 0.0], [1.0, 1.0]]);
        assert!(roc_curve(&[1, 1], &[0.2, 0.9], ROC_POINTS).is_empty());
    }

    #[test]
    fn roc_curve_is_thinned_and_monotone() {
        let labels: Vec<usize> = (0..5000).map(|i| usize::from(i % 3 == 0)).collect();
        let proba: Vec<f64> = (0..5000)
            .map(|i| ((i * 7919) % 5000) as f64 / 5000.0 * 0.7 + if i % 3 == 0 { 0.3 } else { 0.0 })
            .collect();
        let c = roc_curve(&labels, &proba, ROC_POINTS);
        assert_eq!(c.len(), ROC_POINTS);
        assert_eq!(c.first(), Some(&[0.0, 0.0]));
        assert_eq!(c.last(), Some(&[1.0, 1.0]));
        assert!(
            c.windows(2)
                .all(|w| w[0][0] <= w[1][0] && w[0][1] <= w[1][1])
        );
        assert_eq!(evaluate(&labels, &proba).roc, c);
    }

    #[test]
    fn mismatched_lengths_use_the_common_prefix() {
        let m = evaluate(&[0, 1, 1], &[0.2, 0.8]);
        assert_eq!(m.rows, 2);
        assert_eq!(m.auc, 1.0);
    }
}
