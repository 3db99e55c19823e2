//! Checks of a `TrainingRun`: its model, date, label, features (one entity)
//! and algorithm parameters. Collects every problem.

use std::collections::HashSet;

use super::spec::{Algorithm, MaxFeaturesSpec, MaxSamplesSpec, TrainingRunSpec};
use crate::diag::{DiagCode, SpecDiagnostic, did_you_mean};
use crate::kinds::entity::Entity;
use crate::kinds::feature_view::FeatureView;
use crate::kinds::table::Table;
use crate::kinds::{CheckContext, Kind};
use crate::spec::validate::{check_resource_name, resolve_reference};
use crate::spec::{ColumnType, Resource};

/// Checks a training run.
pub fn check_training_run(
    cx: &CheckContext<'_>,
    r: &Resource,
    t: &TrainingRunSpec,
    diags: &mut Vec<SpecDiagnostic>,
) {
    check_resource_name(r, &t.name, diags);
    // The model is a reverse edge, so the generic reference check skips it.
    if let Err(d) = resolve_reference(r, &t.model, Some(Kind::Model), cx.index) {
        diags.push(d);
    }
    if t.as_of.value != super::LATEST
        && chrono::NaiveDate::parse_from_str(&t.as_of.value, "%Y-%m-%d").is_err()
    {
        diags.push(
            r.diag_at(
                DiagCode::InvalidValue,
                &t.as_of,
                format!("`{}` is not a date", t.as_of.value),
            )
            .with_hint(
                "write YYYY-MM-DD, e.g. 2024-01-31, or `latest` (the newest label snapshot)",
            ),
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
        let Some(view_spec) = cx.resolve::<FeatureView>(r, &at) else {
            continue; // reported as a reference
        };
        if let Some(e) = cx.resolve::<Entity>(r, &view_spec.entity) {
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
    if let Some(table) = cx.resolve::<Table>(r, &t.label.table) {
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
            match f.max_samples {
                Some(MaxSamplesSpec::Count(0)) => {
                    diags.push(bad("randomForest.maxSamples must be at least 1".into()));
                }
                Some(MaxSamplesSpec::Fraction(x)) if !(x > 0.0 && x <= 1.0) => {
                    diags.push(bad(format!("randomForest.maxSamples {x} is not in (0, 1]")));
                }
                _ => {}
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
