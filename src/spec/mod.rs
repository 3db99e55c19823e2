//! The user-facing model: spec kinds, loading them from YAML with locations,
//! and checking them (references, names, paths, `${ENV}`) before anything runs.
//!
//! Spec parsing never panics and returns every diagnostic it can find, not the first.

mod check_ml;
mod check_service;
pub mod env;
pub mod kinds;
pub mod load;
pub mod service;
pub mod validate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::diag::{SourceFile, SpecDiagnostic};
pub use kinds::*;
pub use service::ServiceSpec;
pub use validate::is_identifier;

/// The kinds of resource reconcile knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    /// Project settings (stores).
    Project,
    /// A container run on the project network.
    Service,
    /// An entity with join keys.
    Entity,
    /// A validated table of snapshots.
    Table,
    /// Features of an entity from a table.
    FeatureView,
    /// A reproducible training run producing a model version.
    TrainingRun,
    /// A registered model and its Production choice.
    Model,
    /// An HTTP prediction endpoint.
    Endpoint,
}

impl Kind {
    /// Every kind, in the order plans list them.
    pub const ALL: [Kind; 8] = [
        Kind::Project,
        Kind::Service,
        Kind::Entity,
        Kind::Table,
        Kind::FeatureView,
        Kind::TrainingRun,
        Kind::Model,
        Kind::Endpoint,
    ];

    /// The name written after `kind:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Project => "Project",
            Kind::Service => "Service",
            Kind::Entity => "Entity",
            Kind::Table => "Table",
            Kind::FeatureView => "FeatureView",
            Kind::TrainingRun => "TrainingRun",
            Kind::Model => "Model",
            Kind::Endpoint => "Endpoint",
        }
    }

    /// Parses the name written after `kind:`.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identity of a resource: its kind and name. Names are unique per kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResourceId {
    /// The kind.
    pub kind: Kind,
    /// The name.
    pub name: String,
}

impl ResourceId {
    /// A resource id.
    pub fn new(kind: Kind, name: impl Into<String>) -> Self {
        ResourceId {
            kind,
            name: name.into(),
        }
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// A typed spec of any kind.
// Specs are few and long-lived; boxing the Service variant would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Spec {
    /// See [`ProjectSpec`].
    Project(ProjectSpec),
    /// See [`ServiceSpec`].
    Service(ServiceSpec),
    /// See [`EntitySpec`].
    Entity(EntitySpec),
    /// See [`TableSpec`].
    Table(TableSpec),
    /// See [`FeatureViewSpec`].
    FeatureView(FeatureViewSpec),
    /// See [`TrainingRunSpec`].
    TrainingRun(TrainingRunSpec),
    /// See [`ModelSpec`].
    Model(ModelSpec),
    /// See [`EndpointSpec`].
    Endpoint(EndpointSpec),
}

impl Spec {
    /// The kind of this spec.
    pub fn kind(&self) -> Kind {
        match self {
            Spec::Project(_) => Kind::Project,
            Spec::Service(_) => Kind::Service,
            Spec::Entity(_) => Kind::Entity,
            Spec::Table(_) => Kind::Table,
            Spec::FeatureView(_) => Kind::FeatureView,
            Spec::TrainingRun(_) => Kind::TrainingRun,
            Spec::Model(_) => Kind::Model,
            Spec::Endpoint(_) => Kind::Endpoint,
        }
    }

    /// The name with its location.
    pub fn name(&self) -> &SpannedStr {
        match self {
            Spec::Project(s) => &s.name,
            Spec::Service(s) => &s.name,
            Spec::Entity(s) => &s.name,
            Spec::Table(s) => &s.name,
            Spec::FeatureView(s) => &s.name,
            Spec::TrainingRun(s) => &s.name,
            Spec::Model(s) => &s.name,
            Spec::Endpoint(s) => &s.name,
        }
    }

    /// Explicit `dependsOn` references.
    pub fn depends_on(&self) -> &[SpannedStr] {
        match self {
            Spec::Project(_) => &[],
            Spec::Service(s) => &s.depends_on,
            Spec::Entity(s) => &s.depends_on,
            Spec::Table(s) => &s.depends_on,
            Spec::FeatureView(s) => &s.depends_on,
            Spec::TrainingRun(s) => &s.depends_on,
            Spec::Model(s) => &s.depends_on,
            Spec::Endpoint(s) => &s.depends_on,
        }
    }

    /// Canonical JSON of the spec (locations dropped, `${VAR}` kept as written):
    /// the input of the spec hash and what the state store records. Spec types
    /// serialize infallibly (a unit test holds every kind to it); `Null` would
    /// only mean a bug there.
    pub fn canonical_json(&self) -> serde_json::Value {
        let v = match self {
            Spec::Project(s) => serde_json::to_value(s),
            Spec::Service(s) => serde_json::to_value(s),
            Spec::Entity(s) => serde_json::to_value(s),
            Spec::Table(s) => serde_json::to_value(s),
            Spec::FeatureView(s) => serde_json::to_value(s),
            Spec::TrainingRun(s) => serde_json::to_value(s),
            Spec::Model(s) => serde_json::to_value(s),
            Spec::Endpoint(s) => serde_json::to_value(s),
        };
        v.unwrap_or(serde_json::Value::Null)
    }
}

/// A spec together with where it came from.
#[derive(Debug, Clone)]
pub struct Resource {
    /// Kind and name.
    pub id: ResourceId,
    /// The typed spec.
    pub spec: Spec,
    /// The file it was written in.
    pub file: Arc<SourceFile>,
    /// File lines before this resource's document (its locations are relative to it).
    pub line_offset: u64,
}

impl Resource {
    /// Folder that relative paths in this spec resolve against.
    pub fn base_dir(&self) -> &Path {
        self.file.path.parent().unwrap_or(Path::new("."))
    }

    /// File (line, column) of a spanned value of this resource.
    pub fn position(&self, at: &SpannedStr) -> (u64, u64) {
        (
            at.referenced.line() + self.line_offset,
            at.referenced.column(),
        )
    }

    /// A diagnostic pointing at a spanned value of this resource.
    pub fn diag_at(
        &self,
        code: crate::diag::DiagCode,
        at: &SpannedStr,
        message: impl Into<String>,
    ) -> SpecDiagnostic {
        let (line, column) = self.position(at);
        let start = self.file.offset(line, column);
        // A quoted scalar's location points at the quote; cover the value either way.
        let raw = &self.file.text[start..];
        let len = if raw.starts_with('"') || raw.starts_with('\'') {
            at.value.len() + 2
        } else {
            at.value.len().max(1)
        };
        let len = len.min(self.file.text.len() - start);
        SpecDiagnostic::new(
            code,
            &self.file,
            miette::SourceSpan::new(start.into(), len),
            message,
        )
    }
}

/// Every resource of a project, loaded and validated.
#[derive(Debug, Clone)]
pub struct SpecSet {
    /// The project folder: the root every path must stay within.
    pub root: PathBuf,
    /// The project's settings (a default one when no `Project` document exists).
    pub project: ProjectSpec,
    /// The folder the project spec's relative URLs resolve against.
    pub project_dir: PathBuf,
    /// All resources in file order (the Project included when declared).
    pub resources: Vec<Resource>,
}

impl SpecSet {
    /// Finds a resource by id.
    pub fn get(&self, id: &ResourceId) -> Option<&Resource> {
        self.resources.iter().find(|r| &r.id == id)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_example_spec_has_canonical_json() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("specs");
        let set = super::validate::load_and_validate(&dir).expect("example specs are valid");
        for kind in super::Kind::ALL {
            // The default example runs without Docker; services live in examples/.
            if matches!(kind, super::Kind::Endpoint | super::Kind::Service)
                && !set.resources.iter().any(|r| r.id.kind == kind)
            {
                continue;
            }
            assert!(
                set.resources.iter().any(|r| r.id.kind == kind),
                "the example has no {kind}"
            );
        }
        for r in &set.resources {
            // A serialization error would make every spec of this shape hash alike.
            assert!(r.spec.canonical_json().is_object(), "{}", r.id);
        }
        // Defaults too (a skipped enum variant once made them serialize to nothing).
        let run: super::TrainingRunSpec = serde_saphyr::from_str(
            "kind: TrainingRun\nname: r\nmodel: m\nasOf: 2024-01-31\nlabel: { table: t, column: c }\n\
             features: [v.*]\nalgorithm: { randomForest: {} }\n",
        )
        .expect("minimal run");
        assert!(super::Spec::TrainingRun(run).canonical_json().is_object());
    }
}
