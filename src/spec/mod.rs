//! The user-facing model: spec kinds, loading them from YAML with locations,
//! and checking them (references, names, paths, `${ENV}`) before anything runs.
//!
//! Spec parsing never panics and returns every diagnostic it can find, not the first.

pub mod env;
pub mod load;
pub mod validate;
pub mod values;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::diag::{SourceFile, SpecDiagnostic};
use crate::kinds::Member;
use crate::kinds::project::ProjectSpec;
pub use crate::kinds::{Kind, Spec};
pub use validate::is_identifier;
pub use values::*;

/// Identity of a resource: its kind and name. Names are unique per kind.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct ResourceId {
    /// The kind.
    #[schemars(with = "String")]
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

    /// The spec of kind `K` named `name`.
    pub fn spec<K: Member>(&self, name: &str) -> Option<&K::Spec> {
        self.resources
            .iter()
            .find(|r| r.id.kind == K::KIND && r.id.name == name)
            .and_then(|r| K::spec_of(&r.spec))
    }

    /// Every resource of kind `K`, with its typed spec, in file order.
    pub fn specs<K: Member>(&self) -> impl Iterator<Item = (&Resource, &K::Spec)> {
        self.resources
            .iter()
            .filter_map(|r| K::spec_of(&r.spec).map(|s| (r, s)))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_example_spec_has_canonical_json() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("specs");
        let set = super::validate::load_and_validate(&dir).expect("example specs are valid");
        for r in &set.resources {
            // A serialization error would make every spec of this shape hash alike.
            assert!(r.spec.canonical_json().is_object(), "{}", r.id);
        }
        // Defaults too (a skipped enum variant once made them serialize to nothing).
        let run = crate::kinds::parse_spec(
            super::Kind::parse("TrainingRun").expect("kind"),
            "kind: TrainingRun\nname: r\nmodel: m\nasOf: 2024-01-31\nlabel: { table: t, column: c }\n\
             features: [v.*]\nalgorithm: { randomForest: {} }\n",
        )
        .expect("minimal run");
        assert!(run.canonical_json().is_object());
    }
}
