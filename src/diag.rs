//! Diagnostics that point into spec files.
//!
//! Every problem found while loading or validating specs becomes a [`SpecDiagnostic`]
//! carrying the file, line and column, the offending snippet and, when we can guess
//! it, a hint. They are collected, never thrown one at a time, so a user fixes all
//! of them in one pass.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use miette::{NamedSource, SourceSpan};

/// A spec file held in memory with an index of its line starts, so that
/// line/column positions reported by the YAML parser map to byte spans.
#[derive(Debug)]
pub struct SourceFile {
    /// Path as shown to the user: relative to the project folder.
    pub display: String,
    /// Absolute path on disk.
    pub path: PathBuf,
    /// The whole file text.
    pub text: Arc<String>,
    line_starts: Vec<usize>,
}

impl SourceFile {
    /// Keeps the file text and indexes its lines once.
    pub fn new(display: String, path: PathBuf, text: String) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        SourceFile {
            display,
            path,
            text: Arc::new(text),
            line_starts,
        }
    }

    /// Byte offset of a 1-based (line, character column) position, clamped to the text.
    pub fn offset(&self, line: u64, column: u64) -> usize {
        let line_idx = (line.max(1) - 1) as usize;
        let Some(&start) = self.line_starts.get(line_idx) else {
            return self.text.len();
        };
        let rest = &self.text[start..];
        let line_end = rest.find('\n').map_or(self.text.len(), |i| start + i);
        let col = column.max(1) as usize - 1;
        self.text[start..line_end]
            .char_indices()
            .nth(col)
            .map_or(line_end, |(i, _)| start + i)
    }

    /// 1-based (line, column) of a byte offset.
    pub fn position(&self, offset: usize) -> (u64, u64) {
        let line_idx = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line_idx];
        let col = self.text[start..offset.min(self.text.len())]
            .chars()
            .count();
        (line_idx as u64 + 1, col as u64 + 1)
    }

    /// Span of the token starting at (line, column): up to whitespace, `:` or `,`.
    pub fn token_span(&self, line: u64, column: u64) -> SourceSpan {
        let start = self.offset(line, column);
        let len = self.text[start..]
            .find(|c: char| c.is_whitespace() || c == ':' || c == ',' || c == ']' || c == '}')
            .unwrap_or(self.text.len() - start)
            .max(1)
            .min(self.text.len().saturating_sub(start));
        SourceSpan::new(start.into(), len)
    }
}

/// Which class of problem a diagnostic reports; tests and `--json` key on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiagCode {
    /// The YAML itself does not parse.
    Syntax,
    /// A key the kind does not have.
    UnknownField,
    /// A required key is absent.
    MissingField,
    /// A value of the wrong type or shape.
    InvalidValue,
    /// A document whose `kind` is not known.
    UnknownKind,
    /// A reference to a resource that does not exist.
    MissingReference,
    /// Two resources of one kind share a name.
    DuplicateName,
    /// Resources that depend on each other in a loop.
    Cycle,
    /// A `${VAR}` reference to an unset environment variable.
    UnsetEnv,
    /// A path that leaves the project folder.
    PathEscape,
    /// A file named by a spec cannot be read.
    MissingFile,
}

impl DiagCode {
    /// Stable code shown by miette, e.g. `spec::unknown-field`.
    pub fn as_str(self) -> &'static str {
        match self {
            DiagCode::Syntax => "spec::syntax",
            DiagCode::UnknownField => "spec::unknown-field",
            DiagCode::MissingField => "spec::missing-field",
            DiagCode::InvalidValue => "spec::invalid-value",
            DiagCode::UnknownKind => "spec::unknown-kind",
            DiagCode::MissingReference => "spec::missing-reference",
            DiagCode::DuplicateName => "spec::duplicate-name",
            DiagCode::Cycle => "spec::cycle",
            DiagCode::UnsetEnv => "spec::unset-env",
            DiagCode::PathEscape => "spec::path-escape",
            DiagCode::MissingFile => "spec::missing-file",
        }
    }
}

/// One problem in one spec file, at one place.
#[derive(Debug, Clone)]
pub struct SpecDiagnostic {
    /// The class of problem.
    pub code: DiagCode,
    /// What is wrong, in one sentence.
    pub message: String,
    /// File as shown to the user (relative to the project folder).
    pub file: String,
    /// 1-based line.
    pub line: u64,
    /// 1-based column (characters).
    pub column: u64,
    /// How to fix it, when we can tell.
    pub hint: Option<String>,
    source: Arc<String>,
    span: SourceSpan,
    label: String,
}

impl SpecDiagnostic {
    /// A diagnostic covering `span` of `file`.
    pub fn new(
        code: DiagCode,
        file: &SourceFile,
        span: SourceSpan,
        message: impl Into<String>,
    ) -> Self {
        let (line, column) = file.position(span.offset());
        SpecDiagnostic {
            code,
            message: message.into(),
            file: file.display.clone(),
            line,
            column,
            hint: None,
            source: file.text.clone(),
            span,
            label: "here".to_string(),
        }
    }

    /// A diagnostic on the token at a parser-reported (line, column).
    pub fn at(
        code: DiagCode,
        file: &SourceFile,
        line: u64,
        column: u64,
        message: impl Into<String>,
    ) -> Self {
        Self::new(code, file, file.token_span(line, column), message)
    }

    /// Adds a hint shown under the snippet.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Changes the label under the highlighted snippet.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// `file:line:col: message` — the grep-able one-liner.
    pub fn short(&self) -> String {
        let mut s = format!(
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        );
        if let Some(h) = &self.hint {
            s.push_str(&format!(" (hint: {h})"));
        }
        s
    }
}

impl fmt::Display for SpecDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SpecDiagnostic {}

impl miette::Diagnostic for SpecDiagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code.as_str()))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.hint
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        Some(Box::new(std::iter::once(
            miette::LabeledSpan::new_with_span(Some(self.label.clone()), self.span),
        )))
    }
}

/// Renders diagnostics with snippets (colour only when allowed), for the terminal.
pub fn render(diags: &[SpecDiagnostic]) -> String {
    let handler = miette::GraphicalReportHandler::new_themed(if colour_enabled() {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::unicode_nocolor()
    });
    let mut out = String::new();
    for d in diags {
        let named = NamedDiag {
            inner: d,
            src: NamedSource::new(&d.file, d.source.clone()),
        };
        if handler.render_report(&mut out, &named).is_err() {
            out.push_str(&d.short());
        }
        out.push('\n');
    }
    out
}

/// Whether diagnostics (printed on stderr) are coloured; see [`crate::colour`].
pub fn colour_enabled() -> bool {
    crate::colour::enabled(crate::colour::Stream::Stderr)
}

/// Wraps a diagnostic with a named source so miette prints `file:line:col`.
struct NamedDiag<'a> {
    inner: &'a SpecDiagnostic,
    src: NamedSource<Arc<String>>,
}

impl fmt::Debug for NamedDiag<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.inner, f)
    }
}

impl fmt::Display for NamedDiag<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.inner, f)
    }
}

impl std::error::Error for NamedDiag<'_> {}

impl miette::Diagnostic for NamedDiag<'_> {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.inner.code()
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.inner.help()
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.src)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        self.inner.labels()
    }
}

/// The closest candidate to `word`, if one is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::jaro_winkler(&word.to_lowercase(), &c.to_lowercase()),
                c,
            )
        })
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_positions_round_trip() {
        let f = SourceFile::new("a.yaml".into(), "a.yaml".into(), "ab\ncdé f\n".into());
        let off = f.offset(2, 4);
        assert_eq!(&f.text[off..off + 1], " ");
        assert_eq!(f.position(off), (2, 4));
        assert_eq!(f.position(0), (1, 1));
    }

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            did_you_mean("subscription", ["users", "subscriptions"]),
            Some("subscriptions")
        );
        assert_eq!(did_you_mean("zzz", ["users", "subscriptions"]), None);
    }
}
