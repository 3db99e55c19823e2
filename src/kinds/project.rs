//! `Project`: the project's name and where its stores live. Applying it only
//! records it; the workspace reads its store URLs before anything else runs.

use super::{ApplyError, CheckContext, Member, NoOp, ResourceKind, Upstream};
use crate::diag::SpecDiagnostic;
use crate::spec::validate::check_env;
use crate::spec::{Resource, SpannedStr, SpecSet};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The project: its name and where state and data live.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProjectSpec {
    /// Always `Project`.
    pub kind: String,
    /// Project name; labels and state are keyed by it.
    #[schemars(with = "String")]
    pub name: SpannedStr,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// State store URL: `sqlite://path` (relative to this file) or `postgres://…`.
    /// `${VAR}` references are resolved at run time and never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub state: Option<SpannedStr>,
    /// Offline store URL for table data; defaults to the state store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub offline: Option<SpannedStr>,
    /// Online store URL for served feature values; defaults to the offline store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub online: Option<SpannedStr>,
    /// Where container workloads run unless they say otherwise: `docker` (the
    /// local engine, the default) or `swarm` (Swarm services on the engine's
    /// swarm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<super::service::deploy::WorkloadRuntime>,
}

impl ProjectSpec {
    /// The settings of a folder with no `Project` document: named after the folder.
    pub fn default_for(root: &std::path::Path) -> ProjectSpec {
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "project".to_string());
        ProjectSpec {
            kind: "Project".to_string(),
            name: serde_saphyr::Spanned::new(
                name,
                serde_saphyr::Location::UNKNOWN,
                serde_saphyr::Location::UNKNOWN,
            ),
            description: None,
            state: None,
            offline: None,
            online: None,
            runtime: None,
        }
    }

    /// The store URLs it names (state, offline, online).
    pub fn store_urls(&self) -> impl Iterator<Item = &SpannedStr> {
        [&self.state, &self.offline, &self.online]
            .into_iter()
            .flatten()
    }
}

/// The settings a resource declares, when it is the Project.
pub fn settings(r: &Resource) -> Option<&ProjectSpec> {
    Project::spec_of(&r.spec)
}

/// The `Project` kind: record-only.
pub struct Project;

impl ResourceKind for Project {
    type Spec = ProjectSpec;
    type Inputs = ();
    type Op = NoOp;

    fn name(spec: &ProjectSpec) -> &SpannedStr {
        &spec.name
    }

    fn check(
        _cx: &CheckContext<'_>,
        r: &Resource,
        spec: &ProjectSpec,
        diags: &mut Vec<SpecDiagnostic>,
    ) {
        for url in spec.store_urls() {
            check_env(r, url, diags);
        }
    }

    fn desire(
        _r: &Resource,
        _spec: &ProjectSpec,
        _set: &SpecSet,
        _upstream: Upstream<'_>,
    ) -> Result<(), ApplyError> {
        Ok(())
    }
}
