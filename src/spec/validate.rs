//! Checks that need more than one document: unique names, references, identifiers
//! that will reach SQL, column references, paths, `${ENV}` and cycles.
//! Collects every problem; never stops at the first.

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

use super::env;
use super::{Expectation, Kind, ProjectSpec, Resource, ResourceId, SpannedStr, Spec, SpecSet};
use crate::diag::{DiagCode, SpecDiagnostic, did_you_mean};
use crate::graph;

/// Identifiers that reach SQL (table and column names) must match this.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 63
}

/// Names the offline store reserves for itself.
const RESERVED_COLUMNS: [&str; 1] = ["as_of"];

/// Loads and validates every spec under `root`.
pub fn load_and_validate(root: &Path) -> Result<SpecSet, Vec<SpecDiagnostic>> {
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

    let projects: Vec<&Resource> = resources
        .iter()
        .filter(|r| r.id.kind == Kind::Project)
        .collect();
    for extra in projects.iter().skip(1) {
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
        Some(r) => match &r.spec {
            Spec::Project(p) => (p.clone(), r.base_dir().to_path_buf()),
            _ => unreachable!("filtered on kind"),
        },
        None => (default_project(&root), root.clone()),
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

fn default_project(root: &Path) -> ProjectSpec {
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
    }
}

fn check_resource(
    root: &Path,
    r: &Resource,
    all: &ResourceIndex<'_>,
    diags: &mut Vec<SpecDiagnostic>,
) {
    for (reference, kind) in crate::graph::references(r) {
        if let Err(d) = resolve_reference(r, &reference, kind, all) {
            diags.push(d);
        }
    }
    match &r.spec {
        Spec::TrainingRun(t) => super::check_ml::check_training_run(r, t, all, diags),
        Spec::Model(m) => super::check_ml::check_model(r, m, all, diags),
        Spec::Endpoint(e) => super::check_ml::check_endpoint(r, e, diags),
        Spec::Service(s) => super::check_service::check_service(root, r, s, diags),
        Spec::FeatureView(v) => check_feature_view(r, v, all, diags),
        Spec::Project(p) => {
            for url in [&p.state, &p.offline, &p.online].into_iter().flatten() {
                check_env(r, url, diags);
            }
        }
        Spec::Entity(e) => {
            for k in &e.join_keys {
                check_identifier(r, k, "join key", diags);
            }
        }
        Spec::Table(t) => {
            check_identifier(r, &t.name, "table name", diags);
            if t.name.value.starts_with("reconcile_") {
                diags.push(r.diag_at(
                    DiagCode::InvalidValue,
                    &t.name,
                    "table names starting with `reconcile_` are reserved for the state store",
                ));
            }
            check_table(root, r, t, diags);
        }
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

fn check_identifier(r: &Resource, s: &SpannedStr, what: &str, diags: &mut Vec<SpecDiagnostic>) {
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

pub(super) fn check_env(r: &Resource, value: &SpannedStr, diags: &mut Vec<SpecDiagnostic>) {
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

fn check_table(root: &Path, r: &Resource, t: &super::TableSpec, diags: &mut Vec<SpecDiagnostic>) {
    // Column names come from map keys, which carry no spans: point at the text.
    for name in t.columns.keys() {
        if !is_identifier(name) || RESERVED_COLUMNS.contains(&name.as_str()) {
            let offset = find_key(&r.file.text, name).unwrap_or(0);
            let reason = if is_identifier(name) {
                format!("column name `{name}` is reserved by the offline store")
            } else {
                format!("`{name}` is not a valid column name")
            };
            diags.push(
                SpecDiagnostic::new(
                    DiagCode::InvalidValue,
                    &r.file,
                    miette::SourceSpan::new(offset.into(), name.len().max(1)),
                    reason,
                )
                .with_hint("use lower-case letters, digits and `_`; `as_of` is added by reconcile"),
            );
        }
    }
    let column_exists =
        |c: &SpannedStr, diags: &mut Vec<SpecDiagnostic>| -> Option<super::ColumnType> {
            match t.columns.get(&c.value) {
                Some(ty) => Some(*ty),
                None => {
                    let d = r.diag_at(
                        DiagCode::MissingReference,
                        c,
                        format!("table `{}` has no column `{}`", t.name.value, c.value),
                    );
                    diags.push(
                        match did_you_mean(&c.value, t.columns.keys().map(String::as_str)) {
                            Some(s) => d.with_hint(format!("did you mean `{s}`?")),
                            None => d.with_hint(format!(
                                "declared columns: {}",
                                t.columns.keys().cloned().collect::<Vec<_>>().join(", ")
                            )),
                        },
                    );
                    None
                }
            }
        };
    if t.primary_key.is_empty() {
        diags.push(
            r.diag_at(
                DiagCode::MissingField,
                &t.name,
                "table has an empty primaryKey",
            )
            .with_hint("name the columns that identify a row"),
        );
    }
    for k in &t.primary_key {
        column_exists(k, diags);
    }
    for e in &t.expect {
        match e {
            Expectation::NotNull(cols)
            | Expectation::Unique(cols)
            | Expectation::NotConstant(cols) => {
                for c in cols {
                    column_exists(c, diags);
                }
            }
            Expectation::Between(b) => {
                if let Some(ty) = column_exists(&b.column, diags)
                    && !matches!(ty, super::ColumnType::Int | super::ColumnType::Float)
                {
                    diags.push(r.diag_at(
                        DiagCode::InvalidValue,
                        &b.column,
                        format!(
                            "between needs a numeric column; `{}` is {}",
                            b.column.value,
                            ty.as_str()
                        ),
                    ));
                }
                if let (Some(lo), Some(hi)) = (b.min, b.max)
                    && lo > hi
                {
                    diags.push(r.diag_at(
                        DiagCode::InvalidValue,
                        &b.column,
                        format!("between has min {lo} above max {hi}"),
                    ));
                }
            }
            Expectation::InSet(s) => {
                column_exists(&s.column, diags);
            }
            Expectation::Regex(rx) => {
                if let Some(ty) = column_exists(&rx.column, diags)
                    && ty != super::ColumnType::String
                {
                    diags.push(r.diag_at(
                        DiagCode::InvalidValue,
                        &rx.column,
                        format!(
                            "regex needs a string column; `{}` is {}",
                            rx.column.value,
                            ty.as_str()
                        ),
                    ));
                }
                if let Err(e) = regex::Regex::new(&rx.pattern.value) {
                    diags.push(r.diag_at(
                        DiagCode::InvalidValue,
                        &rx.pattern,
                        format!("invalid regular expression: {e}"),
                    ));
                }
            }
            Expectation::RowCount(_) | Expectation::ExactColumns(_) => {}
        }
    }
    let mut dates = HashSet::new();
    if t.snapshots.is_empty() {
        diags.push(
            r.diag_at(DiagCode::MissingField, &t.name, "table has no snapshots")
                .with_hint("add `snapshots: [{ asOf: 2024-01-31, path: data.csv }]`"),
        );
    }
    for s in &t.snapshots {
        if chrono::NaiveDate::parse_from_str(&s.as_of.value, "%Y-%m-%d").is_err() {
            diags.push(
                r.diag_at(
                    DiagCode::InvalidValue,
                    &s.as_of,
                    format!("`{}` is not a date", s.as_of.value),
                )
                .with_hint("write dates as YYYY-MM-DD"),
            );
        } else if !dates.insert(s.as_of.value.clone()) {
            diags.push(r.diag_at(
                DiagCode::DuplicateName,
                &s.as_of,
                format!("two snapshots as of {}", s.as_of.value),
            ));
        }
        match confine(root, r.base_dir(), &s.path.value) {
            Err(msg) => diags.push(
                r.diag_at(DiagCode::PathEscape, &s.path, msg)
                    .with_hint("data files must live inside the spec folder; paths resolve against this file's folder"),
            ),
            Ok(p) if !p.is_file() => diags.push(
                r.diag_at(DiagCode::MissingFile, &s.path, format!("no file at `{}`", s.path.value))
                    .with_hint("paths resolve against the folder of this spec file"),
            ),
            Ok(_) => {}
        }
    }
}

fn check_feature_view(
    r: &Resource,
    v: &super::FeatureViewSpec,
    all: &ResourceIndex<'_>,
    diags: &mut Vec<SpecDiagnostic>,
) {
    check_identifier(r, &v.name, "feature view name", diags);
    if super::parse_ttl(&v.ttl.value).is_none() {
        diags.push(
            r.diag_at(
                DiagCode::InvalidValue,
                &v.ttl,
                format!("`{}` is not a duration", v.ttl.value),
            )
            .with_hint("write a positive number of days, hours or minutes: `90d`, `12h`, `30m`"),
        );
    }
    let table = resolve_reference(r, &v.table, Some(Kind::Table), all)
        .ok()
        .and_then(|id| all.get(&id))
        .and_then(|t| match &t.spec {
            Spec::Table(t) => Some(t),
            _ => None,
        });
    let entity = resolve_reference(r, &v.entity, Some(Kind::Entity), all)
        .ok()
        .and_then(|id| all.get(&id))
        .and_then(|e| match &e.spec {
            Spec::Entity(e) => Some(e),
            _ => None,
        });
    let Some(table) = table else { return };
    if v.features.is_empty() {
        diags.push(r.diag_at(
            DiagCode::MissingField,
            &v.name,
            "feature view has no features",
        ));
    }
    let mut seen = HashSet::new();
    for f in &v.features {
        if !seen.insert(f.value.as_str()) {
            diags.push(r.diag_at(
                DiagCode::DuplicateName,
                f,
                format!("feature `{}` listed twice", f.value),
            ));
        } else if !table.columns.contains_key(&f.value) {
            let d = r.diag_at(
                DiagCode::MissingReference,
                f,
                format!("table `{}` has no column `{}`", table.name.value, f.value),
            );
            diags.push(
                match did_you_mean(&f.value, table.columns.keys().map(String::as_str)) {
                    Some(s) => d.with_hint(format!("did you mean `{s}`?")),
                    None => d.with_hint(format!(
                        "columns of `{}`: {}",
                        table.name.value,
                        table.columns.keys().cloned().collect::<Vec<_>>().join(", ")
                    )),
                },
            );
        }
    }
    if let Some(entity) = entity {
        for key in &entity.join_keys {
            if !table.columns.contains_key(&key.value) {
                diags.push(
                    r.diag_at(
                        DiagCode::MissingReference,
                        &v.table,
                        format!(
                            "table `{}` lacks `{}`, the join key of entity `{}`",
                            table.name.value, key.value, entity.name.value
                        ),
                    )
                    .with_hint("a feature view's table must have every join key of its entity"),
                );
            } else if table.columns.get(&key.value) != Some(&super::ColumnType::String) {
                let ty = table.columns.get(&key.value).map_or("?", |t| t.as_str());
                diags.push(
                    r.diag_at(
                        DiagCode::InvalidValue,
                        &v.table,
                        format!(
                            "join key `{}` is {ty} in table `{}`; feature views need a string join key",
                            key.value, table.name.value
                        ),
                    )
                    .with_hint(format!("declare `{}: string` in the table's columns", key.value)),
                );
            } else if v.features.iter().any(|f| f.value == key.value) {
                let f = v
                    .features
                    .iter()
                    .find(|f| f.value == key.value)
                    .unwrap_or(&v.name);
                diags.push(r.diag_at(
                    DiagCode::InvalidValue,
                    f,
                    format!("`{}` is the entity's join key, not a feature", key.value),
                ));
            }
        }
    }
}

/// Byte offset of a mapping key `name:` in a document's text.
fn find_key(text: &str, name: &str) -> Option<usize> {
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
