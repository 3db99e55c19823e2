//! `Model`: keeps the registry's Production version where the spec says — the
//! version a run produced, a pinned version, or the winner of a `best` policy —
//! behind the spec's gates. A stage changed behind the controller's back is drift:
//! the plan shows it and apply restores the spec's choice (unless `manual`).
//!
//! [`choose`] is pure: the plan and the apply make the same decision from the
//! same facts; the promotion itself is one registry transaction.

use std::collections::HashMap;

pub mod check;
pub mod spec;

use serde::Serialize;

use super::record::{self, changed_fields};
use super::training_run::{self, RunInputs, TrainingRun};
use super::{
    Applied, ApplyContext, ApplyError, CheckContext, Desired, Kind, Member, Observed, Reference,
    ResourceKind, Upstream,
};
use crate::diag::SpecDiagnostic;
use crate::plan::{Action, PlanOptions, ResourcePlan};
use crate::spec::{Resource, ResourceId, SpannedStr, SpecSet};
use crate::store::registry::{Cause, Stage, VersionInfo};
use crate::store::state::Condition;
pub use spec::{MANUAL, METRICS, ModelSpec, ProductionSpec, higher_is_better};

/// What applying a model does.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum ModelOp {
    /// Choose the Production version and promote it.
    Promote,
}

/// The runs that produce versions of a model, with their desired hashes: a
/// changed run changes the model's hash, so the plan shows that Production will
/// be decided again.
#[derive(Debug, Clone, Default)]
pub struct ModelInputs {
    /// (run name, run spec hash), sorted by name.
    pub runs: Vec<(String, String)>,
    /// The runs' inputs, to rebuild a challenger's training set when the
    /// champion must be scored on the same rows.
    pub run_inputs: Vec<(String, RunInputs)>,
}

impl ModelInputs {
    /// Hash over the runs' hashes.
    pub fn runs_hash(&self) -> String {
        crate::hash::hash_parts(self.runs.iter().flat_map(|(n, h)| [n.as_str(), h.as_str()]))
    }
}

/// A decision about Production.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// The version that should be Production (None: no version qualifies).
    pub target: Option<i64>,
    /// Why, as the promotion history records it.
    pub cause: Cause,
    /// In words.
    pub reason: String,
    /// A candidate that was not promoted and why (gate failure, too small a gain).
    pub held_back: Option<String>,
}

/// Which of the Model's `require` gates version `v` fails, in words
/// (`version 2 (churn-lr) fails val_auc >= 0.75 (0.7012)`), or `None` when it
/// passes them all. Promotion by apply and by hand (`models stage`) both ask.
pub fn gate_failure(spec: &ModelSpec, v: &VersionInfo) -> Option<String> {
    let failed: Vec<String> = spec
        .gates()
        .iter()
        .filter(|g| !v.metric(&g.metric).is_some_and(|m| g.passes(m)))
        .map(|g| match v.metric(&g.metric) {
            Some(m) => format!("{g} ({m:.4})"),
            None => format!("{g} (not recorded)"),
        })
        .collect();
    (!failed.is_empty()).then(|| {
        format!(
            "version {} ({}) fails {}",
            v.version,
            v.run,
            failed.join(", ")
        )
    })
}

/// The gate failure of version `v` of the model `name` as the specs declare
/// it, or `None` when no Model spec names it or it passes.
pub fn gate_failure_in(set: &SpecSet, name: &str, v: &VersionInfo) -> Option<String> {
    set.specs::<Model>()
        .find(|(_, m)| m.name.value == name)
        .and_then(|(_, m)| gate_failure(m, v))
}

/// Decides the Production version. `run_versions` maps runs to the version they
/// last produced; `current` is the controller's own last choice (or the
/// registry's Production when it has none). Errors say what is missing.
pub fn choose(
    spec: &ModelSpec,
    versions: &[VersionInfo],
    run_versions: &HashMap<String, i64>,
    current: Option<i64>,
) -> Result<Choice, String> {
    let find = |v: i64| versions.iter().find(|x| x.version == v);
    let gate_failure = |v: &VersionInfo| gate_failure(spec, v);
    let (target, cause, reason) = match &spec.production {
        None => return Err("the spec does not choose a Production version".into()),
        Some(ProductionSpec::Run(run)) if run.value == MANUAL => {
            return Err("Production is managed by hand (`production: manual`)".into());
        }
        Some(ProductionSpec::Run(run)) => {
            let v = *run_versions
                .get(&run.value)
                .ok_or_else(|| format!("run `{}` has not produced a version", run.value))?;
            (
                v,
                Cause::Spec,
                format!("production: {} (version {v})", run.value),
            )
        }
        Some(ProductionSpec::Version(p)) => {
            let v = i64::from(p.version);
            find(v).ok_or_else(|| format!("model `{}` has no version {v}", spec.name.value))?;
            (v, Cause::Spec, format!("production: {{version: {v}}}"))
        }
        Some(ProductionSpec::Best(policy)) => {
            let metric = policy.best.value.as_str();
            let better = |a: f64, b: f64| {
                if higher_is_better(metric) {
                    a > b
                } else {
                    a < b
                }
            };
            let mut best: Option<(&VersionInfo, f64)> = None;
            for run in &policy.among {
                let Some(v) = run_versions.get(&run.value).and_then(|&v| find(v)) else {
                    continue;
                };
                let Some(m) = v.metric(metric) else { continue };
                if best.is_none_or(|(b, bm)| better(m, bm) || (m == bm && v.version < b.version)) {
                    best = Some((v, m));
                }
            }
            let (challenger, cm) =
                best.ok_or_else(|| "no run of the policy has produced a version".to_string())?;
            match current.and_then(find) {
                Some(cur) if cur.version != challenger.version => {
                    let cur_m = cur.metric(metric).unwrap_or(f64::NAN);
                    let gain = if higher_is_better(metric) {
                        cm - cur_m
                    } else {
                        cur_m - cm
                    };
                    // NaN (current has no such metric) counts as a win.
                    if gain.is_nan() || gain >= policy.min_gain {
                        (
                            challenger.version,
                            Cause::Policy,
                            format!(
                                "best {metric}: version {} ({cm:.4}) beats version {} ({cur_m:.4}) by {gain:.4} ≥ minGain {}",
                                challenger.version, cur.version, policy.min_gain
                            ),
                        )
                    } else {
                        return Ok(Choice {
                            target: Some(cur.version),
                            cause: Cause::Policy,
                            reason: format!("best {metric}: version {} stays", cur.version),
                            held_back: Some(format!(
                                "challenger version {} ({}, {metric} {cm:.4}) beats version {} ({cur_m:.4}) by {gain:.4} < minGain {}",
                                challenger.version, challenger.run, cur.version, policy.min_gain
                            )),
                        });
                    }
                }
                _ => (
                    challenger.version,
                    Cause::Policy,
                    format!(
                        "best {metric}: version {} ({}, {cm:.4})",
                        challenger.version, challenger.run
                    ),
                ),
            }
        }
    };
    if current != Some(target)
        && let Some(failure) = find(target).and_then(gate_failure)
    {
        return Ok(Choice {
            target: current,
            cause,
            reason: match current {
                Some(c) => format!("version {c} stays"),
                None => "no version qualifies".into(),
            },
            held_back: Some(failure),
        });
    }
    Ok(Choice {
        target: Some(target),
        cause,
        reason,
        held_back: None,
    })
}

fn managed(spec: &ModelSpec) -> bool {
    match &spec.production {
        None => false,
        Some(ProductionSpec::Run(r)) => r.value != MANUAL,
        Some(_) => true,
    }
}

fn describe(p: &ProductionSpec) -> String {
    match p {
        ProductionSpec::Run(r) => format!("the version run `{}` produces", r.value),
        ProductionSpec::Version(v) => format!("version {}", v.version),
        ProductionSpec::Best(b) => format!(
            "best {} among [{}] (minGain {})",
            b.best.value,
            b.among
                .iter()
                .map(|r| r.value.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            b.min_gain
        ),
    }
}

fn production_of(versions: Option<&Vec<VersionInfo>>) -> Option<i64> {
    versions?
        .iter()
        .find(|v| v.stage == Stage::Production)
        .map(|v| v.version)
}

/// The version the spec's policy puts forward before gates and margins: the
/// named run's, or the newest among the policy's runs.
fn candidate(spec: &ModelSpec, run_versions: &HashMap<String, i64>) -> Option<i64> {
    match &spec.production {
        Some(ProductionSpec::Run(run)) => run_versions.get(&run.value).copied(),
        Some(ProductionSpec::Best(policy)) => policy
            .among
            .iter()
            .filter_map(|r| run_versions.get(&r.value).copied())
            .max(),
        _ => None,
    }
}

/// The champion scored on the challenger's validation rows.
#[derive(Debug, Clone)]
struct HeadToHead {
    /// Validation rows of the challenger.
    rows: usize,
    /// The challenger's figures on them (as registered).
    challenger_auc: f64,
    /// The champion's figures on them, in the registry's metric names.
    champion_metrics: serde_json::Value,
}

impl HeadToHead {
    fn describe(&self, challenger: i64, champion: i64) -> String {
        format!(
            "on the {} validation rows of version {challenger}: val_auc {:.4} vs version {champion} {:.4}",
            self.rows,
            self.challenger_auc,
            self.champion_metrics
                .get("val_auc")
                .and_then(|v| v.as_f64())
                .unwrap_or(f64::NAN)
        )
    }
}

/// Scores the champion on the challenger's validation rows, when the two were
/// trained on different sets (same set and split: their registered figures
/// already are on the same rows). `None` when the challenger's run is not in
/// the specs or the champion cannot read its training set.
async fn head_to_head(
    ctx: &ApplyContext,
    inputs: &ModelInputs,
    versions: &[VersionInfo],
    challenger: i64,
    champion: i64,
) -> Result<Option<HeadToHead>, ApplyError> {
    let (Some(t), Some(c)) = (
        versions.iter().find(|v| v.version == challenger),
        versions.iter().find(|v| v.version == champion),
    ) else {
        return Ok(None);
    };
    let split = |v: &VersionInfo| {
        (
            v.params.get("validation").cloned(),
            v.params.get("seed").cloned(),
        )
    };
    if t.training_set_hash == c.training_set_hash && split(t) == split(c) {
        return Ok(None);
    }
    let Some((_, run)) = inputs.run_inputs.iter().find(|(name, _)| *name == t.run) else {
        return Ok(None);
    };
    let mut run = run.clone();
    if let Some(as_of) = training_run::version_as_of(&t.params) {
        run.as_of = as_of;
    }
    let set = training_run::build_training_set(&ctx.offline, &run, ctx.memory_budget).await?;
    let rows = training_run::validation_rows(&set, &t.params);
    let Some(artifact) = ctx.registry.artifact(&c.model, champion).await? else {
        return Ok(None);
    };
    let labels: Vec<usize> = rows.iter().map(|&i| set.labels[i]).collect();
    let proba = match training_run::score(artifact, &set, rows).await {
        Ok(p) => p,
        // The champion reads features the challenger's set lacks.
        Err(ApplyError::Train(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let m = crate::ml::metrics::evaluate(&labels, &proba);
    Ok(Some(HeadToHead {
        rows: labels.len(),
        challenger_auc: t.metric("val_auc").unwrap_or(f64::NAN),
        champion_metrics: serde_json::json!({
            "val_auc": m.auc,
            "val_f1": m.f1,
            "val_accuracy": m.accuracy,
            "val_precision": m.precision,
            "val_recall": m.recall,
            "val_log_loss": m.log_loss,
        }),
    }))
}

/// The `Model` kind.
pub struct Model;

impl ResourceKind for Model {
    type Spec = ModelSpec;
    type Inputs = ModelInputs;
    type Op = ModelOp;

    fn name(spec: &ModelSpec) -> &SpannedStr {
        &spec.name
    }

    fn depends_on(spec: &ModelSpec) -> &[SpannedStr] {
        &spec.depends_on
    }

    fn references(m: &ModelSpec) -> Vec<Reference> {
        m.production
            .iter()
            .flat_map(|p| p.runs())
            .map(|run| (run.clone(), Some(Kind::TrainingRun)))
            .collect()
    }

    fn check(
        cx: &CheckContext<'_>,
        r: &Resource,
        spec: &ModelSpec,
        diags: &mut Vec<SpecDiagnostic>,
    ) {
        check::check_model(cx, r, spec, diags);
    }

    fn desire(
        r: &Resource,
        _spec: &ModelSpec,
        set: &SpecSet,
        upstream: Upstream<'_>,
    ) -> Result<ModelInputs, ApplyError> {
        let mut runs: Vec<(String, String)> = set
            .specs::<TrainingRun>()
            .filter(|(_, t)| t.model.value == r.id.name)
            .map(|(x, _)| {
                let hash = upstream
                    .get(&x.id)
                    .map(|d| d.spec_hash.clone())
                    .unwrap_or_default();
                (x.id.name.clone(), hash)
            })
            .collect();
        runs.sort();
        let run_inputs = runs
            .iter()
            .filter_map(|(name, _)| {
                Some((name.clone(), upstream.inputs::<TrainingRun>(name)?.clone()))
            })
            .collect();
        Ok(ModelInputs { runs, run_inputs })
    }

    fn input_hash(inputs: &ModelInputs) -> String {
        inputs.runs_hash()
    }

    fn diff(d: &Desired<'_, Self>, observed: &Observed, _opts: &PlanOptions) -> ResourcePlan {
        let spec = d.spec;
        if !managed(spec) {
            return record::diff(d.id, d.spec_hash, d.spec_json, observed);
        }
        let mut plan = ResourcePlan::noop(d.id.clone());
        let actual = production_of(observed.registry.get(&d.id.name));
        let how = spec.production.as_ref().map(describe).unwrap_or_default();
        match observed.records.get(d.id) {
            None => {
                plan.action = Action::Create;
                plan.reasons.push(format!("choose Production: {how}"));
            }
            Some(rec) if rec.spec_hash != d.spec_hash => {
                plan.action = Action::Update;
                plan.reasons.push(if rec.spec_json != *d.spec_json {
                    format!(
                        "spec changed: {}; Production: {how}",
                        changed_fields(&rec.spec_json, d.spec_json)
                    )
                } else {
                    format!("a run it chooses from changes: Production decided again ({how})")
                });
            }
            Some(rec) if rec.condition != Condition::Ready => {
                plan.action = Action::Update;
                plan.reasons.push(format!(
                    "last apply ended {}: {}",
                    rec.condition, rec.reason
                ));
            }
            Some(rec) => {
                let recorded = rec.outputs.get("production").and_then(|v| v.as_i64());
                if recorded != actual {
                    plan.action = Action::Update;
                    let now = actual.map_or("no version is Production".to_string(), |a| {
                        format!("version {a} is Production")
                    });
                    let want = recorded.map_or("none".to_string(), |r| format!("version {r}"));
                    plan.reasons.push(format!(
                        "drift: {now} but the spec chose {want} (changed outside reconcile): restore"
                    ));
                }
                if let Some(held) = rec.outputs.get("held_back").and_then(|v| v.as_str()) {
                    plan.warnings.push(format!("not promoted: {held}"));
                }
            }
        }
        if plan.action != Action::NoOp {
            plan.operations.push(Self::op(ModelOp::Promote));
        }
        plan
    }

    async fn apply(
        ctx: &ApplyContext,
        d: &Desired<'_, Self>,
        _plan: &ResourcePlan,
    ) -> Result<Applied, ApplyError> {
        let (spec, inputs) = (d.spec, d.inputs);
        if !managed(spec) {
            return Ok(Applied {
                message: "recorded (Production is managed by hand)".into(),
                outputs: serde_json::Value::Null,
            });
        }
        let name = &d.id.name;
        let (versions, records) =
            tokio::try_join!(ctx.registry.versions(name), ctx.state.load_all())?;
        let run_versions: HashMap<String, i64> = inputs
            .runs
            .iter()
            .filter_map(|(run, _)| {
                let rec = records.get(&ResourceId::new(TrainingRun::KIND, run.clone()))?;
                let v = rec.outputs.get("version")?.as_i64()?;
                Some((run.clone(), v))
            })
            .collect();
        let actual = versions
            .iter()
            .find(|v| v.stage == Stage::Production)
            .map(|v| v.version);
        // The controller's own last choice wins over a change made behind its back.
        let recorded = records
            .get(d.id)
            .and_then(|r| r.outputs.get("production"))
            .and_then(|v| v.as_i64());
        let current = recorded.or(actual);
        let mut choice =
            choose(spec, &versions, &run_versions, current).map_err(ApplyError::Choice)?;
        // A challenger trained on other data is compared with the champion on
        // the challenger's validation rows, which the champion never saw.
        let mut same_rows: Option<String> = None;
        let challenger = match choice.target {
            Some(t) if Some(t) != current => Some(t),
            _ if choice.held_back.is_some() => candidate(spec, &run_versions),
            _ => None,
        };
        if let (Some(t), Some(c)) = (challenger, current)
            && t != c
            && let Some(h2h) = head_to_head(ctx, inputs, &versions, t, c).await?
        {
            let mut rescored = versions.clone();
            if let Some(v) = rescored.iter_mut().find(|v| v.version == c) {
                v.metrics = h2h.champion_metrics.clone();
            }
            if matches!(spec.production, Some(ProductionSpec::Best(_))) {
                choice =
                    choose(spec, &rescored, &run_versions, current).map_err(ApplyError::Choice)?;
            }
            same_rows = Some(h2h.describe(t, c));
        }
        if let Some(s) = &same_rows {
            choice.reason = format!("{}; {s}", choice.reason);
            if let Some(held) = &mut choice.held_back {
                held.push_str(&format!("; {s}"));
            }
        }
        let mut message = match choice.target {
            Some(t) if actual != Some(t) => {
                let drift = recorded == Some(t);
                let reason = if drift {
                    format!(
                        "{} (restored after a change outside reconcile)",
                        choice.reason
                    )
                } else {
                    choice.reason.clone()
                };
                ctx.registry
                    .set_stage(name, t, Stage::Production, choice.cause, &reason)
                    .await?;
                let auc = versions
                    .iter()
                    .find(|v| v.version == t)
                    .and_then(|v| v.metric("val_auc"))
                    .unwrap_or(f64::NAN);
                format!("version {t} promoted to Production (val_auc {auc:.4}): {reason}")
            }
            Some(t) => format!("version {t} is Production: {}", choice.reason),
            None => "no version is Production".to_string(),
        };
        if let Some(held) = &choice.held_back {
            message.push_str(&format!("; not promoted: {held}"));
        }
        Ok(Applied {
            message,
            outputs: serde_json::json!({
                "production": choice.target,
                "held_back": choice.held_back,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(v: i64, run: &str, auc: f64) -> VersionInfo {
        VersionInfo {
            model: "m".into(),
            version: v,
            identity: format!("id{v}"),
            run: run.into(),
            algorithm: "randomForest".into(),
            params: serde_json::Value::Null,
            metrics: serde_json::json!({ "val_auc": auc }),
            training_set_hash: String::new(),
            features: serde_json::Value::Null,
            artifact_hash: String::new(),
            trainer: String::new(),
            training_ms: 0,
            stage: Stage::None,
            created_ms: 0,
        }
    }

    fn model(yaml: &str) -> ModelSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn runs(pairs: &[(&str, i64)]) -> HashMap<String, i64> {
        pairs.iter().map(|(r, v)| (r.to_string(), *v)).collect()
    }

    #[test]
    fn by_run_and_by_version() {
        let vs = [version(1, "a", 0.8), version(2, "b", 0.7)];
        let m = model("kind: Model\nname: m\nproduction: b\n");
        let c = choose(&m, &vs, &runs(&[("a", 1), ("b", 2)]), Some(1)).unwrap();
        assert_eq!((c.target, c.cause), (Some(2), Cause::Spec));
        let m = model("kind: Model\nname: m\nproduction: { version: 1 }\n");
        assert_eq!(choose(&m, &vs, &runs(&[]), None).unwrap().target, Some(1));
        let m = model("kind: Model\nname: m\nproduction: { version: 9 }\n");
        assert!(
            choose(&m, &vs, &runs(&[]), None)
                .unwrap_err()
                .contains("no version 9")
        );
    }

    #[test]
    fn policy_promotes_a_challenger_only_by_min_gain() {
        let m = model(
            "kind: Model\nname: m\nproduction: { best: val_auc, minGain: 0.01, among: [a, b] }\n",
        );
        let r = runs(&[("a", 1), ("b", 2)]);
        // No Production yet: the best wins.
        let vs = [version(1, "a", 0.80), version(2, "b", 0.805)];
        assert_eq!(choose(&m, &vs, &r, None).unwrap().target, Some(2));
        // Challenger better by less than minGain: Production stays, and says why.
        let c = choose(&m, &vs, &r, Some(1)).unwrap();
        assert_eq!(c.target, Some(1));
        assert!(c.held_back.unwrap().contains("< minGain 0.01"));
        // Better by more: promoted by policy.
        let vs = [version(1, "a", 0.80), version(2, "b", 0.83)];
        let c = choose(&m, &vs, &r, Some(1)).unwrap();
        assert_eq!((c.target, c.cause), (Some(2), Cause::Policy));
    }

    #[test]
    fn a_failing_gate_keeps_the_current_version() {
        let m = model("kind: Model\nname: m\nproduction: b\nrequire: { val_auc: \">= 0.75\" }\n");
        let vs = [version(1, "a", 0.8), version(2, "b", 0.7)];
        let c = choose(&m, &vs, &runs(&[("b", 2)]), Some(1)).unwrap();
        assert_eq!(c.target, Some(1));
        assert!(c.held_back.unwrap().contains("val_auc >= 0.75 (0.7000)"));
        let c = choose(&m, &vs, &runs(&[("b", 2)]), None).unwrap();
        assert_eq!(c.target, None);
    }
}
