//! Checks of the training kinds: a `TrainingRun`'s label, features and
//! parameters, a `Model`'s production choice and gates. Called by
//! [`super::validate`]; collects every problem.

use std::collections::HashSet;

use super::validate::{ResourceIndex, resolve_reference};
use super::{
    Algorithm, ColumnType, Kind, MaxFeaturesSpec, ModelSpec, ProductionSpec, Resource, SpannedStr,
    Spec, TrainingRunSpec,
};
use crate::diag::{DiagCode, SpecDiagnostic, did_you_mean};

pub(super) fn check_name(r: &Resource, name: &SpannedStr, diags: &mut Vec<SpecDiagnostic>) {
    if !super::is_resource_name(&name.value) {
        diags.push(
            r.diag_at(
                DiagCode::InvalidValue,
                name,
                format!("`{}` is not a valid {} name", name.value, r.id.kind),
            )
            .with_hint(
                "use lower-case letters, digits, `_` and `-`, starting with a letter (at most 63)",
            ),
        );
    }
}

fn table_of<'a>(
    r: &Resource,
    name: &SpannedStr,
    all: &ResourceIndex<'a>,
) -> Option<&'a super::TableSpec> {
    let id = resolve_reference(r, name, Some(Kind::Table), all).ok()?;
    match &all.get(&id)?.spec {
        Spec::Table(t) => Some(t),
        _ => None,
    }
}

/// Checks a training run.
pub fn check_training_run(
    r: &Resource,
    t: &TrainingRunSpec,
    all: &ResourceIndex<'_>,
    diags: &mut Vec<SpecDiagnostic>,
) {
    check_name(r, &t.name, diags);
    if let Err(d) = resolve_reference(r, &t.model, Some(Kind::Model), all) {
        diags.push(d);
    }
    if chrono::NaiveDate::parse_from_str(&t.as_of.value, "%Y-%m-%d").is_err() {
        diags.push(
            r.diag_at(
                DiagCode::InvalidValue,
                &t.as_of,
                format!("`{}` is not a date", t.as_of.value),
            )
            .with_hint("write YYYY-MM-DD, e.g. 2024-01-31"),
        );
    }
    let mut entity_keys: Vec<String> = Vec::new();
    if t.features.is_empty() {
        diags.push(r.diag_at(
            DiagCode::MissingField,
            &t.name,
            "training run has no features",
        ));
    }
    let mut seen = HashSet::new();
    for f in &t.features {
        if !seen.insert(f.value.as_str()) {
            diags.push(r.diag_at(
                DiagCode::DuplicateName,
                f,
                format!("feature `{}` listed twice", f.value),
            ));
            continue;
        }
        let Some((view, feature)) = f.value.split_once('.') else {
            diags.push(
                r.diag_at(
                    DiagCode::InvalidValue,
                    f,
                    format!("`{}` names no feature", f.value),
                )
                .with_hint("write `view.feature`, or `view.*` for every feature of a view"),
            );
            continue;
        };
        let mut at = f.clone();
        at.value = view.to_string();
        let Some(view_spec) = resolve_reference(r, &at, Some(Kind::FeatureView), all)
            .ok()
            .and_then(|id| all.get(&id))
            .and_then(|v| match &v.spec {
                Spec::FeatureView(v) => Some(v),
                _ => None,
            })
        else {
            continue; // reported as a reference
        };
        if let Some(Spec::Entity(e)) =
            resolve_reference(r, &view_spec.entity, Some(Kind::Entity), all)
                .ok()
                .and_then(|id| all.get(&id))
                .map(|e| &e.spec)
        {
            let keys: Vec<String> = e.join_keys.iter().map(|k| k.value.clone()).collect();
            if entity_keys.is_empty() {
                entity_keys = keys;
            } else if entity_keys != keys {
                diags.push(r.diag_at(
                    DiagCode::InvalidValue,
                    f,
                    format!("view `{view}` is about another entity than the run's other features"),
                ));
            }
        }
        if feature != "*" && !view_spec.features.iter().any(|x| x.value == feature) {
            let d = r.diag_at(
                DiagCode::MissingReference,
                f,
                format!("feature view `{view}` has no feature `{feature}`"),
            );
            let names = view_spec.features.iter().map(|x| x.value.as_str());
            diags.push(match did_you_mean(feature, names) {
                Some(s) => d.with_hint(format!("did you mean `{view}.{s}`?")),
                None => d.with_hint(format!("write `{view}.*` for all of its features")),
            });
        }
    }
    if let Some(table) = table_of(r, &t.label.table, all) {
        match table.columns.get(&t.label.column.value) {
            None => {
                let d = r.diag_at(
                    DiagCode::MissingReference,
                    &t.label.column,
                    format!(
                        "table `{}` has no column `{}`",
                        table.name.value, t.label.column.value
                    ),
                );
                diags.push(
                    match did_you_mean(
                        &t.label.column.value,
                        table.columns.keys().map(String::as_str),
                    ) {
                        Some(s) => d.with_hint(format!("did you mean `{s}`?")),
                        None => d,
                    },
                );
            }
            Some(ColumnType::Bool | ColumnType::Int) => {}
            Some(other) => diags.push(r.diag_at(
                DiagCode::InvalidValue,
                &t.label.column,
                format!(
                    "label `{}` is {}; a label must be bool (or int holding 0/1)",
                    t.label.column.value,
                    other.as_str()
                ),
            )),
        }
        for key in &entity_keys {
            if !table.columns.contains_key(key) {
                diags.push(
                    r.diag_at(
                        DiagCode::MissingReference,
                        &t.label.table,
                        format!(
                            "label table `{}` lacks `{key}`, the join key of the features' entity",
                            table.name.value
                        ),
                    )
                    .with_hint("labels are joined to features on the entity's join key"),
                );
            }
        }
    }
    let v = &t.validation;
    if !(v.fraction > 0.0 && v.fraction < 1.0) {
        diags.push(r.diag_at(
            DiagCode::InvalidValue,
            &t.name,
            format!("validation fraction {} is not between 0 and 1", v.fraction),
        ));
    }
    let bad = |what: String| r.diag_at(DiagCode::InvalidValue, &t.name, what);
    match &t.algorithm {
        Algorithm::RandomForest(f) => {
            if f.trees == 0 || f.trees > 10_000 {
                diags.push(bad(format!(
                    "randomForest.trees is {}; use 1 to 10000",
                    f.trees
                )));
            }
            if let MaxFeaturesSpec::Fraction(x) = f.max_features
                && !(x > 0.0 && x <= 1.0)
            {
                diags.push(bad(format!(
                    "randomForest.maxFeatures {x} is not in (0, 1]"
                )));
            }
            if f.min_samples_leaf == 0 {
                diags.push(bad("randomForest.minSamplesLeaf must be at least 1".into()));
            }
        }
        Algorithm::DecisionTree(d) => {
            if d.min_samples_leaf == 0 {
                diags.push(bad("decisionTree.minSamplesLeaf must be at least 1".into()));
            }
        }
        Algorithm::LogisticRegression(l) => {
            if !(l.alpha >= 0.0 && l.alpha.is_finite()) {
                diags.push(bad(format!(
                    "logisticRegression.alpha {} must be ≥ 0",
                    l.alpha
                )));
            }
            if l.max_iterations == 0 {
                diags.push(bad(
                    "logisticRegression.maxIterations must be at least 1".into()
                ));
            }
        }
    }
}

/// Checks a model.
pub fn check_model(
    r: &Resource,
    m: &ModelSpec,
    all: &ResourceIndex<'_>,
    diags: &mut Vec<SpecDiagnostic>,
) {
    check_name(r, &m.name, diags);
    for (metric, condition) in &m.require {
        if let Err(e) = super::Gate::parse(metric, condition) {
            diags.push(
                r.diag_at(DiagCode::InvalidValue, &m.name, format!("require: {e}"))
                    .with_hint("write e.g. `require: { val_auc: \">= 0.75\" }`"),
            );
        }
    }
    let runs_of_model = |run: &SpannedStr| -> Option<String> {
        let id = resolve_reference(r, run, Some(Kind::TrainingRun), all).ok()?;
        match &all.get(&id)?.spec {
            Spec::TrainingRun(t) => Some(t.model.value.clone()),
            _ => None,
        }
    };
    let check_run = |run: &SpannedStr, diags: &mut Vec<SpecDiagnostic>| {
        if let Some(model) = runs_of_model(run)
            && model != m.name.value
        {
            diags.push(r.diag_at(
                DiagCode::InvalidValue,
                run,
                format!(
                    "run `{}` produces versions of `{model}`, not of `{}`",
                    run.value, m.name.value
                ),
            ));
        }
    };
    match &m.production {
        Some(ProductionSpec::Run(run)) if run.value != super::MANUAL => check_run(run, diags),
        Some(ProductionSpec::Best(b)) => {
            if !super::METRICS.contains(&b.best.value.as_str()) {
                diags.push(
                    r.diag_at(
                        DiagCode::InvalidValue,
                        &b.best,
                        format!("unknown metric `{}`", b.best.value),
                    )
                    .with_hint(format!("metrics are {}", super::METRICS.join(", "))),
                );
            }
            if !(b.min_gain >= 0.0 && b.min_gain.is_finite()) {
                diags.push(r.diag_at(
                    DiagCode::InvalidValue,
                    &b.best,
                    format!("minGain {} must be ≥ 0", b.min_gain),
                ));
            }
            if b.among.is_empty() {
                diags.push(r.diag_at(
                    DiagCode::MissingField,
                    &b.best,
                    "a `best` policy needs `among: [run, …]`",
                ));
            }
            for run in &b.among {
                check_run(run, diags);
            }
        }
        Some(ProductionSpec::Version(v)) if v.version == 0 => diags.push(r.diag_at(
            DiagCode::InvalidValue,
            &m.name,
            "versions are numbered from 1",
        )),
        _ => {}
    }
}

/// Checks an endpoint (its model reference is checked with every reference).
pub fn check_endpoint(r: &Resource, e: &super::EndpointSpec, diags: &mut Vec<SpecDiagnostic>) {
    check_name(r, &e.name, diags);
    if e.port == 0 {
        diags.push(r.diag_at(
            DiagCode::InvalidValue,
            &e.name,
            "port 0 is not a port to serve on",
        ));
    }
    if e.host.parse::<std::net::IpAddr>().is_err() {
        diags.push(
            r.diag_at(
                DiagCode::InvalidValue,
                &e.name,
                format!("host `{}` is not an IP address", e.host),
            )
            .with_hint("write 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)"),
        );
    }
    if e.max_batch == 0 || e.max_batch > 100_000 {
        diags.push(r.diag_at(
            DiagCode::InvalidValue,
            &e.name,
            format!("maxBatch {} is not between 1 and 100000", e.max_batch),
        ));
    }
}
