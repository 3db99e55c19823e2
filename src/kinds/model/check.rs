//! Checks of a `Model`: its gates parse, the runs its production choice names
//! produce versions of this model, the policy's metric exists.

use super::spec::{Gate, MANUAL, METRICS, ModelSpec, ProductionSpec};
use crate::diag::{DiagCode, SpecDiagnostic};
use crate::kinds::CheckContext;
use crate::kinds::training_run::TrainingRun;
use crate::spec::validate::check_resource_name;
use crate::spec::{Resource, SpannedStr};

/// Checks a model.
pub fn check_model(
    cx: &CheckContext<'_>,
    r: &Resource,
    m: &ModelSpec,
    diags: &mut Vec<SpecDiagnostic>,
) {
    check_resource_name(r, &m.name, diags);
    for (metric, condition) in &m.require {
        if let Err(e) = Gate::parse(metric, condition) {
            diags.push(
                r.diag_at(DiagCode::InvalidValue, &m.name, format!("require: {e}"))
                    .with_hint("write e.g. `require: { val_auc: \">= 0.75\" }`"),
            );
        }
    }
    let runs_of_model = |run: &SpannedStr| -> Option<String> {
        cx.resolve::<TrainingRun>(r, run)
            .map(|t| t.model.value.clone())
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
        Some(ProductionSpec::Run(run)) if run.value != MANUAL => check_run(run, diags),
        Some(ProductionSpec::Best(b)) => {
            if !METRICS.contains(&b.best.value.as_str()) {
                diags.push(
                    r.diag_at(
                        DiagCode::InvalidValue,
                        &b.best,
                        format!("unknown metric `{}`", b.best.value),
                    )
                    .with_hint(format!("metrics are {}", METRICS.join(", "))),
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
