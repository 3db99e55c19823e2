//! The registry: every model with its versions (metrics, training-set hash,
//! stage), its promotion history with causes and which version each of its
//! endpoints serves; and a version's own page with its confusion matrix and
//! ROC curve drawn. The figures are the registry's, as `models show --json`
//! prints them.

use maud::{Markup, html};

use super::layout::{self, Section};
use super::{Ui, UiError, charts};
use crate::kinds::endpoint::Endpoint;
use crate::kinds::model::{METRICS, Model};
use crate::kinds::training_run::ROC_KEY;
use crate::store::registry::{Promotion, Stage, VersionInfo};

/// The metrics shown in the versions table (the rest are on the version page).
const TABLE_METRICS: [&str; 3] = ["val_auc", "val_f1", "val_accuracy"];

/// A metric's cell: four significant digits shown, the exact stored value in
/// `data-value` (what `models show --json` prints).
fn metric_cell(v: &VersionInfo, name: &str) -> Markup {
    match v.metric(name) {
        Some(m) => html! { td.num data-metric=(name) data-value=(m) { (format!("{m:.4}")) } },
        None => html! { td.num data-metric=(name) { "—" } },
    }
}

/// The page of a version.
fn version_href(model: &str, version: i64) -> String {
    format!(
        "/ui/models/{}/{version}",
        percent_encoding::utf8_percent_encode(model, percent_encoding::NON_ALPHANUMERIC)
    )
}

/// The promotion history as a table, newest first.
fn history_table(model: &str, history: &[Promotion]) -> Markup {
    html! {
        @if history.is_empty() {
            p.muted { "No stage changes yet." }
        } @else {
            table.history {
                thead { tr { th { "When" } th { "Version" } th { "From" } th { "To" } th { "Cause" } th { "Reason" } } }
                tbody {
                    @for p in history.iter().rev() {
                        tr data-version=(p.version) data-cause=(p.cause) {
                            td.mono { (layout::time(p.at_ms)) }
                            td { a href=(version_href(model, p.version)) { (p.version) } }
                            td { (layout::badge(&p.from_stage, &p.from_stage)) }
                            td { (layout::badge(&p.to_stage, &p.to_stage)) }
                            td { (p.cause) }
                            td.reason { (p.reason) }
                        }
                    }
                }
            }
        }
    }
}

/// Every model: versions, endpoints, history.
pub async fn list(ui: &Ui) -> Result<Markup, UiError> {
    let s = ui.snapshot().await?;
    let registry = &s.stores.registry();
    let mut names: Vec<String> = s.observed.registry.keys().cloned().collect();
    for (_, m) in s.ws.set.specs::<Model>() {
        if !names.contains(&m.name.value) {
            names.push(m.name.value.clone());
        }
    }
    names.sort();
    let mut sections = Vec::with_capacity(names.len());
    // Owned names: a borrowing iterator held across `.await` makes the
    // handler's future not `Send` for every lifetime (a rustc limitation).
    for name in names.clone() {
        let name = &name;
        let history = registry.history(name).await?;
        let versions = s.observed.registry.get(name).map_or(&[][..], Vec::as_slice);
        let production = versions.iter().find(|v| v.stage == Stage::Production);
        let description =
            s.ws.set
                .spec::<Model>(name)
                .and_then(|m| m.description.clone());
        let endpoints: Vec<(String, Markup)> = s
            .ws
            .set
            .specs::<Endpoint>()
            .filter(|(_, e)| e.model.value == *name)
            .map(|(_, e)| {
                let name = e.name.value.clone();
                let serves = match ui.live.served(&name) {
                    Some(Some(v)) => html! { "serves version " strong data-serves=(v) { (v) } " (in this process)" },
                    Some(None) => html! { "serves nothing: no Production version loaded" },
                    None => match production {
                        Some(p) => html! { "follows Production (version " (p.version) "); not served by this process" },
                        None => html! { "no Production version to serve" },
                    },
                };
                (name, serves)
            })
            .collect();
        sections.push(html! {
            section.model data-model=(name) {
                h2 { (name) }
                @if let Some(d) = &description { p.desc { (d) } }
                dl.cards {
                    div.card { dt { "Production" } dd data-production=[production.map(|p| p.version)] {
                        @match production {
                            Some(p) => { a href=(version_href(name, p.version)) { "version " (p.version) } }
                            None => { "none" }
                        }
                    } }
                    div.card { dt { "Versions" } dd { (versions.len()) } }
                    @for (e, serves) in &endpoints {
                        div.card data-endpoint=(e) { dt { "Endpoint " (e) } dd { (serves) } }
                    }
                }
                h3 { "Versions" }
                @if versions.is_empty() {
                    p.muted { "No version registered yet: apply a TrainingRun of this model." }
                } @else {
                    table.versions {
                        thead { tr {
                            th { "Version" } th { "Stage" } th { "Run" } th { "Algorithm" }
                            @for m in TABLE_METRICS { th.num { (m) } }
                            th { "Training set" } th { "Registered" }
                        } }
                        tbody {
                            @for v in versions.iter().rev() {
                                tr data-version=(v.version) data-stage=(v.stage.as_str()) {
                                    td { a href=(version_href(name, v.version)) { (v.version) } }
                                    td { (layout::badge(v.stage.as_str(), v.stage.as_str())) }
                                    td { (v.run) }
                                    td { (v.algorithm) }
                                    @for m in TABLE_METRICS { (metric_cell(v, m)) }
                                    td data-hash=(v.training_set_hash) { (layout::hash(&v.training_set_hash)) }
                                    td.mono { (layout::time(v.created_ms)) }
                                }
                            }
                        }
                    }
                }
                h3 { "Promotion history" }
                (history_table(name, &history))
            }
        });
    }
    let body = html! {
        @if names.is_empty() { p.muted { "No models: the specs declare none and the registry holds none." } }
        @for s in sections { (s) }
    };
    Ok(layout::page(
        "Models",
        Section::Models,
        Some(30),
        &s.ws.set.project.name.value,
        body,
    ))
}

/// One version: facts, metrics, confusion matrix, ROC curve, features,
/// parameters and its own stage changes.
pub async fn version(ui: &Ui, model: &str, version: &str) -> Result<Markup, UiError> {
    let not_found = || UiError::NotFound {
        what: "model version",
        name: format!("{model}:{version}"),
    };
    let number: i64 = version.parse().map_err(|_| not_found())?;
    let s = ui.snapshot().await?;
    let registry = &s.stores.registry();
    let versions = registry.versions(model).await?;
    let v = versions
        .iter()
        .find(|v| v.version == number)
        .ok_or_else(not_found)?;
    let history: Vec<Promotion> = registry
        .history(model)
        .await?
        .into_iter()
        .filter(|p| p.version == number)
        .collect();
    let confusion: Option<[[u64; 2]; 2]> = v
        .metrics
        .get("confusion")
        .and_then(|c| serde_json::from_value(c.clone()).ok());
    let roc: Option<Vec<[f64; 2]>> = v
        .metrics
        .get(ROC_KEY)
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .filter(|p: &Vec<[f64; 2]>| !p.is_empty());
    let inputs = v
        .features
        .get("inputs")
        .and_then(|f| f.as_array())
        .cloned()
        .unwrap_or_default();
    let params = serde_json::to_string_pretty(&v.params).unwrap_or_default();
    let facts: [(&str, Markup); 8] = [
        ("Stage", layout::badge(v.stage.as_str(), v.stage.as_str())),
        ("Run", html! { (v.run) }),
        ("Algorithm", html! { (v.algorithm) }),
        ("Registered", html! { (layout::time(v.created_ms)) }),
        (
            "Training time",
            html! { (format!("{:.3} s", v.training_ms as f64 / 1000.0)) },
        ),
        ("Training set", layout::hash(&v.training_set_hash)),
        ("Identity", layout::hash(&v.identity)),
        ("Artifact", layout::hash(&v.artifact_hash)),
    ];
    let body = html! {
        p { a href="/ui/models" { "← all models" } }
        dl.cards {
            @for (k, val) in facts { div.card { dt { (k) } dd { (val) } } }
        }
        h2 { "Validation metrics" }
        table.metrics data-model=(v.model) data-version=(v.version) {
            thead { tr { th { "Metric" } th.num { "Value" } } }
            tbody {
                @for m in METRICS {
                    tr { td { code { (m) } } (metric_cell(v, m)) }
                }
            }
        }
        div.charts {
            figure {
                figcaption { "Confusion matrix (threshold 0.5)" }
                @match confusion {
                    Some(c) => { (charts::confusion(c)) }
                    None => { p.muted { "not recorded" } }
                }
            }
            figure {
                figcaption { "ROC curve" }
                @match &roc {
                    Some(points) => { (charts::roc(points, v.metric("val_auc"))) }
                    None => { p.muted data-roc="missing" { "not recorded (registered before ROC curves were kept)" } }
                }
            }
        }
        h2 { "Features (" (inputs.len()) ")" }
        table.features {
            thead { tr { th { "Feature" } th { "Type" } } }
            tbody {
                @for f in &inputs {
                    tr {
                        td { code { (f.get("name").and_then(|x| x.as_str()).unwrap_or("?")) } }
                        td { (f.get("type").and_then(|x| x.as_str()).unwrap_or("?")) }
                    }
                }
            }
        }
        h2 { "Stage changes of this version" }
        (history_table(model, &history))
        h2 { "Parameters" }
        pre.params { (params) }
    };
    Ok(layout::page(
        &format!("{} version {}", v.model, v.version),
        Section::Models,
        None,
        &s.ws.set.project.name.value,
        body,
    ))
}
