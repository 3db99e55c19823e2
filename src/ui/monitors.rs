//! The monitors: each one's newest verdict; a monitor's page with its
//! columns' drift over time (one sparkline per column across its stored
//! evaluations) and its evaluation history; and the newest evaluation as the
//! drift report with its charts (the same page `monitor report --html`
//! writes, from `drift::report`).

use maud::{Markup, html};

use super::layout::{self, Section};
use super::{Ui, UiError, charts};
use crate::drift::ColumnDrift;
use crate::kinds::monitor::Monitor;
use crate::store::monitors::{Evaluation, MonitorStore};

/// Evaluations read for the drift-over-time charts (the newest kept).
const HISTORY: i64 = 100;

async fn store(
    ui: &Ui,
) -> Result<(std::sync::Arc<super::snapshot::Snapshot>, MonitorStore), UiError> {
    let s = ui.snapshot().await?;
    let stores = &s.stores;
    let store = MonitorStore::new(stores.state.db.clone(), stores.state.project.clone());
    Ok((s, store))
}

fn monitor_href(name: &str) -> String {
    format!(
        "/ui/monitors/{}",
        percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
    )
}

/// Every column an evaluation tested: data first, then predictions.
fn columns(e: &Evaluation) -> impl Iterator<Item = &ColumnDrift> {
    [&e.report.data, &e.report.predictions]
        .into_iter()
        .flatten()
        .flat_map(|d| &d.columns)
}

fn verdict(e: &Evaluation) -> Markup {
    if e.drifted {
        layout::badge("fired", "fired")
    } else {
        layout::badge("ok", "quiet")
    }
}

/// The newest verdict of every monitor.
pub async fn list(ui: &Ui) -> Result<Markup, UiError> {
    let (s, store) = store(ui).await?;
    let latest = store.latest_all().await?;
    let mut names: Vec<String> =
        s.ws.set
            .specs::<Monitor>()
            .map(|(_, m)| m.name.value.clone())
            .collect();
    for e in &latest {
        if !names.contains(&e.monitor) {
            names.push(e.monitor.clone());
        }
    }
    let body = html! {
        @if names.is_empty() {
            p.muted { "No monitors: the specs declare none." }
        } @else {
            table.monitors {
                thead { tr { th { "Monitor" } th { "Model" } th { "Verdict" } th { "Evaluated" } th { "Summary" } } }
                tbody {
                    @for name in &names {
                        @let e = latest.iter().find(|e| e.monitor == *name);
                        @let spec = s.ws.set.spec::<Monitor>(name);
                        tr data-monitor=(name) data-drifted=[e.map(|e| e.drifted)] {
                            td {
                                a href=(monitor_href(name)) { (name) }
                                @if let Some(d) = spec.and_then(|m| m.description.as_ref()) { span.desc { (d) } }
                            }
                            td { (spec.map_or("—", |m| m.model.value.as_str())) }
                            @match e {
                                Some(e) => {
                                    td { (verdict(e)) }
                                    td.mono { (layout::time(e.evaluated_ms)) }
                                    td.reason { (e.summary) }
                                }
                                None => {
                                    td { (layout::badge("absent", "not evaluated")) }
                                    td { "—" }
                                    td.reason.muted { "Not evaluated yet: apply evaluates it once its inputs exist." }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(
        "Monitors",
        Section::Monitors,
        Some(30),
        &s.ws.set.project.name.value,
        body,
    ))
}

/// One monitor: verdict, decay, each column's newest score with its drift
/// over time, and the evaluation history.
pub async fn page(ui: &Ui, name: &str) -> Result<Markup, UiError> {
    let (s, store) = store(ui).await?;
    let history = store.history(name, HISTORY).await?;
    let spec = s.ws.set.spec::<Monitor>(name);
    if spec.is_none() && history.is_empty() {
        return Err(UiError::NotFound {
            what: "monitor",
            name: name.to_string(),
        });
    }
    let latest = history.last();
    let body = html! {
        p { a href="/ui/monitors" { "← all monitors" } }
        @if let Some(d) = spec.and_then(|m| m.description.as_ref()) { p.desc { (d) } }
        @match latest {
            None => { p.muted { "Not evaluated yet." } }
            Some(e) => {
                dl.cards {
                    div.card { dt { "Verdict" } dd data-drifted=(e.drifted) { (verdict(e)) } }
                    div.card { dt { "Evaluated" } dd { (layout::time(e.evaluated_ms)) } }
                    div.card { dt { "Reference" } dd { (e.reference) } }
                    div.card { dt { "Current" } dd { (e.current) } }
                }
                p.summary { (e.summary) }
                p { a href={ (monitor_href(name)) "/report" } { "The full report, with each column's distributions →" } }
                @if let Some(d) = &e.report.decay {
                    h2 { "Decay of version " (d.version) }
                    p {
                        "AUC " strong { (layout::number(d.current_auc)) } " on " (d.rows) " labels as of " (d.labels_as_of)
                        " vs " (layout::number(d.validation_auc)) " at validation (largest drop tolerated "
                        (layout::number(d.max_auc_drop)) "): "
                        @if d.decayed { (layout::badge("fired", "decayed")) } @else { (layout::badge("ok", "holds")) }
                    }
                    @let aucs: Vec<f64> = history.iter().map(|h| h.report.decay.as_ref().map_or(f64::NAN, |d| d.current_auc)).collect();
                    (charts::sparkline(&aucs, None, &[], "AUC on newer labels, evaluation by evaluation"))
                }
                h2 { "Columns: newest score and drift over time" }
                p.muted { (history.len()) " evaluation(s), oldest left; dashed: the threshold; red points: drifted." }
                table.columns {
                    thead { tr {
                        th { "Column" } th { "Method" } th.num { "Score" } th.num { "Threshold" }
                        th { "Drift" } th { "Over time" }
                    } }
                    tbody {
                        @for c in columns(e) {
                            @let series: Vec<(f64, bool)> = history.iter().map(|h| {
                                columns(h).find(|x| x.column == c.column).map_or((f64::NAN, false), |x| (x.score, x.drifted))
                            }).collect();
                            @let scores: Vec<f64> = series.iter().map(|p| p.0).collect();
                            @let marked: Vec<bool> = series.iter().map(|p| p.1).collect();
                            tr class=[c.drifted.then_some("drifted")] data-column=(c.column) data-score=(c.score) {
                                td { code { (c.column) } }
                                td { (c.method.as_str()) }
                                td.num { (layout::number(c.score)) }
                                td.num { (layout::number(c.threshold)) }
                                td { @if c.drifted { (layout::badge("fired", "drifted")) } @else { (layout::badge("ok", "no drift")) } }
                                td { (charts::sparkline(&scores, Some(c.threshold), &marked, &format!("{} score over {} evaluations", c.column, scores.len()))) }
                            }
                        }
                    }
                }
            }
        }
        h2 { "History" }
        @if history.is_empty() {
            p.muted { "No evaluations." }
        } @else {
            table.history {
                thead { tr { th { "Evaluated" } th { "Verdict" } th { "Windows" } th { "Summary" } } }
                tbody {
                    @for e in history.iter().rev() {
                        tr data-evaluation=(e.id) {
                            td.mono { (layout::time(e.evaluated_ms)) }
                            td { (verdict(e)) }
                            td { (e.current) " against " (e.reference) }
                            td.reason { (e.summary) }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(
        &format!("Monitor {name}"),
        Section::Monitors,
        Some(30),
        &s.ws.set.project.name.value,
        body,
    ))
}

/// The newest evaluation as the self-contained drift report.
pub async fn report(ui: &Ui, name: &str) -> Result<String, UiError> {
    let (_, store) = store(ui).await?;
    let e = store.latest(name).await?.ok_or_else(|| UiError::NotFound {
        what: "evaluation of monitor",
        name: name.to_string(),
    })?;
    Ok(e.html())
}
