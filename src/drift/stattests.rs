//! The tests and distances behind [`super::column_drift`], and Evidently's
//! default choice among them (Evidently 0.7's `DataDriftPreset`, which calls
//! scipy and numpy): the same rules and the same arithmetic, so scores agree to
//! rounding.
//!
//! * Nulls, NaN and ±infinity are dropped (and counted as nulls) first.
//! * Default choice, with `n` the non-null reference rows and `u` the distinct
//!   values of both windows together: `n ≤ 1000` → numerical `u > 5` KS,
//!   otherwise (and categorical) chi² when `u > 2`, Z when `u ≤ 2`;
//!   `n > 1000` → numerical `u > 5` Wasserstein (normed), otherwise (and
//!   categorical) Jensen–Shannon.
//! * Jensen–Shannon and PSI bin a numerical column whose reference holds more
//!   than 20 distinct values (Sturges edges over both windows, as numpy's
//!   `histogram_bin_edges`); otherwise they compare the frequencies of the
//!   union of values. PSI replaces empty bins by a tiny share ("feel zeroes").
//! * KS is exact (lattice-path counting, as scipy's `ks_2samp`) while both
//!   windows hold at most 10 000 values, asymptotic beyond.
//!
//! One deliberate difference: chi² over a single category (a constant column,
//! only reachable by override) has zero degrees of freedom; scipy answers NaN,
//! this answers p = 1 (no evidence of drift).

use std::collections::HashMap;

use statrs::distribution::{ChiSquared, ContinuousCDF, Normal};
use statrs::function::gamma::ln_gamma;

use super::{ColumnDrift, ColumnKind, ColumnOptions, Distribution, DriftError, Method};
use crate::data::Column;

/// References up to this many rows get the small-sample tests (KS, chi², Z).
const SMALL_REFERENCE: usize = 1000;
/// Numerical columns with at most this many distinct values count as discrete.
const FEW_VALUES: usize = 5;
/// Jensen–Shannon and PSI bin a numerical reference with more distinct values.
const BIN_ABOVE: usize = 20;
/// scipy's `ks_2samp` is exact while both samples are at most this large.
const KS_EXACT_MAX: usize = 10_000;
/// Bins of a report's histogram when the test itself does not bin.
const REPORT_BINS: usize = 20;
/// Categories a report draws before summing the rest into `(other)`.
const REPORT_CATEGORIES: usize = 20;

/// See [`super::column_drift`].
pub fn column_drift(
    column: &str,
    reference: &Column,
    current: &Column,
    opts: ColumnOptions,
) -> Result<ColumnDrift, DriftError> {
    let sample = Sample::new(column, reference, current)?;
    let (n_ref, n_cur) = sample.sizes();
    if n_ref == 0 {
        return Err(empty(column, "reference"));
    }
    if n_cur == 0 {
        return Err(empty(column, "current"));
    }
    let kind = sample.kind();
    let method = match opts.method {
        Some(m) if applies(m, kind) => m,
        Some(m) => {
            return Err(DriftError::Unsupported {
                column: column.to_string(),
                method: m.as_str(),
                kind,
            });
        }
        None => default_method(kind, n_ref, sample.distinct_values()),
    };
    let threshold = opts.threshold.unwrap_or(method.default_threshold());

    let mut histogram = None;
    let score = match (method, &sample.values) {
        (Method::Ks, Values::Numbers { reference, current }) => ks_p_value(reference, current),
        (Method::Wasserstein, Values::Numbers { reference, current }) => {
            wasserstein_normed(reference, current)
        }
        (Method::ChiSquare, _) => chi_square_p_value(&sample.tally()),
        (Method::Z, _) => z_p_value(&sample.tally()),
        (Method::JensenShannon | Method::Psi, _) => {
            let binned = sample.binned();
            let score = if method == Method::Psi {
                psi(&binned.reference, &binned.current)
            } else {
                jensen_shannon(&binned.reference, &binned.current)
            };
            histogram = binned.edges.map(|edges| Distribution::Histogram {
                edges,
                reference: binned.reference,
                current: binned.current,
            });
            score
        }
        // `applies` keeps KS and Wasserstein to numbers.
        (Method::Ks | Method::Wasserstein, Values::Categories { .. }) => {
            return Err(DriftError::Unsupported {
                column: column.to_string(),
                method: method.as_str(),
                kind,
            });
        }
    };
    let drifted = match method {
        // Evidently's KS alone counts p == threshold as drift.
        Method::Ks => score <= threshold,
        Method::ChiSquare | Method::Z => score < threshold,
        Method::Wasserstein | Method::JensenShannon | Method::Psi => score >= threshold,
    };
    let distribution = match histogram {
        Some(h) => h,
        None => sample.distribution(),
    };
    Ok(ColumnDrift {
        column: column.to_string(),
        kind,
        method,
        score,
        threshold,
        drifted,
        reference_rows: n_ref,
        current_rows: n_cur,
        reference_nulls: sample.reference_nulls,
        current_nulls: sample.current_nulls,
        distribution,
    })
}

/// Evidently's choice for a column of `kind` with `n_ref` non-null reference
/// rows and `distinct` values across both windows.
pub fn default_method(kind: ColumnKind, n_ref: usize, distinct: usize) -> Method {
    let discrete = kind == ColumnKind::Categorical || distinct <= FEW_VALUES;
    match (n_ref <= SMALL_REFERENCE, discrete) {
        (true, false) => Method::Ks,
        (true, true) if distinct > 2 => Method::ChiSquare,
        (true, true) => Method::Z,
        (false, false) => Method::Wasserstein,
        (false, true) => Method::JensenShannon,
    }
}

/// Whether Evidently accepts `method` for a column of `kind` when asked for
/// it by name (its default choice may still apply chi² or Z to numbers).
fn applies(method: Method, kind: ColumnKind) -> bool {
    match method {
        Method::Ks | Method::Wasserstein => kind == ColumnKind::Numerical,
        Method::ChiSquare | Method::Z => kind == ColumnKind::Categorical,
        Method::JensenShannon | Method::Psi => true,
    }
}

fn empty(column: &str, window: &'static str) -> DriftError {
    DriftError::Empty {
        column: column.to_string(),
        window,
    }
}

/// Both windows of one column, nulls dropped.
struct Sample {
    values: Values,
    reference_nulls: usize,
    current_nulls: usize,
}

enum Values {
    /// Finite values, each window sorted ascending (`-0.0` folded into `0.0`).
    Numbers {
        reference: Vec<f64>,
        current: Vec<f64>,
    },
    /// Counts per category, over the union of both windows' categories in
    /// ascending label order.
    Categories {
        labels: Vec<String>,
        reference: Vec<usize>,
        current: Vec<usize>,
    },
}

/// Counts per distinct value (ascending) of both windows.
struct Tally {
    reference: Vec<usize>,
    current: Vec<usize>,
}

/// Shares per bin or per value, and the bin edges when binned.
struct Binned {
    edges: Option<Vec<f64>>,
    reference: Vec<f64>,
    current: Vec<f64>,
}

impl Sample {
    fn new(column: &str, reference: &Column, current: &Column) -> Result<Sample, DriftError> {
        let type_error = |message: String| DriftError::Type {
            column: column.to_string(),
            message,
        };
        let (values, reference_nulls, current_nulls) = match (reference, current) {
            (Column::Int(r), Column::Int(c)) => {
                let to_f64 = |v: &Option<i64>| v.map(|x| x as f64);
                let (reference, rn) = finite_sorted(r.iter().map(to_f64), r.len());
                let (current, cn) = finite_sorted(c.iter().map(to_f64), c.len());
                (Values::Numbers { reference, current }, rn, cn)
            }
            (Column::Float(r), Column::Float(c)) => {
                let (reference, rn) = finite_sorted(r.iter().copied(), r.len());
                let (current, cn) = finite_sorted(c.iter().copied(), c.len());
                (Values::Numbers { reference, current }, rn, cn)
            }
            (Column::Str(r), Column::Str(c)) => strings(r, c),
            (Column::Bool(r), Column::Bool(c)) => booleans(r, c),
            (Column::Date(_), _) | (_, Column::Date(_)) => {
                return Err(type_error(
                    "dates have no drift test; derive a number from them (e.g. days since)".into(),
                ));
            }
            (r, c) => {
                return Err(type_error(format!(
                    "the reference holds {} values but the current window {} values",
                    type_name(r),
                    type_name(c)
                )));
            }
        };
        Ok(Sample {
            values,
            reference_nulls,
            current_nulls,
        })
    }

    fn kind(&self) -> ColumnKind {
        match self.values {
            Values::Numbers { .. } => ColumnKind::Numerical,
            Values::Categories { .. } => ColumnKind::Categorical,
        }
    }

    fn sizes(&self) -> (usize, usize) {
        match &self.values {
            Values::Numbers { reference, current } => (reference.len(), current.len()),
            Values::Categories {
                reference, current, ..
            } => (reference.iter().sum(), current.iter().sum()),
        }
    }

    /// Distinct values of both windows together.
    fn distinct_values(&self) -> usize {
        match &self.values {
            Values::Numbers { reference, current } => {
                let mut n = 0;
                merge_distinct(reference, current, |_, _, _| n += 1);
                n
            }
            Values::Categories { labels, .. } => labels.len(),
        }
    }

    fn tally(&self) -> Tally {
        match &self.values {
            Values::Numbers { reference, current } => {
                let mut t = Tally {
                    reference: Vec::new(),
                    current: Vec::new(),
                };
                merge_distinct(reference, current, |_, r, c| {
                    t.reference.push(r);
                    t.current.push(c);
                });
                t
            }
            Values::Categories {
                reference, current, ..
            } => Tally {
                reference: reference.clone(),
                current: current.clone(),
            },
        }
    }

    /// Shares as Evidently's `get_binned_data` computes them (before any
    /// zero replacement): Sturges bins over both windows for a numerical
    /// reference of more than 20 distinct values, else per distinct value.
    fn binned(&self) -> Binned {
        if let Values::Numbers { reference, current } = &self.values
            && count_distinct(reference) > BIN_ABOVE
        {
            let edges = sturges_edges(reference, current);
            return Binned {
                reference: histogram_shares(reference, &edges),
                current: histogram_shares(current, &edges),
                edges: Some(edges),
            };
        }
        let tally = self.tally();
        Binned {
            edges: None,
            reference: shares(&tally.reference),
            current: shares(&tally.current),
        }
    }

    /// What a report draws when the test did not bin.
    fn distribution(&self) -> Distribution {
        match &self.values {
            Values::Numbers { reference, current } => {
                let (lo, hi) = combined_range(reference, current);
                let edges = linspace(lo, hi, REPORT_BINS);
                Distribution::Histogram {
                    reference: histogram_shares(reference, &edges),
                    current: histogram_shares(current, &edges),
                    edges,
                }
            }
            Values::Categories {
                labels,
                reference,
                current,
            } => top_categories(labels, reference, current),
        }
    }
}

fn type_name(c: &Column) -> &'static str {
    match c {
        Column::Str(_) => "string",
        Column::Int(_) => "int",
        Column::Float(_) => "float",
        Column::Bool(_) => "bool",
        Column::Date(_) => "date",
    }
}

/// Finite values sorted ascending, and how many were null or not finite.
fn finite_sorted(values: impl Iterator<Item = Option<f64>>, len: usize) -> (Vec<f64>, usize) {
    let mut out = Vec::with_capacity(len);
    // Adding 0.0 turns -0.0 into 0.0: pandas counts them as one value.
    out.extend(values.flatten().filter(|x| x.is_finite()).map(|x| x + 0.0));
    out.sort_unstable_by(f64::total_cmp);
    let nulls = len - out.len();
    (out, nulls)
}

fn strings(r: &[Option<String>], c: &[Option<String>]) -> (Values, usize, usize) {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut counts: Vec<[usize; 2]> = Vec::new();
    let mut nulls = [0usize; 2];
    for (window, values) in [r, c].into_iter().enumerate() {
        for v in values {
            match v {
                Some(s) => {
                    let next = counts.len();
                    let i = *index.entry(s.as_str()).or_insert(next);
                    if i == next {
                        counts.push([0, 0]);
                    }
                    counts[i][window] += 1;
                }
                None => nulls[window] += 1,
            }
        }
    }
    let mut order: Vec<(&str, usize)> = index.into_iter().collect();
    order.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let values = Values::Categories {
        labels: order.iter().map(|(s, _)| (*s).to_string()).collect(),
        reference: order.iter().map(|&(_, i)| counts[i][0]).collect(),
        current: order.iter().map(|&(_, i)| counts[i][1]).collect(),
    };
    (values, nulls[0], nulls[1])
}

fn booleans(r: &[Option<bool>], c: &[Option<bool>]) -> (Values, usize, usize) {
    // [false, true] counts per window.
    let count = |values: &[Option<bool>]| {
        let mut k = [0usize; 2];
        for v in values.iter().flatten() {
            k[usize::from(*v)] += 1;
        }
        k
    };
    let (kr, kc) = (count(r), count(c));
    let (mut labels, mut reference, mut current) = (Vec::new(), Vec::new(), Vec::new());
    // Python prints booleans as True/False; False sorts first.
    for (i, label) in ["False", "True"].into_iter().enumerate() {
        if kr[i] + kc[i] > 0 {
            labels.push(label.to_string());
            reference.push(kr[i]);
            current.push(kc[i]);
        }
    }
    let values = Values::Categories {
        labels,
        reference,
        current,
    };
    let (rn, cn) = (r.len() - kr[0] - kr[1], c.len() - kc[0] - kc[1]);
    (values, rn, cn)
}

/// Walks the distinct values of two sorted samples in ascending order, with
/// how many times each occurs in either.
fn merge_distinct(r: &[f64], c: &[f64], mut each: impl FnMut(f64, usize, usize)) {
    let (mut i, mut j) = (0, 0);
    while i < r.len() || j < c.len() {
        let x = match (r.get(i), c.get(j)) {
            (Some(&a), Some(&b)) => a.min(b),
            (Some(&a), None) => a,
            (None, Some(&b)) => b,
            (None, None) => break,
        };
        let (i0, j0) = (i, j);
        while i < r.len() && r[i] == x {
            i += 1;
        }
        while j < c.len() && c[j] == x {
            j += 1;
        }
        each(x, i - i0, j - j0);
    }
}

fn count_distinct(sorted: &[f64]) -> usize {
    if sorted.is_empty() {
        return 0;
    }
    1 + sorted.windows(2).filter(|w| w[0] != w[1]).count()
}

fn shares(counts: &[usize]) -> Vec<f64> {
    let n: usize = counts.iter().sum();
    counts.iter().map(|&k| k as f64 / n as f64).collect()
}

fn combined_range(r: &[f64], c: &[f64]) -> (f64, f64) {
    let lo = r[0].min(c[0]);
    let hi = r[r.len() - 1].max(c[c.len() - 1]);
    if lo == hi {
        // numpy widens a degenerate range by half a unit each side.
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    }
}

/// `bins + 1` evenly spaced edges from `lo` to `hi`, as `numpy.linspace`.
fn linspace(lo: f64, hi: f64, bins: usize) -> Vec<f64> {
    let step = (hi - lo) / bins as f64;
    let mut edges: Vec<f64> = (0..=bins).map(|i| i as f64 * step + lo).collect();
    edges[bins] = hi;
    edges
}

/// numpy's `histogram_bin_edges(both windows, bins="sturges")`.
fn sturges_edges(r: &[f64], c: &[f64]) -> Vec<f64> {
    let (lo, hi) = combined_range(r, c);
    let n = (r.len() + c.len()) as f64;
    let ptp = r[r.len() - 1].max(c[c.len() - 1]) - r[0].min(c[0]);
    let width = ptp / (n.log2() + 1.0);
    let bins = if width > 0.0 {
        ((hi - lo) / width).ceil().max(1.0) as usize
    } else {
        1
    };
    linspace(lo, hi, bins)
}

/// Share of a sorted sample per bin; bins are half-open but the last, which
/// includes its right edge (numpy's `histogram`).
fn histogram_shares(sorted: &[f64], edges: &[f64]) -> Vec<f64> {
    let n = sorted.len() as f64;
    let last = edges.len() - 1;
    let below = |i: usize| {
        if i == last {
            sorted.partition_point(|&x| x <= edges[i])
        } else {
            sorted.partition_point(|&x| x < edges[i])
        }
    };
    let mut prev = below(0);
    (1..edges.len())
        .map(|i| {
            let next = below(i);
            let share = (next - prev) as f64 / n;
            prev = next;
            share
        })
        .collect()
}

/// At most [`REPORT_CATEGORIES`] categories, most frequent in the reference
/// first, and `(other)` for the rest.
fn top_categories(labels: &[String], reference: &[usize], current: &[usize]) -> Distribution {
    let (nr, nc): (usize, usize) = (reference.iter().sum(), current.iter().sum());
    let mut order: Vec<usize> = (0..labels.len()).collect();
    order.sort_by(|&a, &b| {
        reference[b]
            .cmp(&reference[a])
            .then(current[b].cmp(&current[a]))
            .then(labels[a].cmp(&labels[b]))
    });
    let shown = order.len().min(REPORT_CATEGORIES);
    let mut out_labels: Vec<String> = order[..shown].iter().map(|&i| labels[i].clone()).collect();
    let mut r: Vec<usize> = order[..shown].iter().map(|&i| reference[i]).collect();
    let mut c: Vec<usize> = order[..shown].iter().map(|&i| current[i]).collect();
    if shown < order.len() {
        out_labels.push("(other)".to_string());
        r.push(order[shown..].iter().map(|&i| reference[i]).sum());
        c.push(order[shown..].iter().map(|&i| current[i]).sum());
    }
    Distribution::Categories {
        labels: out_labels,
        reference: r.iter().map(|&k| k as f64 / nr as f64).collect(),
        current: c.iter().map(|&k| k as f64 / nc as f64).collect(),
    }
}

/// Two-sided two-sample Kolmogorov–Smirnov p-value (scipy's `ks_2samp`,
/// method `auto`).
fn ks_p_value(r: &[f64], c: &[f64]) -> f64 {
    let (n1, n2) = (r.len(), c.len());
    let d = ks_statistic(r, c);
    if n1.max(n2) <= KS_EXACT_MAX
        && let Some(p) = ks_exact(n1 as u64, n2 as u64, d)
    {
        return p;
    }
    let (m, n) = (n1.max(n2) as f64, n1.min(n2) as f64);
    let en = (m * n / (m + n)).round_ties_even();
    kolmogorov_sf(en, d).clamp(0.0, 1.0)
}

/// Largest distance between the two empirical CDFs.
fn ks_statistic(r: &[f64], c: &[f64]) -> f64 {
    let (n1, n2) = (r.len() as f64, c.len() as f64);
    let (mut i, mut j, mut d) = (0usize, 0usize, 0.0f64);
    merge_distinct(r, c, |_, a, b| {
        i += a;
        j += b;
        d = d.max((i as f64 / n1 - j as f64 / n2).abs());
    });
    d
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The exact p-value by counting lattice paths (Hodges 1958; Viehmann 2021
/// for the numerically stable complement). `None` when it cannot be trusted.
fn ks_exact(n1: u64, n2: u64, d: f64) -> Option<f64> {
    let g = gcd(n1, n2);
    let lcm = (n1 / g) * n2;
    let h = (d * lcm as f64).round_ties_even() as i64;
    if h == 0 {
        return Some(1.0);
    }
    let p = if n1 == n2 {
        outside_square(n1 as i64, h)
    } else {
        outside_band(n1 as i64, n2 as i64, g as i64, h)?
    };
    (0.0..=1.0).contains(&p).then_some(p)
}

/// Share of the paths from (0, 0) to (n, n) that leave the band |x − y| < h.
fn outside_square(n: i64, h: i64) -> f64 {
    // 2 (A0 − A1 + A2 − …) with Horner-like nesting, each Ai a ratio of
    // binomials written as h simple factors.
    let mut p = 0.0;
    let mut k = n / h;
    while k >= 0 {
        let mut term = 1.0;
        for j in 0..h {
            term = (n - k * h - j) as f64 * term / (n + k * h + j + 1) as f64;
        }
        p = term * (1.0 - p);
        k -= 1;
    }
    2.0 * p
}

/// Share of the paths from (0, 0) to (m, n) that leave the band
/// |x/m − y/n| < h / lcm(m, n), one sliding column at a time.
fn outside_band(m: i64, n: i64, g: i64, h: i64) -> Option<f64> {
    let (m, n) = if m < n { (n, m) } else { (m, n) };
    let (mg, ng) = (m / g, n / g);
    let ceil_div = |a: i64, b: i64| -(-a).div_euclid(b);
    let mut minj = 0i64;
    let mut maxj = ceil_div(h, mg).min(n + 1);
    let mut curlen = maxj - minj;
    let len = (2 * maxj + 2).min(n + 1) as usize;
    let mut a = vec![1.0f64; len];
    for v in a.iter_mut().take(maxj as usize) {
        *v = 0.0;
    }
    for i in 1..=m {
        let (lastminj, lastlen) = (minj, curlen);
        minj = ((ng * i - h).div_euclid(mg) + 1).max(0).min(n);
        maxj = ceil_div(ng * i + h, mg).min(n + 1);
        if maxj <= minj {
            return Some(1.0);
        }
        let mut val = if minj == 0 { 0.0 } else { 1.0 };
        for jj in 0..(maxj - minj) {
            let j = jj + minj;
            let prev = *a.get((jj + minj - lastminj) as usize)?;
            val = (prev * i as f64 + val * j as f64) / (i + j) as f64;
            *a.get_mut(jj as usize)? = val;
        }
        curlen = maxj - minj;
        if lastlen > curlen {
            let from = (maxj - minj) as usize;
            let to = (from + (lastlen - curlen) as usize).min(len);
            for v in a.iter_mut().take(to).skip(from) {
                *v = 1.0;
            }
        }
    }
    a.get((maxj - minj - 1) as usize).copied()
}

/// P(D_n ≥ x) for the one-sample two-sided KS statistic (scipy's
/// `kstwo.sf`, which the asymptotic `ks_2samp` calls with n = round(mn/(m+n))):
/// the closed forms of Ruben and Gambino at the ends, the Pelz–Good expansion
/// in between.
fn kolmogorov_sf(n: f64, x: f64) -> f64 {
    if x >= 1.0 {
        return 0.0;
    }
    if x <= 0.0 {
        return 1.0;
    }
    let t = n * x;
    if t <= 0.5 {
        return 1.0;
    }
    if t <= 1.0 {
        let cdf = (ln_gamma(n + 1.0) - n * n.ln() + n * (2.0 * t - 1.0).ln()).exp();
        return 1.0 - cdf;
    }
    if t >= n - 1.0 {
        return 2.0 * (1.0 - x).powf(n);
    }
    if t * x >= 370.0 {
        return 0.0;
    }
    pelz_good_sf(n, x)
}

/// 1 − (K0 + K1/√n + K2/n + K3/n^1.5)(z), z = x√n (Pelz and Good 1976).
fn pelz_good_sf(n: f64, x: f64) -> f64 {
    use std::f64::consts::PI;
    let z = n.sqrt() * x;
    let (z2, z3, z4, z6) = (z * z, z.powi(3), z.powi(4), z.powi(6));
    let pi2 = PI * PI;
    let (pi4, pi6) = (pi2 * pi2, pi2 * pi2 * pi2);
    let qlog = -pi2 / 8.0 / z2;
    if qlog < -708.0 {
        return 1.0;
    }
    let q = qlog.exp();
    let k1a = -z2;
    let k1b = pi2 / 4.0;
    let k2a = 6.0 * z6 + 2.0 * z4;
    let k2b = (2.0 * z4 - 5.0 * z2) * pi2 / 4.0;
    let k2c = pi4 * (1.0 - 2.0 * z2) / 16.0;
    let k3d = pi6 * (5.0 - 30.0 * z2) / 64.0;
    let k3c = pi4 * (-60.0 * z2 + 212.0 * z4) / 16.0;
    let k3b = pi2 * (135.0 * z4 - 96.0 * z6) / 4.0;
    let k3a = -30.0 * z6 - 90.0 * z.powi(8);
    let maxk = (16.0 * z / PI).ceil() as i64;
    let mut k = [0.0f64; 4];
    for kk in (1..=maxk).rev() {
        let m = (2 * kk - 1) as f64;
        let (m2, m4, m6) = (m * m, m.powi(4), m.powi(6));
        let qp = q.powf(8.0 * kk as f64);
        let coeffs = [
            1.0,
            k1a + k1b * m2,
            k2a + k2b * m2 + k2c * m4,
            k3a + k3b * m2 + k3c * m4 + k3d * m6,
        ];
        for (s, c) in k.iter_mut().zip(coeffs) {
            *s = *s * qp + c;
        }
    }
    let sqrt2pi = (2.0 * PI).sqrt();
    let div = [z, 6.0 * z4, 72.0 * z.powi(7), 6480.0 * z.powi(10)];
    for (s, d) in k.iter_mut().zip(div) {
        *s = *s * q * sqrt2pi / d;
    }
    let q2 = (-pi2 / 2.0 / z2).exp();
    let sqrt3z = 3f64.sqrt() * z;
    let (mut k2extra, mut k3extra) = (0.0, 0.0);
    for kk in (1..=maxk).rev() {
        let ks = kk as f64;
        let ks2 = ks * ks;
        let qp = q2.powf(ks2);
        let kspi = PI * ks;
        k2extra += ks2 * qp;
        k3extra += (sqrt3z + kspi) * (sqrt3z - kspi) * ks2 * qp;
    }
    k[2] += k2extra * pi2 * sqrt2pi / (-36.0 * z3);
    k[3] += k3extra * pi2 * sqrt2pi / (216.0 * z6);
    let cdf: f64 = k
        .iter()
        .enumerate()
        .map(|(i, s)| s / n.powf(i as f64 / 2.0))
        .sum();
    1.0 - cdf
}

/// Wasserstein-1 distance divided by the reference's population standard
/// deviation, floored at 0.001 as Evidently does (a constant reference would
/// otherwise divide by zero).
fn wasserstein_normed(r: &[f64], c: &[f64]) -> f64 {
    let mean = r.iter().sum::<f64>() / r.len() as f64;
    let var = r.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / r.len() as f64;
    let norm = var.sqrt().max(0.001);
    wasserstein(r, c) / norm
}

/// ∫ |F_r − F_c| over the merged sorted values (scipy's `wasserstein_distance`).
fn wasserstein(r: &[f64], c: &[f64]) -> f64 {
    let (n1, n2) = (r.len() as f64, c.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut prev: Option<f64> = None;
    let mut total = 0.0;
    merge_distinct(r, c, |x, a, b| {
        if let Some(p) = prev {
            total += (i as f64 / n1 - j as f64 / n2).abs() * (x - p);
        }
        i += a;
        j += b;
        prev = Some(x);
    });
    total
}

/// Pearson's chi² of the current counts against the reference's scaled to
/// the current size (scipy's `chisquare`), over the union of values.
fn chi_square_p_value(t: &Tally) -> f64 {
    let n_ref: usize = t.reference.iter().sum();
    let n_cur: usize = t.current.iter().sum();
    let k_norm = n_cur as f64 / n_ref as f64;
    let stat: f64 = t
        .reference
        .iter()
        .zip(&t.current)
        .map(|(&r, &c)| {
            let expected = r as f64 * k_norm;
            let diff = c as f64 - expected;
            diff * diff / expected
        })
        .sum();
    let dof = t.reference.len().saturating_sub(1);
    if dof == 0 {
        return 1.0;
    }
    if stat.is_infinite() {
        return 0.0;
    }
    match ChiSquared::new(dof as f64) {
        Ok(chi2) => chi2.sf(stat),
        Err(_) => f64::NAN,
    }
}

/// Two-proportion Z-test of "is the smallest value" versus the rest
/// (Evidently's `z_stat_test`); 1 when both windows hold the same single value.
fn z_p_value(t: &Tally) -> f64 {
    if t.reference.len() <= 1 {
        return 1.0;
    }
    let n1: usize = t.reference.iter().sum();
    let n2: usize = t.current.iter().sum();
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let p1 = (n1 - t.reference[0]) as f64 / n1f;
    let p2 = (n2 - t.current[0]) as f64 / n2f;
    let pooled = (p1 * n1f + p2 * n2f) / (n1f + n2f);
    let z = (p1 - p2) / (pooled * (1.0 - pooled) * (1.0 / n1f + 1.0 / n2f)).sqrt();
    match Normal::new(0.0, 1.0) {
        Ok(normal) => 2.0 * (1.0 - normal.cdf(z.abs())),
        Err(_) => f64::NAN,
    }
}

/// Jensen–Shannon distance (natural log) of two share vectors (scipy's
/// `spatial.distance.jensenshannon`).
fn jensen_shannon(p: &[f64], q: &[f64]) -> f64 {
    let (sp, sq) = (p.iter().sum::<f64>(), q.iter().sum::<f64>());
    let rel_entr = |x: f64, y: f64| if x > 0.0 { x * (x / y).ln() } else { 0.0 };
    let (mut left, mut right) = (0.0, 0.0);
    for (&a, &b) in p.iter().zip(q) {
        let (a, b) = (a / sp, b / sq);
        let m = (a + b) / 2.0;
        left += rel_entr(a, m);
        right += rel_entr(b, m);
    }
    ((left + right) / 2.0).sqrt()
}

/// Population stability index, with empty bins replaced as Evidently does.
fn psi(reference: &[f64], current: &[f64]) -> f64 {
    let (r, c) = (fill_zeroes(reference), fill_zeroes(current));
    r.iter()
        .zip(&c)
        .map(|(&a, &b)| (a - b) * (a / b).ln())
        .sum()
}

/// Evidently's "feel zeroes": an empty bin gets the smallest non-empty share
/// divided by 10⁶ when that share is at most 10⁻⁴, else 10⁻⁴.
fn fill_zeroes(shares: &[f64]) -> Vec<f64> {
    let smallest = shares
        .iter()
        .copied()
        .filter(|&s| s != 0.0)
        .fold(f64::INFINITY, f64::min);
    let fill = if smallest <= 0.0001 {
        smallest / 1e6
    } else {
        0.0001
    };
    shares
        .iter()
        .map(|&s| if s == 0.0 { fill } else { s })
        .collect()
}

#[cfg(test)]
mod tests {
    //! Expected figures come from Evidently 0.7.23 (scipy 1.17, numpy 2.4,
    //! pandas 2.3): its private stattest functions
    //! (`evidently.legacy.calculations.stattests.*._<name>`) and
    //! `registry._get_default_stattest` on the same samples as pandas Series,
    //! or `scipy.stats.ks_2samp` where noted. The samples are generated the
    //! same way on both sides (see `normal`).
    use super::*;

    /// Irwin–Hall approximation of N(shift, 1): the sum of 12 uniforms from a
    /// 64-bit LCG (high 32 bits / 2³²) minus 6. Every step is exact in f64, so
    /// Python reproduces it bit for bit:
    /// `s = (s * 6364136223846793005 + 1442695040888963407) & (2**64 - 1)`.
    fn normal(n: usize, seed: u64, shift: f64) -> Column {
        let mut s = seed;
        let values = (0..n)
            .map(|_| {
                let mut acc = 0.0;
                for _ in 0..12 {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    acc += (s >> 32) as f64 / 4294967296.0;
                }
                Some(acc - 6.0 + shift)
            })
            .collect();
        Column::Float(values)
    }

    fn floats(v: &[f64]) -> Column {
        Column::Float(v.iter().map(|&x| Some(x)).collect())
    }

    fn strs(spec: &[(&str, usize)]) -> Column {
        Column::Str(
            spec.iter()
                .flat_map(|&(s, k)| std::iter::repeat_n(Some(s.to_string()), k))
                .collect(),
        )
    }

    fn drift(r: &Column, c: &Column) -> ColumnDrift {
        column_drift("x", r, c, ColumnOptions::default()).expect("drift")
    }

    fn with(r: &Column, c: &Column, method: Method) -> ColumnDrift {
        let opts = ColumnOptions {
            method: Some(method),
            threshold: None,
        };
        column_drift("x", r, c, opts).expect("drift")
    }

    fn close(actual: f64, expected: f64) {
        let tol = 1e-9 * expected.abs().max(1e-3);
        assert!(
            (actual - expected).abs() <= tol,
            "{actual} != {expected} (tolerance {tol})"
        );
    }

    fn assert_shares(d: &Distribution) {
        let (r, c) = match d {
            Distribution::Histogram {
                edges,
                reference,
                current,
            } => {
                assert_eq!(edges.len(), reference.len() + 1);
                (reference, current)
            }
            Distribution::Categories {
                labels,
                reference,
                current,
            } => {
                assert_eq!(labels.len(), reference.len());
                (reference, current)
            }
        };
        assert_eq!(r.len(), c.len());
        close(r.iter().sum(), 1.0);
        close(c.iter().sum(), 1.0);
    }

    #[test]
    fn identical_samples_do_not_drift() {
        let big = normal(2000, 1, 0.0);
        let d = drift(&big, &big.clone());
        assert_eq!(
            (d.method, d.score, d.drifted),
            (Method::Wasserstein, 0.0, false)
        );
        let small = normal(10, 3, 0.0);
        let d = drift(&small, &small.clone());
        // ks_identical_small: ks, 1.0
        assert_eq!((d.method, d.score, d.drifted), (Method::Ks, 1.0, false));
        assert_eq!(with(&big, &big, Method::JensenShannon).score, 0.0);
        assert_eq!(with(&big, &big, Method::Psi).score, 0.0);
    }

    #[test]
    fn shifted_normal_large_reference() {
        let (r, c) = (normal(2000, 1, 0.0), normal(1500, 2, 0.5));
        let d = drift(&r, &c);
        // _get_default_stattest → wasserstein; _wasserstein_distance_norm.
        assert_eq!(d.method, Method::Wasserstein);
        close(d.score, 0.5377597581653205);
        assert!(d.drifted);
        assert_eq!(d.threshold, 0.1);
        assert_shares(&d.distribution);
        // _psi and _jensenshannon bin with Sturges over both windows:
        // np.histogram_bin_edges(..., "sturges") gives 14 edges from
        // -3.3259986 to 3.78161673.
        let p = with(&r, &c, Method::Psi);
        close(p.score, 0.30175651621176297);
        let j = with(&r, &c, Method::JensenShannon);
        close(j.score, 0.18913651609051435);
        match &j.distribution {
            Distribution::Histogram { edges, .. } => {
                assert_eq!(edges.len(), 14);
                assert!((edges[0] + 3.3259986).abs() < 1e-7);
                assert!((edges[13] - 3.78161673).abs() < 1e-7);
            }
            other => panic!("expected a histogram, got {other:?}"),
        }
        assert_shares(&j.distribution);
        // _ks_stat_test (exact: both ≤ 10 000).
        let k = with(&r, &c, Method::Ks);
        assert!((k.score - 6.441933682244253e-33).abs() < 1e-40);
        assert!(k.drifted);
    }

    #[test]
    fn small_reference_ks() {
        let r = normal(10, 3, 0.0);
        // ks_10_12 (n1 ≠ n2) and ks_10_10 (n1 = n2): default ks.
        let d = drift(&r, &normal(12, 4, 1.0));
        assert_eq!(d.method, Method::Ks);
        close(d.score, 0.02262443438914027);
        assert!(d.drifted);
        let d = drift(&r, &normal(10, 5, 1.0));
        close(d.score, 0.41752365281777043);
        assert!(!d.drifted);
        assert_shares(&d.distribution);
    }

    #[test]
    fn ks_large_windows() {
        // scipy.stats.ks_2samp, exact (7043 vs 7000) and asymptotic
        // (12 000 vs 11 000; 15 000 vs 300).
        let d = with(&normal(7043, 10, 0.0), &normal(7000, 11, 0.03), Method::Ks);
        close(d.score, 0.9202965996203628);
        let d = with(&normal(12000, 6, 0.0), &normal(11000, 7, 0.05), Method::Ks);
        assert!((d.score - 0.06694256183162683).abs() < 1e-6, "{}", d.score);
        let d = with(&normal(15000, 8, 0.0), &normal(300, 9, 0.1), Method::Ks);
        assert!((d.score - 0.3340766747144648).abs() < 1e-6, "{}", d.score);
    }

    #[test]
    fn small_reference_categories() {
        let r = strs(&[("a", 4), ("b", 3), ("c", 3)]);
        let c = strs(&[("a", 3), ("b", 6), ("c", 6)]);
        // chi_10: default chisquare.
        let d = drift(&r, &c);
        assert_eq!(d.method, Method::ChiSquare);
        close(d.score, 0.2865047968601901);
        assert!(!d.drifted);
        assert_shares(&d.distribution);
        close(with(&r, &c, Method::Z).score, 0.27523352407483426);
        close(
            with(&r, &c, Method::JensenShannon).score,
            0.15542604923619252,
        );
        close(with(&r, &c, Method::Psi).score, 0.1961658506023453);
        // z_10_20: two categories → z.
        let b = |t: usize, f: usize| {
            Column::Bool(
                std::iter::repeat_n(Some(true), t)
                    .chain(std::iter::repeat_n(Some(false), f))
                    .collect(),
            )
        };
        let d = drift(&b(7, 3), &b(8, 12));
        assert_eq!(d.method, Method::Z);
        close(d.score, 0.12133525035848236);
        assert!(!d.drifted);
    }

    #[test]
    fn large_reference_categories() {
        let r = strs(&[("a", 5000), ("b", 3000), ("c", 2000)]);
        let c = strs(&[("a", 4000), ("b", 3000), ("c", 2500), ("d", 500)]);
        // js_10000: default jensenshannon; js_10000_chi: 0 (a new category).
        let d = drift(&r, &c);
        assert_eq!(d.method, Method::JensenShannon);
        close(d.score, 0.1466422933152931);
        assert!(d.drifted);
        assert_eq!(with(&r, &c, Method::ChiSquare).score, 0.0);
        match &d.distribution {
            Distribution::Categories { labels, .. } => assert_eq!(labels, &["a", "b", "c", "d"]),
            other => panic!("expected categories, got {other:?}"),
        }
        assert_shares(&d.distribution);
    }

    #[test]
    fn disjoint_categories() {
        let r = strs(&[("x", 600), ("y", 600)]);
        let c = strs(&[("z", 700), ("w", 500)]);
        // disjoint_js = sqrt(ln 2); disjoint_chi = 0; disjoint_psi.
        let d = drift(&r, &c);
        close(d.score, 0.8325546111576978);
        assert!(d.drifted);
        assert_eq!(with(&r, &c, Method::ChiSquare).score, 0.0);
        close(with(&r, &c, Method::Psi).score, 17.044936237212028);
    }

    #[test]
    fn nulls_are_counted_and_dropped() {
        let r = Column::Float(vec![
            Some(1.0),
            Some(f64::NAN),
            Some(2.5),
            Some(3.0),
            None,
            Some(4.0),
            Some(5.5),
            Some(6.0),
            Some(7.0),
            Some(8.0),
            Some(9.5),
            Some(f64::INFINITY),
        ]);
        let c = Column::Float(vec![
            Some(2.0),
            Some(3.5),
            None,
            Some(4.0),
            Some(5.0),
            Some(6.5),
            Some(7.0),
            Some(8.0),
            Some(9.0),
        ]);
        // nulls: default ks on the 9 and 8 finite values.
        let d = drift(&r, &c);
        assert_eq!((d.reference_rows, d.reference_nulls), (9, 3));
        assert_eq!((d.current_rows, d.current_nulls), (8, 1));
        assert_eq!(d.method, Method::Ks);
        close(d.score, 0.9638009049773755);
        let s = Column::Str(vec![Some("a".into()), None, Some("b".into())]);
        let d = drift(&s, &s);
        assert_eq!((d.reference_rows, d.reference_nulls), (2, 1));
    }

    #[test]
    fn constant_columns() {
        let k = |v: f64, n: usize| floats(&vec![v; n]);
        // constant_same / constant_diff: jensenshannon (one or two values).
        let d = drift(&k(3.0, 5000), &k(3.0, 4000));
        assert_eq!(
            (d.method, d.score, d.drifted),
            (Method::JensenShannon, 0.0, false)
        );
        assert_shares(&d.distribution);
        let d = drift(&k(3.0, 5000), &k(4.0, 4000));
        close(d.score, 0.8325546111576977);
        // constant_wasserstein: the std is 0, Evidently norms by 0.001.
        close(
            with(&k(3.0, 5000), &k(4.0, 4000), Method::Wasserstein).score,
            1000.0,
        );
        // constant_small_same: z, p = 1.
        let d = drift(&k(3.0, 10), &k(3.0, 8));
        assert_eq!((d.method, d.score), (Method::Z, 1.0));
        // chi² over one category: scipy answers NaN, we answer 1.
        let s = strs(&[("a", 10)]);
        assert_eq!(with(&s, &s, Method::ChiSquare).score, 1.0);
    }

    #[test]
    fn discrete_numbers() {
        let ints =
            |f: &dyn Fn(i64) -> i64, n: i64| Column::Int((0..n).map(|i| Some(f(i))).collect());
        let (r, c) = (ints(&|i| i % 5, 3000), ints(&|i| i * i % 5, 2000));
        // discrete5_js / discrete5_psi: 5 values over 1000 rows → js.
        let d = drift(&r, &c);
        assert_eq!(d.method, Method::JensenShannon);
        close(d.score, 0.41546268601532493);
        close(with(&r, &c, Method::Psi).score, 3.316099675548903);
        // discrete3_small_chi: 3 values, 500 rows → chisquare.
        let d = drift(&ints(&|i| i % 3, 500), &ints(&|i| i * 7 % 4 % 3, 400));
        assert_eq!(d.method, Method::ChiSquare);
        close(d.score, 1.7368708120299866e-11);
        assert!(d.drifted);
    }

    #[test]
    fn thresholds_and_defaults() {
        let (r, c) = (normal(2000, 1, 0.0), normal(1500, 2, 0.5));
        let opts = ColumnOptions {
            method: None,
            threshold: Some(0.6),
        };
        let d = column_drift("x", &r, &c, opts).expect("drift");
        assert_eq!((d.threshold, d.drifted), (0.6, false));
        assert_eq!(default_method(ColumnKind::Numerical, 1000, 6), Method::Ks);
        assert_eq!(
            default_method(ColumnKind::Numerical, 1001, 6),
            Method::Wasserstein
        );
        assert_eq!(
            default_method(ColumnKind::Numerical, 1000, 5),
            Method::ChiSquare
        );
        assert_eq!(default_method(ColumnKind::Numerical, 1000, 2), Method::Z);
        assert_eq!(
            default_method(ColumnKind::Categorical, 5000, 50),
            Method::JensenShannon
        );
    }

    #[test]
    fn report_categories_are_capped() {
        let spec: Vec<(String, usize)> = (0..30).map(|i| (format!("c{i:02}"), 30 - i)).collect();
        let spec: Vec<(&str, usize)> = spec.iter().map(|(s, k)| (s.as_str(), *k)).collect();
        let col = strs(&spec);
        let d = drift(&col, &col);
        match &d.distribution {
            Distribution::Categories { labels, .. } => {
                assert_eq!(labels.len(), 21);
                assert_eq!(labels[0], "c00");
                assert_eq!(labels[20], "(other)");
            }
            other => panic!("expected categories, got {other:?}"),
        }
        assert_shares(&d.distribution);
    }

    #[test]
    fn errors() {
        let empty = Column::Float(vec![None, Some(f64::NAN)]);
        let some = floats(&[1.0, 2.0]);
        assert!(matches!(
            column_drift("x", &empty, &some, ColumnOptions::default()),
            Err(DriftError::Empty {
                window: "reference",
                ..
            })
        ));
        assert!(matches!(
            column_drift("x", &some, &Column::Float(vec![]), ColumnOptions::default()),
            Err(DriftError::Empty {
                window: "current",
                ..
            })
        ));
        let date = Column::Date(vec![chrono::NaiveDate::from_ymd_opt(2024, 1, 31)]);
        assert!(matches!(
            column_drift("x", &date, &date, ColumnOptions::default()),
            Err(DriftError::Type { .. })
        ));
        let ints = Column::Int(vec![Some(1)]);
        assert!(matches!(
            column_drift("x", &ints, &some, ColumnOptions::default()),
            Err(DriftError::Type { .. })
        ));
        let s = strs(&[("a", 3), ("b", 2)]);
        for m in [Method::Ks, Method::Wasserstein] {
            let opts = ColumnOptions {
                method: Some(m),
                threshold: None,
            };
            assert!(matches!(
                column_drift("x", &s, &s, opts),
                Err(DriftError::Unsupported {
                    kind: ColumnKind::Categorical,
                    ..
                })
            ));
        }
        for m in [Method::ChiSquare, Method::Z] {
            let opts = ColumnOptions {
                method: Some(m),
                threshold: None,
            };
            assert!(matches!(
                column_drift("x", &some, &some, opts),
                Err(DriftError::Unsupported { .. })
            ));
        }
    }
}
