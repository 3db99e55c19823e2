//! Deterministic generator of the StreamFlow example data.
//!
//! `cargo run --release --example streamflow_gen -- --out specs/data` writes one
//! folder per month named by its as-of date (`2024-01-31`, `2024-02-29`), each
//! with six CSVs named after their tables. Same seed, same bytes.
//! `--users N` scales it (the scale benchmark writes 7 k to 7 M users): the same
//! draws in the same order, so the first users of a larger set are not the
//! small set's, but every size is deterministic. Rows are streamed to the
//! files, so memory is the users' profiles (about 200 bytes each), not the CSVs.
//!
//! The churn model: a logistic score in which short tenure, month-to-month
//! contracts, fibre and high fees raise churn, and low engagement (few watch
//! hours, many rebuffers), failed payments and support tickets raise it too, plus
//! noise so a good model lands near AUC 0.80–0.85, not 0.99. The intercept is
//! solved so churn is ~26 % in the first month and ~20 % in the second.
//!
//! Between the months profiles stay the same (tenure +1, total paid + one fee)
//! while usage drifts: rebuffering rises sharply, failed payments and tickets rise
//! moderately, watch hours fall a little — the drift a monitor must see.
//!
//! Warts real exports have, kept on purpose: `users.has_dependents` is constant
//! (`False`) in this export; eleven users have zero tenure and an empty
//! `total_paid`; values sit exactly at bounds (tenure 72, fee 18.00 and 119.00);
//! `plan_stream_tv` / `plan_stream_movies` are empty for users without an internet
//! service (`net_service = No`); `ticket_avg_resolution_hrs_90d` is empty for
//! users with no ticket.

use std::collections::HashSet;
use std::io::{self, BufWriter, Write as _};
use std::path::Path;

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

/// Users in the example, as in the course data.
pub const USERS: usize = 7043;
const SEED: u64 = 42;
const ZERO_TENURE: usize = 11;

struct Draw(ChaCha8Rng);

impl Draw {
    fn uniform(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        mean + sd * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    fn bern(&mut self, p: f64) -> bool {
        self.uniform() < p
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0.next_u64() % n
    }
    fn poisson(&mut self, lambda: f64) -> i64 {
        let l = (-lambda).exp();
        let (mut k, mut p) = (0i64, 1.0);
        loop {
            p *= self.uniform();
            if p <= l {
                return k;
            }
            k += 1;
        }
    }
}

struct User {
    id: String,
    /// Days before 2024-01-31 the user signed up (formatted when written).
    signup_days_back: i64,
    gender: &'static str,
    senior: bool,
    family: bool,
    months: i64,
    contract: &'static str,
    net: &'static str,
    tv: Option<bool>,
    movies: Option<bool>,
    paperless: bool,
    fee: f64,
    total: Option<f64>,
    engagement: f64,
}

struct Usage {
    watch: f64,
    session: f64,
    devices: i64,
    skips: i64,
    rebuffer: i64,
    failed: i64,
    tickets: i64,
    resolution: Option<f64>,
}

fn b(v: bool) -> &'static str {
    if v { "True" } else { "False" }
}

fn ob(v: Option<bool>) -> &'static str {
    v.map_or("", b)
}

/// An id `dddd-LLLLL` as a number, for the set of ids seen (8 bytes a user
/// rather than a string: the 7 M-user set fits in a few hundred MB).
fn id_number(digits: u64, letters: &[u8]) -> u64 {
    letters
        .iter()
        .fold(digits, |n, l| n * 26 + u64::from(l - b'A'))
}

fn users(d: &mut Draw, n: usize) -> Vec<User> {
    // The first account is the course's well-known example id, so docs can use it.
    let mut seen = HashSet::from([id_number(7590, b"VHVEG")]);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let digits = d.below(10_000);
        let letters: Vec<u8> = (0..5).map(|_| b'A' + d.below(26) as u8).collect();
        if !out.is_empty() && !seen.insert(id_number(digits, &letters)) {
            continue;
        }
        let id = if out.is_empty() {
            "7590-VHVEG".to_string()
        } else {
            format!("{digits:04}-{}", String::from_utf8_lossy(&letters))
        };
        let contract = match d.uniform() {
            x if x < 0.55 => "Month-to-month",
            x if x < 0.76 => "One year",
            _ => "Two year",
        };
        let months = match contract {
            "Month-to-month" => (-d.uniform().max(1e-9).ln() * 18.0).round() as i64 + 1,
            "One year" => 1 + d.below(72) as i64,
            _ => (d.normal(58.0, 14.0)).round() as i64,
        }
        .clamp(1, 72);
        let net = match d.uniform() {
            x if x < 0.34 => "DSL",
            x if x < 0.78 => "Fiber optic",
            _ => "No",
        };
        let (tv, movies) = if net == "No" {
            (None, None)
        } else {
            let p = if net == "Fiber optic" { 0.55 } else { 0.4 };
            (Some(d.bern(p)), Some(d.bern(p)))
        };
        let base = match net {
            "No" => d.normal(20.0, 2.5),
            "DSL" => d.normal(55.0, 14.0),
            _ => d.normal(88.0, 12.0),
        };
        let extras = 10.0 * f64::from(u8::from(tv == Some(true)))
            + 10.0 * f64::from(u8::from(movies == Some(true)));
        let fee = ((base + extras).clamp(18.0, 119.0) * 100.0).round() / 100.0;
        let total = Some(((fee * months as f64 * d.normal(1.0, 0.03)) * 100.0).round() / 100.0);
        let signup_days_back = months * 30 + d.below(28) as i64;
        out.push(User {
            id,
            signup_days_back,
            gender: if d.bern(0.5) { "Male" } else { "Female" },
            senior: d.bern(0.16),
            family: d.bern(0.48),
            months,
            contract,
            net,
            tv,
            movies,
            paperless: d.bern(0.59),
            fee,
            total,
            engagement: d.normal(0.0, 1.0),
        });
    }
    // Brand-new users: zero tenure, nothing paid yet (an empty cell, not 0).
    for i in 0..ZERO_TENURE.min(n) {
        let u = &mut out[(i * 613 + 101) % n];
        u.months = 0;
        u.total = None;
        u.contract = "Two year";
    }
    out
}

/// `2024-01-31` minus `days`, as YYYY-MM-DD, without a date library.
fn chrono_like_date(days: i64) -> String {
    // Days from civil (Howard Hinnant's algorithm), both directions.
    fn to_days(y: i64, m: i64, d: i64) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe
    }
    fn from_days(z: i64) -> (i64, i64, i64) {
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        (y, m, d)
    }
    let (y, m, d) = from_days(to_days(2024, 1, 31) - days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Usage of one month; `drift` 0 for month 0, 1 for month 1.
fn usage(d: &mut Draw, u: &User, drift: f64) -> Usage {
    let e = u.engagement;
    let watch = (d.normal(34.0 + 9.0 * e, 10.0) * (1.0 - 0.07 * drift)).max(0.0);
    let tickets = d.poisson((0.6 - 0.15 * e).max(0.05) * (1.0 + 0.3 * drift));
    Usage {
        watch: (watch * 10.0).round() / 10.0,
        session: (d.normal(42.0 + 6.0 * e, 12.0).max(1.0) * 10.0).round() / 10.0,
        devices: 1 + d.poisson(1.2 + 0.3 * e.max(0.0)).min(4),
        skips: d.poisson((6.0 - 1.5 * e).max(0.5)),
        rebuffer: d.poisson((1.8 - 0.4 * e).max(0.3) + 1.8 * drift),
        failed: d.poisson(
            if u.contract == "Month-to-month" {
                0.35
            } else {
                0.12
            } * (1.0 + 0.5 * drift),
        ),
        tickets,
        resolution: (tickets > 0).then(|| (d.normal(22.0, 9.0).max(0.5) * 10.0).round() / 10.0),
    }
}

fn score(u: &User, g: &Usage, noise: f64) -> f64 {
    let contract = match u.contract {
        "Month-to-month" => 1.4,
        "One year" => 0.2,
        _ => -0.9,
    };
    let fiber = if u.net == "Fiber optic" { 0.6 } else { 0.0 };
    contract + fiber - 0.035 * u.months as f64 + 0.012 * (u.fee - 65.0) - 0.025 * (g.watch - 34.0)
        + 0.12 * g.rebuffer as f64
        + 0.45 * g.failed as f64
        + 0.25 * g.tickets as f64
        + noise
}

/// Intercept giving the target mean churn probability (bisection).
fn intercept(scores: &[f64], target: f64) -> f64 {
    let (mut lo, mut hi) = (-10.0, 10.0);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        let mean = scores
            .iter()
            .map(|s| 1.0 / (1.0 + (-(s + mid)).exp()))
            .sum::<f64>()
            / scores.len() as f64;
        if mean < target { lo = mid } else { hi = mid }
    }
    (lo + hi) / 2.0
}

fn write_month(
    dir: &Path,
    users: &[User],
    usage: &[Usage],
    labels: &[bool],
    month: i64,
) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let headers: [(&str, &str); 6] = [
        (
            "users",
            "user_id,signup_date,user_gender,user_is_senior,has_family,has_dependents",
        ),
        (
            "subscriptions",
            "user_id,months_active,plan_stream_tv,plan_stream_movies,contract_type,paperless_billing,monthly_fee,total_paid,net_service",
        ),
        (
            "usage_agg_30d",
            "user_id,watch_hours_30d,avg_session_mins_7d,unique_devices_30d,skips_7d,rebuffer_events_7d",
        ),
        ("payments_agg_90d", "user_id,failed_payments_90d"),
        (
            "support_agg_90d",
            "user_id,support_tickets_90d,ticket_avg_resolution_hrs_90d",
        ),
        ("labels", "user_id,churn_label"),
    ];
    let mut files = Vec::with_capacity(headers.len());
    for (name, header) in headers {
        let mut w = BufWriter::with_capacity(
            1 << 16,
            std::fs::File::create(dir.join(format!("{name}.csv")))?,
        );
        writeln!(w, "{header}")?;
        files.push(w);
    }
    for ((u, g), label) in users.iter().zip(usage).zip(labels) {
        let months = (u.months + month).min(72);
        let total = match (u.total, month) {
            (None, 0) => None,
            (None, _) => Some(u.fee * month as f64),
            (Some(t), m) => Some(if u.months + m <= 72 {
                t + u.fee * m as f64
            } else {
                t
            }),
        };
        let total = total.map_or(String::new(), |t| {
            format!("{:.2}", (t * 100.0).round() / 100.0)
        });
        writeln!(
            files[0],
            "{},{},{},{},{},False",
            u.id,
            chrono_like_date(u.signup_days_back),
            u.gender,
            b(u.senior),
            b(u.family)
        )?;
        writeln!(
            files[1],
            "{},{months},{},{},{},{},{:.2},{total},{}",
            u.id,
            ob(u.tv),
            ob(u.movies),
            u.contract,
            b(u.paperless),
            u.fee,
            u.net
        )?;
        writeln!(
            files[2],
            "{},{:.1},{:.1},{},{},{}",
            u.id, g.watch, g.session, g.devices, g.skips, g.rebuffer
        )?;
        writeln!(files[3], "{},{}", u.id, g.failed)?;
        let resolution = g.resolution.map_or(String::new(), |r| format!("{r:.1}"));
        writeln!(files[4], "{},{},{resolution}", u.id, g.tickets)?;
        writeln!(files[5], "{},{}", u.id, b(*label))?;
    }
    for mut w in files {
        w.flush()?;
    }
    Ok(())
}

/// The as-of date of each month: its folder's name, so a glob over the
/// folders (`data/*/users.csv`) dates every snapshot.
const AS_OF: [&str; 2] = ["2024-01-31", "2024-02-29"];

/// Writes both months under `out`, a folder per as-of date.
#[allow(dead_code)]
pub fn generate(out: &Path) -> io::Result<()> {
    generate_users(out, USERS)
}

/// As [`generate`], with `n` users instead of the course's 7 043.
pub fn generate_users(out: &Path, n: usize) -> io::Result<()> {
    let mut d = Draw(ChaCha8Rng::seed_from_u64(SEED));
    let users = users(&mut d, n);
    for (month, target) in [(0i64, 0.26), (1, 0.20)] {
        let usage: Vec<Usage> = users
            .iter()
            .map(|u| usage(&mut d, u, month as f64))
            .collect();
        let scores: Vec<f64> = users
            .iter()
            .zip(&usage)
            .map(|(u, g)| score(u, g, d.normal(0.0, 0.9)))
            .collect();
        let c = intercept(&scores, target);
        let labels: Vec<bool> = scores
            .iter()
            .map(|s| d.bern(1.0 / (1.0 + (-(s + c)).exp())))
            .collect();
        write_month(
            &out.join(AS_OF[month as usize]),
            &users,
            &usage,
            &labels,
            month,
        )?;
    }
    Ok(())
}

#[allow(dead_code)]
fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let out = match args.iter().position(|a| a == "--out") {
        Some(i) => args
            .get(i + 1)
            .cloned()
            .unwrap_or_else(|| "specs/data".into()),
        None => "specs/data".into(),
    };
    let users = match args.iter().position(|a| a == "--users") {
        Some(i) => match args.get(i + 1).map(|n| n.replace('_', "").parse::<usize>()) {
            Some(Ok(n)) if n > 0 => n,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "--users takes a positive count, e.g. --users 700000",
                ));
            }
        },
        None => USERS,
    };
    generate_users(Path::new(&out), users)?;
    println!("wrote StreamFlow data for {users} users under {out}");
    Ok(())
}
