//! `Entity`: what features describe, identified by join keys. Applying it
//! only records it.

use super::{ApplyError, CheckContext, NoOp, ResourceKind, Upstream};
use crate::diag::SpecDiagnostic;
use crate::spec::validate::check_identifier;
use crate::spec::{Resource, SpannedStr, SpecSet};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Something features are about (a user, a device), identified by join keys.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EntitySpec {
    /// Always `Entity`.
    pub kind: String,
    /// Entity name, referenced by feature views.
    #[schemars(with = "String")]
    pub name: SpannedStr,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Columns that identify one entity.
    #[schemars(with = "Vec<String>")]
    pub join_keys: Vec<SpannedStr>,
    /// Extra ordering edges: `name` or `Kind/name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>")]
    pub depends_on: Vec<SpannedStr>,
}

/// The `Entity` kind: record-only.
pub struct Entity;

impl ResourceKind for Entity {
    type Spec = EntitySpec;
    type Inputs = ();
    type Op = NoOp;

    fn name(spec: &EntitySpec) -> &SpannedStr {
        &spec.name
    }

    fn depends_on(spec: &EntitySpec) -> &[SpannedStr] {
        &spec.depends_on
    }

    fn check(
        _cx: &CheckContext<'_>,
        r: &Resource,
        spec: &EntitySpec,
        diags: &mut Vec<SpecDiagnostic>,
    ) {
        for k in &spec.join_keys {
            check_identifier(r, k, "join key", diags);
        }
    }

    fn desire(
        _r: &Resource,
        _spec: &EntitySpec,
        _set: &SpecSet,
        _upstream: Upstream<'_>,
    ) -> Result<(), ApplyError> {
        Ok(())
    }
}
