//! Checks of a `Monitor`: its model, features, reference, per-feature
//! methods, prediction window, decay labels and the runs it retrains.
//! Collects every problem.

use std::collections::HashSet;

use super::spec::{MonitorSpec, ReferenceSpec};
use crate::diag::{DiagCode, SpecDiagnostic, did_you_mean};
use crate::drift::Method;
use crate::kinds::feature_view::{FeatureView, parse_ttl};
use crate::kinds::table::Table;
use crate::kinds::training_run::TrainingRun;
use crate::kinds::{CheckContext, Kind};
use crate::spec::validate::{check_resource_name, resolve_reference};
use crate::spec::{ColumnType, Resource};

/// Checks a monitor.
pub fn check_monitor(
    cx: &CheckContext<'_>,
    r: &Resource,
    m: &MonitorSpec,
    diags: &mut Vec<SpecDiagnostic>,
) {
    check_resource_name(r, &m.name, diags);
    // The model and the endpoint are read, not waited for: no graph edge
    // (the endpoint comes after the runs this monitor retrains), so the
    // generic reference check does not see them.
    if let Err(d) = resolve_reference(r, &m.model, Some(Kind::Model), cx.index) {
        diags.push(d);
    }
    if m.features.is_empty() && m.predictions.is_none() && m.decay.is_none() {
        diags.push(
            r.diag_at(
                DiagCode::MissingField,
                &m.name,
                "the monitor watches nothing",
            )
            .with_hint("give `features` (data drift), `predictions` or `decay`"),
        );
    }
    let mut watched: Vec<(String, ColumnType)> = Vec::new();
    let mut seen = HashSet::new();
    for f in &m.features {
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
        let table = cx.resolve::<Table>(r, &view_spec.table);
        let mut found = false;
        for x in &view_spec.features {
            if feature == "*" || x.value == feature {
                found = true;
                let ty = table
                    .and_then(|t| t.columns.get(&x.value).copied())
                    .unwrap_or(ColumnType::String);
                if ty == ColumnType::Date {
                    diags.push(
                        r.diag_at(
                            DiagCode::InvalidValue,
                            f,
                            format!("`{view}.{}` is a date; dates have no drift test", x.value),
                        )
                        .with_hint("watch a number or a category derived from it"),
                    );
                }
                watched.push((format!("{view}.{}", x.value), ty));
            }
        }
        if !found {
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
    match &m.reference {
        Some(ReferenceSpec::Named(word)) if word.value != "production" => diags.push(
            r.diag_at(
                DiagCode::InvalidValue,
                word,
                format!("unknown reference `{}`", word.value),
            )
            .with_hint("write `production` or `{asOf: YYYY-MM-DD}`"),
        ),
        Some(ReferenceSpec::AsOf(a))
            if chrono::NaiveDate::parse_from_str(&a.as_of.value, "%Y-%m-%d").is_err() =>
        {
            diags.push(
                r.diag_at(
                    DiagCode::InvalidValue,
                    &a.as_of,
                    format!("`{}` is not a date", a.as_of.value),
                )
                .with_hint("write YYYY-MM-DD, e.g. 2024-01-31"),
            );
        }
        _ => {}
    }
    if !(m.drift_share > 0.0 && m.drift_share <= 1.0) {
        diags.push(r.diag_at(
            DiagCode::InvalidValue,
            &m.name,
            format!("driftShare {} is not in (0, 1]", m.drift_share),
        ));
    }
    for (column, c) in &m.columns {
        let Some((_, ty)) = watched.iter().find(|(w, _)| w == column) else {
            let d = r.diag_at(
                DiagCode::MissingReference,
                &m.name,
                format!("`columns` names `{column}`, which the monitor does not watch"),
            );
            diags.push(
                match did_you_mean(column, watched.iter().map(|(w, _)| w.as_str())) {
                    Some(s) => d.with_hint(format!("did you mean `{s}`?")),
                    None => d.with_hint("name a feature listed in `features`, as `view.feature`"),
                },
            );
            continue;
        };
        if let Some(method) = c.method
            && !applies(method, *ty)
        {
            diags.push(r.diag_at(
                DiagCode::InvalidValue,
                &m.name,
                format!(
                    "method `{}` does not apply to `{column}` ({})",
                    method.as_str(),
                    ty.as_str()
                ),
            ));
        }
        if let Some(t) = c.threshold
            && !(t > 0.0 && t.is_finite())
        {
            diags.push(r.diag_at(
                DiagCode::InvalidValue,
                &m.name,
                format!("threshold {t} of `{column}` must be a positive number"),
            ));
        }
    }
    if let Some(p) = &m.predictions {
        if let Err(d) = resolve_reference(r, &p.endpoint, Some(Kind::Endpoint), cx.index) {
            diags.push(d);
        }
        if parse_ttl(&p.window.value).is_none() {
            diags.push(
                r.diag_at(
                    DiagCode::InvalidValue,
                    &p.window,
                    format!("`{}` is not a window", p.window.value),
                )
                .with_hint("write a duration such as 7d, 12h or 1d12h"),
            );
        }
        if crate::duration::parse(&p.every.value).map_or(true, |d| d.is_zero()) {
            diags.push(
                r.diag_at(
                    DiagCode::InvalidValue,
                    &p.every,
                    format!("`{}` is not a period", p.every.value),
                )
                .with_hint("write a duration such as 1h, 15m or 30s"),
            );
        }
        if p.min_rows == 0 {
            diags.push(r.diag_at(
                DiagCode::InvalidValue,
                &p.endpoint,
                "predictions.minRows must be at least 1",
            ));
        }
    }
    if let Some(decay) = &m.decay {
        if let Some(table) = cx.resolve::<Table>(r, &decay.label.table) {
            match table.columns.get(&decay.label.column.value) {
                Some(ColumnType::Bool | ColumnType::Int) => {}
                Some(other) => diags.push(r.diag_at(
                    DiagCode::InvalidValue,
                    &decay.label.column,
                    format!(
                        "label `{}` is {}; a label must be bool (or int holding 0/1)",
                        decay.label.column.value,
                        other.as_str()
                    ),
                )),
                None => {
                    let d = r.diag_at(
                        DiagCode::MissingReference,
                        &decay.label.column,
                        format!(
                            "table `{}` has no column `{}`",
                            table.name.value, decay.label.column.value
                        ),
                    );
                    diags.push(
                        match did_you_mean(
                            &decay.label.column.value,
                            table.columns.keys().map(String::as_str),
                        ) {
                            Some(s) => d.with_hint(format!("did you mean `{s}`?")),
                            None => d,
                        },
                    );
                }
            }
        }
        if !(decay.max_auc_drop >= 0.0 && decay.max_auc_drop < 1.0) {
            diags.push(r.diag_at(
                DiagCode::InvalidValue,
                &decay.label.table,
                format!("decay.maxAucDrop {} is not in [0, 1)", decay.max_auc_drop),
            ));
        }
    }
    for run in m.on_drift.iter().flat_map(|o| &o.retrain) {
        // A reverse edge: the generic reference check skips it.
        match resolve_reference(r, run, Some(Kind::TrainingRun), cx.index) {
            Err(d) => diags.push(d),
            Ok(_) => {
                if let Some(t) = cx.resolve::<TrainingRun>(r, run)
                    && t.model.value != m.model.value
                {
                    diags.push(r.diag_at(
                        DiagCode::InvalidValue,
                        run,
                        format!(
                            "run `{}` trains model `{}`, not `{}`, the model this monitor watches",
                            run.value, t.model.value, m.model.value
                        ),
                    ));
                }
            }
        }
    }
}

/// Whether a method can test a column of this type.
fn applies(method: Method, ty: ColumnType) -> bool {
    let numerical = matches!(ty, ColumnType::Int | ColumnType::Float);
    match method {
        Method::Ks | Method::Wasserstein => numerical,
        Method::ChiSquare | Method::Z | Method::JensenShannon | Method::Psi => true,
    }
}
