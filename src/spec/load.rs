//! Loading specs: find YAML files under a folder, split them into documents, read
//! each document's `kind` first and then deserialize the document straight into
//! that kind's type, keeping line/column locations.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{Kind, Resource, ResourceId};
use crate::diag::{DiagCode, SourceFile, SpecDiagnostic, did_you_mean};

/// Every `*.yaml` / `*.yml` file under `root`, recursively, sorted, skipping
/// hidden folders (`.reconcile`, `.git`) and the data folder's non-YAML files.
pub fn discover(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let ft = entry.file_type()?;
            if ft.is_dir() {
                stack.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The largest spec file read, in bytes: a bound on what one file may cost
/// (memory and parse time); the parser's budget bounds what a document expands to.
pub const MAX_SPEC_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// Why a spec file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A FIFO, device or socket named `*.yaml`: reading it could block forever
    /// or never end.
    #[error("cannot read spec file: it is not a regular file ({0})")]
    NotRegular(&'static str),
    /// Over [`MAX_SPEC_FILE_BYTES`].
    #[error("cannot read spec file: it has over {limit} bytes (limit {limit})")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The OS refused.
    #[error("cannot read spec file: {0}")]
    Io(#[from] std::io::Error),
}

fn file_type_name(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_dir() {
        "a folder"
    } else {
        "not a file"
    }
}

/// Reads a spec file if it is a regular file of at most
/// [`MAX_SPEC_FILE_BYTES`]. The type is checked before opening (opening a FIFO
/// blocks until a writer comes), and again on the open handle, which is opened
/// non-blocking, so a file swapped for a FIFO in between cannot hang us either.
/// The read itself stops one byte past the limit.
pub fn read_spec_file(path: &Path) -> Result<Vec<u8>, ReadError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(file_type_name(meta.file_type())));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(file_type_name(meta.file_type())));
    }
    if meta.len() > MAX_SPEC_FILE_BYTES {
        return Err(ReadError::TooLarge {
            limit: MAX_SPEC_FILE_BYTES,
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_SPEC_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_SPEC_FILE_BYTES {
        return Err(ReadError::TooLarge {
            limit: MAX_SPEC_FILE_BYTES,
        });
    }
    Ok(bytes)
}

/// `O_NONBLOCK` (the same value on every Linux architecture we build for).
const O_NONBLOCK: i32 = 0o4000;

/// One YAML document of a file and the number of file lines before it: the
/// parser's line numbers plus `line_offset` are the file's line numbers.
struct Document {
    text: String,
    line_offset: u64,
}

/// Splits a file into documents at `---` / `...` marker lines (YAML forbids those
/// markers inside scalars, so a line-level split is exact).
fn split_documents(text: &str) -> Vec<Document> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut line_offset = 0u64;
    let mut has_content = false;
    let mut flush = |current: &mut String, line_offset: u64, has_content: bool| {
        if has_content {
            docs.push(Document {
                text: std::mem::take(current),
                line_offset,
            });
        }
        current.clear();
    };
    for (idx, line) in text.split_inclusive('\n').enumerate() {
        let lineno = idx as u64 + 1;
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_start = bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t");
        let is_end = bare == "..." || bare.starts_with("... ");
        if is_start || is_end {
            flush(&mut current, line_offset, has_content);
            has_content = false;
            line_offset = lineno;
            if is_start && bare.len() > 3 {
                // `--- content` keeps its content at its column, on this line.
                line_offset = lineno - 1;
                current.push_str("    ");
                current.push_str(&bare[4..]);
                current.push('\n');
                has_content = !bare[4..].trim().is_empty() && !bare[4..].trim().starts_with('#');
            }
            continue;
        }
        let t = bare.trim();
        if !t.is_empty() && !t.starts_with('#') {
            has_content = true;
        }
        current.push_str(line);
    }
    flush(&mut current, line_offset, has_content);
    docs
}

/// Just enough of a document to dispatch on its kind.
#[derive(Deserialize)]
struct Probe {
    kind: Option<Spanned<String>>,
}

/// Parses every spec file under `root`. Returns the resources that parsed and
/// every diagnostic found; a document with an error is skipped, the others kept.
pub fn load_dir(root: &Path) -> (Vec<Resource>, Vec<SpecDiagnostic>) {
    let mut resources = Vec::new();
    let mut diags = Vec::new();
    let files = match discover(root) {
        Ok(f) => f,
        Err(e) => {
            let f = SourceFile::new(
                root.display().to_string(),
                root.to_path_buf(),
                String::new(),
            );
            diags.push(SpecDiagnostic::at(
                DiagCode::MissingFile,
                &f,
                1,
                1,
                format!("cannot read spec folder {}: {e}", root.display()),
            ));
            return (resources, diags);
        }
    };
    for path in files {
        let display = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        match read_spec_file(&path) {
            Ok(bytes) => {
                let text = match String::from_utf8(bytes) {
                    Ok(t) => t,
                    Err(e) => {
                        let f = SourceFile::new(display, path.clone(), String::new());
                        diags.push(SpecDiagnostic::at(
                            DiagCode::Syntax,
                            &f,
                            1,
                            1,
                            format!("file is not UTF-8: {e}"),
                        ));
                        continue;
                    }
                };
                let text = text
                    .strip_prefix('\u{feff}')
                    .map(str::to_string)
                    .unwrap_or(text);
                let file = Arc::new(SourceFile::new(display, path.clone(), text));
                load_file(&file, &mut resources, &mut diags);
            }
            Err(e) => {
                let f = SourceFile::new(display, path.clone(), String::new());
                let hint = match &e {
                    ReadError::NotRegular(_) => {
                        "spec files must be regular files; rename or remove it"
                    }
                    ReadError::TooLarge { .. } => "split the specs over several files",
                    ReadError::Io(_) => "check the file's permissions",
                };
                diags.push(
                    SpecDiagnostic::at(DiagCode::MissingFile, &f, 1, 1, e.to_string())
                        .with_hint(hint),
                );
            }
        }
    }
    (resources, diags)
}

/// Parses one file's documents into resources.
pub fn load_file(
    file: &Arc<SourceFile>,
    resources: &mut Vec<Resource>,
    diags: &mut Vec<SpecDiagnostic>,
) {
    for doc in split_documents(&file.text) {
        let probe: Probe = match serde_saphyr::from_str(&doc.text) {
            Ok(p) => p,
            Err(e) => {
                diags.push(saphyr_diag(file, &e, doc.line_offset));
                continue;
            }
        };
        let Some(kind_s) = probe.kind else {
            diags.push(
                SpecDiagnostic::at(
                    DiagCode::MissingField,
                    file,
                    doc.line_offset + 1,
                    1,
                    "document has no `kind`",
                )
                .with_hint(format!(
                    "start each document with `kind:` one of {}",
                    kind_list()
                )),
            );
            continue;
        };
        let Some(kind) = Kind::parse(&kind_s.value) else {
            let loc = kind_s.referenced;
            let mut d = SpecDiagnostic::at(
                DiagCode::UnknownKind,
                file,
                loc.line() + doc.line_offset,
                loc.column(),
                format!("unknown kind `{}`", kind_s.value),
            );
            d = match did_you_mean(&kind_s.value, Kind::ALL.iter().map(|k| k.as_str())) {
                Some(s) => d.with_hint(format!("did you mean `{s}`?")),
                None => d.with_hint(format!("kinds are {}", kind_list())),
            };
            diags.push(d);
            continue;
        };
        let parsed = crate::kinds::parse_spec(kind, &doc.text)
            .map_err(|e| saphyr_diag(file, &e, doc.line_offset));
        match parsed {
            Ok(spec) => resources.push(Resource {
                id: ResourceId::new(kind, spec.name().value.clone()),
                spec,
                file: file.clone(),
                line_offset: doc.line_offset,
            }),
            Err(d) => diags.push(d),
        }
    }
}

fn kind_list() -> String {
    Kind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Turns a YAML/serde error into a diagnostic with a hint.
fn saphyr_diag(file: &SourceFile, err: &serde_saphyr::Error, line_offset: u64) -> SpecDiagnostic {
    if let Some(breach) = budget_breach(err) {
        let (line, column) = err
            .location()
            .map(|l| (l.line() + line_offset, l.column()))
            .filter(|(l, _)| *l > line_offset)
            .unwrap_or((line_offset + 1, 1));
        return SpecDiagnostic::at(
            DiagCode::Syntax,
            file,
            line,
            column,
            format!(
                "document starting at line {} is too large to parse: {}",
                line_offset + 1,
                describe_breach(breach)
            ),
        )
        .with_hint(
            "aliases that expand into more and more copies (an alias bomb) hit this limit; write the values out",
        );
    }
    let (line, column) = err
        .location()
        .map(|l| (l.line() + line_offset, l.column()))
        .filter(|(l, _)| *l > line_offset)
        .unwrap_or((line_offset + 1, 1));
    let opts = serde_saphyr::render_options! { snippets: serde_saphyr::SnippetMode::Off };
    let rendered = err.render_with_options(opts);
    let message = strip_location_suffix(&rendered).to_string();
    classify(file, line, column, message)
}

/// The budget limit a parse hit, through the wrappers that add snippets.
fn budget_breach(err: &serde_saphyr::Error) -> Option<&serde_saphyr::budget::BudgetBreach> {
    let mut e = err;
    loop {
        match e {
            serde_saphyr::Error::Budget { breach, .. } => return Some(breach),
            serde_saphyr::Error::WithSnippet { error, .. }
            | serde_saphyr::Error::AliasError { error, .. } => e = error,
            _ => return None,
        }
    }
}

/// Which limit, in words, with the number reached and the limit.
fn describe_breach(b: &serde_saphyr::budget::BudgetBreach) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    let limits = serde_saphyr::Budget::default();
    match b {
        B::Events { events } => format!(
            "{events} parser events, over the limit of {}",
            limits.max_events
        ),
        B::Aliases { aliases } => format!(
            "{aliases} aliases (`*name`), over the limit of {}",
            limits.max_aliases
        ),
        B::Anchors { anchors } => format!(
            "{anchors} anchors (`&name`), over the limit of {}",
            limits.max_anchors
        ),
        B::Depth { depth } => format!(
            "nesting {depth} levels deep, over the limit of {}",
            limits.max_depth
        ),
        B::Nodes { nodes } => format!(
            "{nodes} nodes after expanding aliases, over the limit of {}",
            limits.max_nodes
        ),
        B::ScalarBytes { total_scalar_bytes } => format!(
            "{total_scalar_bytes} bytes of scalar text, over the limit of {}",
            limits.max_total_scalar_bytes
        ),
        B::AliasAnchorRatio { aliases, anchors } => format!(
            "{aliases} aliases for {anchors} anchors, over the limit of {} aliases per anchor",
            limits.alias_anchor_ratio_multiplier
        ),
        B::RecordedAnchorEvents {
            recorded_anchor_events,
        } => format!(
            "anchors recording {recorded_anchor_events} events, over the limit of {}",
            limits.max_recorded_anchor_events
        ),
        B::RecordedAnchorBytes {
            recorded_anchor_bytes,
        } => format!(
            "anchors recording {recorded_anchor_bytes} bytes, over the limit of {}",
            limits.max_recorded_anchor_bytes
        ),
        B::MergeKeys { merge_keys } => format!(
            "{merge_keys} merge keys (`<<`), over the limit of {}",
            limits.max_merge_keys
        ),
        B::Documents { documents } => format!(
            "{documents} documents, over the limit of {}",
            limits.max_documents
        ),
        other => format!("a parser limit was reached ({other:?})"),
    }
}

fn strip_location_suffix(msg: &str) -> &str {
    match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    }
}

/// The names after serde's "expected one of a, b, c".
fn expected_names(message: &str) -> Vec<String> {
    message
        .split_once("expected one of ")
        .or_else(|| message.split_once("expected "))
        .map(|(_, list)| {
            list.split(", ")
                .map(|s| s.trim_matches(['`', ' ']).to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Picks the code and hint from serde's message shapes.
fn classify(file: &SourceFile, line: u64, column: u64, message: String) -> SpecDiagnostic {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or_default().to_string();
        let expected = expected_names(rest);
        let d = SpecDiagnostic::at(
            DiagCode::UnknownField,
            file,
            line,
            column,
            format!("unknown field `{field}`"),
        )
        .with_label("not a field of this kind");
        return match did_you_mean(&field, expected.iter().map(String::as_str)) {
            Some(s) => d.with_hint(format!("did you mean `{s}`?")),
            None if !expected.is_empty() => {
                d.with_hint(format!("fields here are: {}", expected.join(", ")))
            }
            None => d,
        };
    }
    if message.starts_with("unknown variant `") {
        let variant = message.split('`').nth(1).unwrap_or_default().to_string();
        let expected = expected_names(&message);
        let d = SpecDiagnostic::at(DiagCode::InvalidValue, file, line, column, message.clone());
        return match did_you_mean(&variant, expected.iter().map(String::as_str)) {
            Some(s) => d.with_hint(format!("did you mean `{s}`?")),
            None => d,
        };
    }
    if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        // The parser's own text goes on to name its option; a spec author
        // needs the key and what to do.
        let key = rest
            .split(',')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        return SpecDiagnostic::at(
            DiagCode::InvalidValue,
            file,
            line,
            column,
            format!("`{key}` is set twice in this mapping"),
        )
        .with_label("second occurrence")
        .with_hint(format!(
            "keep one `{key}:` line; YAML keeps no duplicate keys"
        ));
    }
    if message.starts_with("missing field") {
        return SpecDiagnostic::at(DiagCode::MissingField, file, line, column, message)
            .with_label("in this document");
    }
    let code = if message.contains("invalid")
        || message.contains("expected")
        || message.contains("duplicate")
    {
        DiagCode::InvalidValue
    } else {
        DiagCode::Syntax
    };
    SpecDiagnostic::at(code, file, line, column, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Arc<SourceFile> {
        Arc::new(SourceFile::new(
            "t.yaml".into(),
            "/p/t.yaml".into(),
            text.into(),
        ))
    }

    #[test]
    fn splits_documents_keeping_line_numbers() {
        let docs = split_documents("# c\nkind: A\n---\nkind: B\nname: x\n...\n---\n\nkind: C\n");
        assert_eq!(docs.len(), 3);
        assert_eq!(
            (docs[1].line_offset, docs[1].text.lines().next()),
            (3, Some("kind: B"))
        );
        assert_eq!(
            (docs[2].line_offset, docs[2].text.lines().nth(1)),
            (7, Some("kind: C"))
        );
    }

    #[test]
    fn loads_kinds_and_reports_unknown_fields_with_position() {
        let f = file(
            "kind: Entity\nname: user\njoinKeys: [user_id]\n---\nkind: Entity\nname: x\njoinKey: [a]\n",
        );
        let (mut r, mut d) = (vec![], vec![]);
        load_file(&f, &mut r, &mut d);
        assert_eq!(r.len(), 1);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].code, DiagCode::UnknownField);
        assert_eq!((d[0].line, d[0].column), (7, 1));
        assert_eq!(d[0].hint.as_deref(), Some("did you mean `joinKeys`?"));
    }

    #[test]
    fn a_duplicate_key_names_the_key_and_the_fix() {
        let f = file("kind: Entity\nname: e\nname: f\njoinKeys: [id]\n");
        let (mut r, mut d) = (vec![], vec![]);
        load_file(&f, &mut r, &mut d);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].message, "`name` is set twice in this mapping");
        assert_eq!(d[0].line, 3);
        assert!(!d[0].message.contains("Policy"));
    }

    #[test]
    fn unknown_kind_suggests() {
        let f = file("kind: Tabel\nname: x\n");
        let (mut r, mut d) = (vec![], vec![]);
        load_file(&f, &mut r, &mut d);
        assert_eq!(d[0].code, DiagCode::UnknownKind);
        assert_eq!((d[0].line, d[0].column), (1, 7));
        assert_eq!(d[0].hint.as_deref(), Some("did you mean `Table`?"));
    }
}
