//! Where a table's snapshots come from: an explicit list of `{asOf, path}`, or
//! a glob whose wildcard part names the as-of date (`data/*/users.csv` over
//! `data/2024-01-31/`, `data/2024-02-29/`), so a new month's folder is a new
//! snapshot without a spec edit.
//!
//! Both forms resolve to the same list of dated files, checked the same way
//! (inside the project, one file per date); the glob form is resolved again at
//! every plan, so what is on disk decides.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use schemars::JsonSchema;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::spec::SpannedStr;
use crate::spec::validate::confine;

/// One snapshot: the data as of a date.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SnapshotSpec {
    /// The date the data describes (YYYY-MM-DD).
    #[schemars(with = "String", regex(pattern = r"^\d{4}-\d{2}-\d{2}$"))]
    pub as_of: SpannedStr,
    /// CSV file, relative to this spec file; must stay inside the project.
    #[schemars(with = "String")]
    pub path: SpannedStr,
}

/// Snapshots found by a pattern.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SnapshotGlob {
    /// A glob relative to this spec file (`*`, `?`, `[…]`), e.g.
    /// `data/*/users.csv`. The part a wildcard matches must hold exactly one
    /// date `YYYY-MM-DD`: the snapshot's as-of date.
    #[schemars(with = "String")]
    pub glob: SpannedStr,
}

/// A table's snapshots, as written.
///
/// Deserialized by hand (a list or a mapping) rather than `untagged`: an
/// untagged enum buffers the document and loses the locations diagnostics
/// point at.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Snapshots {
    /// `[{ asOf, path }, …]`.
    List(Vec<SnapshotSpec>),
    /// `{ glob: "data/*/users.csv" }`.
    Glob(SnapshotGlob),
}

impl<'de> Deserialize<'de> for Snapshots {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Either;
        impl<'de> Visitor<'de> for Either {
            type Value = Snapshots;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of `{asOf, path}` or a mapping `{glob: PATTERN}`")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Snapshots, A::Error> {
                let mut list = Vec::new();
                while let Some(s) = seq.next_element::<SnapshotSpec>()? {
                    list.push(s);
                }
                Ok(Snapshots::List(list))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Snapshots, A::Error> {
                SnapshotGlob::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(Snapshots::Glob)
            }
        }
        d.deserialize_any(Either)
    }
}

/// A snapshot file with its date, found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatedFile {
    /// As-of date, `YYYY-MM-DD`.
    pub as_of: String,
    /// Absolute, confined path.
    pub path: PathBuf,
}

/// Why a snapshot source does not resolve; each names the value it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// A path or pattern leaves the project folder.
    #[error("{0}")]
    Escape(String),
    /// The pattern is not a glob.
    #[error("`{pattern}` is not a valid glob: {reason}")]
    Pattern {
        /// As written.
        pattern: String,
        /// The parser's reason.
        reason: String,
    },
    /// A matched path has no date (or several) in its wildcard part.
    #[error("`{file}` matches `{pattern}` but {problem}")]
    NoDate {
        /// The file, relative to the project.
        file: String,
        /// The pattern.
        pattern: String,
        /// What is wrong with its date.
        problem: String,
    },
    /// Two files give the same date.
    #[error("`{first}` and `{second}` are both snapshots as of {as_of}")]
    SameDate {
        /// The date.
        as_of: String,
        /// One file.
        first: String,
        /// The other.
        second: String,
    },
    /// Nothing matches.
    #[error("`{0}` matches no file")]
    Empty(String),
    /// The folder could not be listed.
    #[error("cannot list the files of `{pattern}`: {reason}")]
    Io {
        /// The pattern.
        pattern: String,
        /// The OS error.
        reason: String,
    },
}

impl Snapshots {
    /// How many snapshots the spec writes out (a glob: unknown until resolved).
    pub fn is_empty_list(&self) -> bool {
        matches!(self, Snapshots::List(l) if l.is_empty())
    }

    /// The glob, when the snapshots come from one.
    pub fn glob(&self) -> Option<&SpannedStr> {
        match self {
            Snapshots::Glob(g) => Some(&g.glob),
            Snapshots::List(_) => None,
        }
    }

    /// The snapshot files of a glob, sorted by date. `base` is the spec
    /// file's folder, `root` the project folder every match must stay in.
    pub fn resolve_glob(
        root: &Path,
        base: &Path,
        pattern: &str,
    ) -> Result<Vec<DatedFile>, SnapshotError> {
        let pattern_path = Path::new(pattern);
        if pattern_path.is_absolute() {
            return Err(SnapshotError::Escape(format!(
                "`{pattern}` is absolute; write it relative to this spec file"
            )));
        }
        // The literal folder before the first wildcard must stay inside.
        let literal: PathBuf = pattern_path
            .components()
            .take_while(|c| !has_wildcard(&c.as_os_str().to_string_lossy()))
            .collect();
        confine(root, base, &literal.to_string_lossy()).map_err(SnapshotError::Escape)?;
        let wild: Vec<bool> = pattern_path
            .components()
            .map(|c| has_wildcard(&c.as_os_str().to_string_lossy()))
            .collect();
        let full = format!(
            "{}/{}",
            glob::Pattern::escape(&base.to_string_lossy()),
            pattern
        );
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: true,
        };
        let matches = glob::glob_with(&full, options).map_err(|e| SnapshotError::Pattern {
            pattern: pattern.to_string(),
            reason: e.msg.to_string(),
        })?;
        let mut by_date: BTreeMap<String, DatedFile> = BTreeMap::new();
        for m in matches {
            let path = m.map_err(|e| SnapshotError::Io {
                pattern: pattern.to_string(),
                reason: e.to_string(),
            })?;
            if !path.is_file() {
                continue;
            }
            let rel_to_base = path.strip_prefix(base).unwrap_or(&path);
            let shown = display_rel(root, &path);
            let confined = confine(root, base, &rel_to_base.to_string_lossy())
                .map_err(SnapshotError::Escape)?;
            let as_of = date_of(rel_to_base, &wild).map_err(|problem| SnapshotError::NoDate {
                file: shown.clone(),
                pattern: pattern.to_string(),
                problem,
            })?;
            if let Some(prev) = by_date.get(&as_of) {
                return Err(SnapshotError::SameDate {
                    as_of,
                    first: display_rel(root, &prev.path),
                    second: shown,
                });
            }
            by_date.insert(
                as_of.clone(),
                DatedFile {
                    as_of,
                    path: confined,
                },
            );
        }
        if by_date.is_empty() {
            return Err(SnapshotError::Empty(pattern.to_string()));
        }
        Ok(by_date.into_values().collect())
    }
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn display_rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The one date in the components of `rel` that a wildcard matched.
fn date_of(rel: &Path, wild: &[bool]) -> Result<String, String> {
    let parts: Vec<String> = rel
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let mut dates: Vec<String> = Vec::new();
    for (part, is_wild) in parts.iter().zip(wild.iter().copied()) {
        if is_wild {
            dates.extend(dates_in(part));
        }
    }
    match dates.as_slice() {
        [] => Err("its wildcard part holds no date YYYY-MM-DD".into()),
        [one] => match chrono::NaiveDate::parse_from_str(one, "%Y-%m-%d") {
            Ok(_) => Ok(one.clone()),
            Err(_) => Err(format!("`{one}` is not a calendar date")),
        },
        many => Err(format!(
            "its wildcard part holds {} dates ({}); name one",
            many.len(),
            many.join(", ")
        )),
    }
}

/// Every `YYYY-MM-DD` in `s` with no digit right before or after it.
fn dates_in(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let shape = |w: &[u8]| {
        w.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
    };
    (0..b.len().saturating_sub(9))
        .filter(|&i| shape(&b[i..i + 10]))
        .filter(|&i| i == 0 || !b[i - 1].is_ascii_digit())
        .filter(|&i| b.get(i + 10).is_none_or(|c| !c.is_ascii_digit()))
        .map(|i| s[i..i + 10].to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for f in files {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, "a\n1\n").expect("write");
        }
        dir
    }

    #[test]
    fn dates_come_from_the_wildcard_part_sorted() {
        let dir = tree(&[
            "data/2024-02-29/users.csv",
            "data/2024-01-31/users.csv",
            "data/2024-01-31/other.csv",
        ]);
        let root = dir.path().canonicalize().expect("canon");
        let got = Snapshots::resolve_glob(&root, &root, "data/*/users.csv").expect("resolves");
        let dates: Vec<&str> = got.iter().map(|f| f.as_of.as_str()).collect();
        assert_eq!(dates, ["2024-01-31", "2024-02-29"]);
        assert!(got[0].path.ends_with("data/2024-01-31/users.csv"));
    }

    #[test]
    fn a_date_in_the_file_name_works_too() {
        let dir = tree(&["snap/users_2024-03-31.csv"]);
        let root = dir.path().canonicalize().expect("canon");
        let got = Snapshots::resolve_glob(&root, &root, "snap/users_*.csv").expect("resolves");
        assert_eq!(got[0].as_of, "2024-03-31");
    }

    #[test]
    fn a_match_without_a_date_is_named() {
        let dir = tree(&["data/2024-01-31/users.csv", "data/latest/users.csv"]);
        let root = dir.path().canonicalize().expect("canon");
        let err = Snapshots::resolve_glob(&root, &root, "data/*/users.csv").expect_err("no date");
        assert!(err.to_string().contains("data/latest/users.csv"), "{err}");
    }

    #[test]
    fn an_impossible_date_and_two_dates_are_refused() {
        let dir = tree(&["data/2024-02-30/users.csv"]);
        let root = dir.path().canonicalize().expect("canon");
        let err = Snapshots::resolve_glob(&root, &root, "data/*/users.csv").expect_err("bad");
        assert!(err.to_string().contains("not a calendar date"), "{err}");
        let dir = tree(&["data/2024-01-31_2024-02-29/users.csv"]);
        let root = dir.path().canonicalize().expect("canon");
        let err = Snapshots::resolve_glob(&root, &root, "data/*/users.csv").expect_err("two");
        assert!(err.to_string().contains("2 dates"), "{err}");
    }

    #[test]
    fn the_same_date_twice_is_refused() {
        let dir = tree(&["a/2024-01-31/users.csv", "b/2024-01-31/users.csv"]);
        let root = dir.path().canonicalize().expect("canon");
        let err = Snapshots::resolve_glob(&root, &root, "*/*/users.csv").expect_err("dup");
        assert!(matches!(err, SnapshotError::SameDate { .. }), "{err}");
    }

    #[test]
    fn patterns_stay_inside_the_project() {
        let dir = tree(&["specs/x.yaml", "data/2024-01-31/users.csv"]);
        let root = dir.path().join("specs").canonicalize().expect("canon");
        for p in ["../data/*/users.csv", "/etc/*/passwd"] {
            let err = Snapshots::resolve_glob(&root, &root, p).expect_err("escape");
            assert!(matches!(err, SnapshotError::Escape(_)), "{p}: {err}");
        }
    }

    #[test]
    fn no_match_is_an_error() {
        let dir = tree(&["data/readme.txt"]);
        let root = dir.path().canonicalize().expect("canon");
        let err = Snapshots::resolve_glob(&root, &root, "data/*/users.csv").expect_err("empty");
        assert_eq!(err, SnapshotError::Empty("data/*/users.csv".into()));
    }
}
