//! Checks that need more than one document: unique names, references, identifiers
//! that will reach SQL, column references, paths, `${ENV}` and cycles.
//! Collects every problem; never stops at the first.

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

use super::env;
use super::{Kind, Resource, ResourceId, SpannedStr, SpecSet};
use crate::diag::{DiagCode, SpecDiagnostic, did_you_mean};
use crate::graph;
use crate::kinds::project::ProjectSpec;

/// Identifiers that reach SQL (table and column names) must match this.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 63
}

/// Who owns a table name a spec may not take, or `None` when it is free:
/// the migrator's bookkeeping (`_sqlx_migrations`, and every `_sqlx` name),
/// SQLite's own tables (`sqlite_*`), PostgreSQL's catalogs (`pg_*`, which the
/// server resolves before the user's schema) and this project's tables
/// (`reconcile_*`). A Table with such a name would overwrite or shadow them.
pub fn reserved_table_owner(name: &str) -> Option<&'static str> {
    let n = name.to_ascii_lowercase();
    if n.starts_with("_sqlx") {
        Some("the store's migrations (`_sqlx_migrations`)")
    } else if n.starts_with("sqlite_") {
        Some("SQLite (`sqlite_*` names are the engine's)")
    } else if n.starts_with("pg_") {
        Some("PostgreSQL (`pg_*` names are the server's catalogs)")
    } else if n.starts_with("reconcile_") {
        Some("reconcile's own stores (`reconcile_*`)")
    } else if n == "information_schema" {
        Some("PostgreSQL's `information_schema`")
    } else {
        None
    }
}

/// Loads and validates every spec under `root`.
pub fn load_and_validate(root: &Path) -> Result<SpecSet, Vec<SpecDiagnostic>> {
    load_and_validate_ignoring(root, &[])
}

/// [`load_and_validate`], not counting diagnostics of the codes in `ignore`
/// (commands that only read the stores ignore unset `${VAR}`s: they need no secrets).
pub fn load_and_validate_ignoring(
    root: &Path,
    ignore: &[DiagCode],
) -> Result<SpecSet, Vec<SpecDiagnostic>> {
    let root = match root.canonicalize() {
        Ok(r) => r,
        Err(e) => {
            let f = crate::diag::SourceFile::new(
                root.display().to_string(),
                root.to_path_buf(),
                String::new(),
            );
            return Err(vec![SpecDiagnostic::at(
                DiagCode::MissingFile,
                &f,
                1,
                1,
                format!("spec folder {} cannot be opened: {e}", root.display()),
            )]);
        }
    };
    let (resources, mut diags) = super::load::load_dir(&root);
    let set = validate(root, resources, &mut diags);
    diags.retain(|d| !ignore.contains(&d.code));
    if diags.is_empty() {
        Ok(set)
    } else {
        Err(diags)
    }
}

/// Cross-document checks over loaded resources; appends to `diags`.
pub fn validate(
    root: PathBuf,
    resources: Vec<Resource>,
    diags: &mut Vec<SpecDiagnostic>,
) -> SpecSet {
    let mut seen: HashMap<&ResourceId, &Resource> = HashMap::new();
    let mut duplicates = HashSet::new();
    for (i, r) in resources.iter().enumerate() {
        if let Some(first) = seen.get(&r.id) {
            diags.push(
                r.diag_at(
                    DiagCode::DuplicateName,
                    r.spec.name(),
                    format!("duplicate {} name `{}`", r.id.kind, r.id.name),
                )
                .with_hint(format!(
                    "first defined at {}:{}",
                    first.file.display,
                    first.position(first.spec.name()).0
                )),
            );
            duplicates.insert(i);
        } else {
            seen.insert(&r.id, r);
        }
    }
    let resources: Vec<Resource> = resources
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !duplicates.contains(i))
        .map(|(_, r)| r)
        .collect();

    let projects: Vec<(&Resource, &ProjectSpec)> = resources
        .iter()
        .filter_map(|r| crate::kinds::project::settings(r).map(|p| (r, p)))
        .collect();
    for (extra, _) in projects.iter().skip(1) {
        diags.push(
            extra
                .diag_at(
                    DiagCode::DuplicateName,
                    extra.spec.name(),
                    "a second Project document",
                )
                .with_hint("declare exactly one `kind: Project` per spec folder"),
        );
    }
    let (project, project_dir) = match projects.first() {
        Some((r, p)) => ((*p).clone(), r.base_dir().to_path_buf()),
        None => (ProjectSpec::default_for(&root), root.clone()),
    };

    let index = ResourceIndex::new(&resources);
    for r in &resources {
        check_resource(&root, r, &index, diags);
    }
    let set = SpecSet {
        root,
        project,
        project_dir,
        resources,
    };
    if let Err(cycles) = graph::DependencyGraph::build(&set) {
        diags.extend(cycles);
    }
    set
}

fn check_resource(
    root: &Path,
    r: &Resource,
    all: &ResourceIndex<'_>,
    diags: &mut Vec<SpecDiagnostic>,
) {
    for (reference, kind) in crate::kinds::references(&r.spec) {
        if let Err(d) = resolve_reference(r, &reference, kind, all) {
            diags.push(d);
        }
    }
    let cx = crate::kinds::CheckContext { root, index: all };
    crate::kinds::check(&cx, r, diags);
}

/// Names of runs, models, services and endpoints: lower-case letters, digits,
/// `_` and `-` (they never reach SQL as identifiers).
pub fn check_resource_name(r: &Resource, name: &SpannedStr, diags: &mut Vec<SpecDiagnostic>) {
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

/// Resources by name, so resolving a reference costs a hash lookup, not a scan.
pub struct ResourceIndex<'a> {
    all: &'a [Resource],
    by_name: HashMap<&'a str, Vec<&'a Resource>>,
}

impl<'a> ResourceIndex<'a> {
    /// Indexes `all`.
    pub fn new(all: &'a [Resource]) -> Self {
        let mut by_name: HashMap<&str, Vec<&Resource>> = HashMap::with_capacity(all.len());
        for r in all {
            by_name.entry(r.id.name.as_str()).or_default().push(r);
        }
        ResourceIndex { all, by_name }
    }

    /// Every resource, in file order.
    pub fn all(&self) -> &'a [Resource] {
        self.all
    }

    /// The resource with this id.
    pub fn get(&self, id: &ResourceId) -> Option<&'a Resource> {
        self.by_name
            .get(id.name.as_str())?
            .iter()
            .copied()
            .find(|r| r.id.kind == id.kind)
    }
}

/// Resolves `name` or `Kind/name` to a resource, optionally of an expected kind.
pub fn resolve_reference(
    from: &Resource,
    reference: &SpannedStr,
    expected: Option<Kind>,
    index: &ResourceIndex<'_>,
) -> Result<ResourceId, SpecDiagnostic> {
    let all = index.all;
    let (kind, name) = match reference.value.split_once('/') {
        Some((k, n)) => match Kind::parse(k) {
            Some(k) => (Some(k), n),
            None => {
                return Err(from.diag_at(
                    DiagCode::MissingReference,
                    reference,
                    format!("unknown kind `{k}` in reference `{}`", reference.value),
                ));
            }
        },
        None => (expected, reference.value.as_str()),
    };
    let matches: Vec<&Resource> = index
        .by_name
        .get(name)
        .map(|v| {
            v.iter()
                .copied()
                .filter(|c| kind.is_none_or(|k| c.id.kind == k))
                .collect()
        })
        .unwrap_or_default();
    match matches.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => {
            let what = kind.map_or("resource".to_string(), |k| k.to_string());
            let candidates = all
                .iter()
                .filter(|c| kind.is_none_or(|k| c.id.kind == k))
                .map(|c| c.id.name.as_str());
            let d = from.diag_at(
                DiagCode::MissingReference,
                reference,
                format!("no {what} named `{name}`"),
            );
            Err(match did_you_mean(name, candidates) {
                Some(s) => d.with_hint(format!("did you mean `{s}`?")),
                None => d,
            })
        }
        many => Err(from
            .diag_at(
                DiagCode::MissingReference,
                reference,
                format!("`{name}` is ambiguous"),
            )
            .with_hint(format!(
                "write one of {}",
                many.iter()
                    .map(|m| format!("`{}`", m.id))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
    }
}

pub fn check_identifier(r: &Resource, s: &SpannedStr, what: &str, diags: &mut Vec<SpecDiagnostic>) {
    if !is_identifier(&s.value) {
        diags.push(
            r.diag_at(
                DiagCode::InvalidValue,
                s,
                format!("`{}` is not a valid {what}", s.value),
            )
            .with_hint("use lower-case letters, digits and `_`, starting with a letter or `_` (at most 63)"),
        );
    }
}

pub fn check_env(r: &Resource, value: &SpannedStr, diags: &mut Vec<SpecDiagnostic>) {
    for (name, offset) in env::references(&value.value) {
        if std::env::var_os(&name).is_none() {
            let (line, column) = r.position(value);
            let base = r.file.offset(line, column);
            let quoted = r.file.text[base..].starts_with(['"', '\'']);
            let start = base + offset + usize::from(quoted);
            let span = miette::SourceSpan::new(start.into(), name.len() + 3);
            diags.push(
                SpecDiagnostic::new(
                    DiagCode::UnsetEnv,
                    &r.file,
                    span,
                    format!("environment variable `{name}` is not set"),
                )
                .with_hint(format!(
                    "export {name}=… before running, or write `$${{` for a literal `${{`"
                )),
            );
        }
    }
}

/// Lexically resolves `rel` against `base` and checks it stays within `root`.
/// Symlinks are resolved too when the target exists.
pub fn confine(root: &Path, base: &Path, rel: &str) -> Result<PathBuf, String> {
    let joined = base.join(rel);
    let mut normal = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                if !normal.pop() {
                    return Err("path climbs above the filesystem root".into());
                }
            }
            Component::CurDir => {}
            other => normal.push(other.as_os_str()),
        }
    }
    let real = normal.canonicalize().unwrap_or_else(|_| normal.clone());
    if real.starts_with(root) {
        Ok(real)
    } else {
        Err(format!("`{rel}` resolves outside the project folder"))
    }
}

/// Byte offset of a mapping key `name:` in a document's text.
pub fn find_key(text: &str, name: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = text[from..].find(name) {
        let at = from + i;
        let before_ok = at == 0 || text[..at].ends_with([' ', '\n', '{', ',', '"', '\'']);
        let after = text[at + name.len()..].trim_start_matches(['"', '\'']);
        if before_ok && after.starts_with(':') {
            return Some(at);
        }
        from = at + name.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(is_identifier("usage_agg_30d"));
        assert!(!is_identifier("Robert'); DROP TABLE x;--"));
        assert!(!is_identifier("1abc"));
        assert!(!is_identifier(""));
    }

    #[test]
    fn confinement() {
        let root = Path::new("/p");
        assert!(confine(root, Path::new("/p/specs"), "../data/x.csv").is_ok());
        assert!(confine(root, Path::new("/p/specs"), "../../etc/passwd").is_err());
        assert!(confine(root, Path::new("/p"), "/etc/passwd").is_err());
    }
}
