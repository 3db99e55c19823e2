//! Reading a CSV snapshot into a typed [`Batch`] by the declared column types.
//!
//! Handles a UTF-8 BOM, CRLF line ends and quoted fields; an empty cell is NULL.
//! Every problem names the file, the line and the column; up to
//! [`MAX_VALUE_ERRORS`] bad values are reported at once.

use std::fmt;

use chrono::NaiveDate;
use thiserror::Error;

use crate::data::{Batch, Column};
use crate::progress::Units;
use crate::spec::ColumnType;

/// How many bad values one error report lists.
pub const MAX_VALUE_ERRORS: usize = 20;

/// A value that does not parse as its column's declared type.
#[derive(Debug, Clone, PartialEq)]
pub struct BadValue {
    /// 1-based line in the file.
    pub line: u64,
    /// Column name.
    pub column: String,
    /// 1-based column position in the file.
    pub position: usize,
    /// The raw text.
    pub value: String,
    /// Declared type.
    pub expected: ColumnType,
}

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column `{}` (#{}): `{}` is not {}",
            self.line,
            self.column,
            self.position,
            self.value,
            match self.expected {
                ColumnType::String => "text",
                ColumnType::Int => "an int",
                ColumnType::Float => "a float",
                ColumnType::Bool => "a bool (True/False)",
                ColumnType::Date => "a date (YYYY-MM-DD)",
            }
        )
    }
}

/// Why a CSV file could not be read as the declared table.
#[derive(Debug, Error)]
pub enum CsvError {
    /// The file has no header line.
    #[error("{file}: the file is empty; expected a header line")]
    Empty {
        /// File as shown to the user.
        file: String,
    },
    /// Header and declared columns differ.
    #[error("{file}:1: header does not match the declared columns: {}", describe_header(.missing, .extra, .order))]
    Header {
        /// File as shown to the user.
        file: String,
        /// Declared but absent.
        missing: Vec<String>,
        /// Present but undeclared.
        extra: Vec<String>,
        /// Same columns, different order (only with `exactColumns: true`).
        order: Option<Vec<String>>,
    },
    /// A structural problem (field count, encoding) at a line.
    #[error("{file}:{line}: {message}")]
    Malformed {
        /// File as shown to the user.
        file: String,
        /// 1-based line.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// Values that do not parse as their declared types.
    #[error("{file}: {} value(s) do not match their declared types:\n{}", .count, .errors.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Values {
        /// File as shown to the user.
        file: String,
        /// Total bad values (only the first few are kept).
        count: usize,
        /// The first few.
        errors: Vec<BadValue>,
    },
}

fn describe_header(missing: &[String], extra: &[String], order: &Option<Vec<String>>) -> String {
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing column(s) {}", quote_list(missing)));
    }
    if !extra.is_empty() {
        parts.push(format!("undeclared column(s) {}", quote_list(extra)));
    }
    if let Some(o) = order {
        parts.push(format!(
            "columns in another order than declared ({})",
            o.join(", ")
        ));
    }
    parts.join("; ")
}

fn quote_list(v: &[String]) -> String {
    v.iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rows parsed between two progress reports: an atomic addition per batch,
/// nothing per row.
const ROWS_PER_REPORT: usize = 4096;

/// Parses `bytes` (a whole CSV file) into a batch of the declared columns.
/// `exact_order` also requires the header to list them in declared order.
pub fn parse(
    file: &str,
    bytes: &[u8],
    declared: &[(String, ColumnType)],
    exact_order: bool,
) -> Result<Batch, CsvError> {
    parse_counted(file, bytes, declared, exact_order, &Units::default())
}

/// As [`parse`], counting parsed rows into `rows`: the file's lines are added
/// to its total up front (one pass over the bytes, already made to size the
/// columns), and corrected to the rows found (blank lines, quoted line
/// breaks, a missing final newline) once the file is parsed.
pub fn parse_counted(
    file: &str,
    bytes: &[u8],
    declared: &[(String, ColumnType)],
    exact_order: bool,
    rows: &Units,
) -> Result<Batch, CsvError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(bytes);
    let header = match rdr.byte_headers() {
        Ok(h) if !(h.is_empty() || h.len() == 1 && h[0].is_empty()) => h.clone(),
        Ok(_) => return Err(CsvError::Empty { file: file.into() }),
        Err(e) => return Err(malformed(file, bytes, &e)),
    };
    let names: Vec<String> = header
        .iter()
        .map(|h| String::from_utf8_lossy(h).trim().to_string())
        .collect();
    let missing: Vec<String> = declared
        .iter()
        .filter(|(d, _)| !names.contains(d))
        .map(|(d, _)| d.clone())
        .collect();
    let extra: Vec<String> = names
        .iter()
        .filter(|n| !declared.iter().any(|(d, _)| d == *n))
        .cloned()
        .collect();
    let in_order = names
        .iter()
        .map(String::as_str)
        .eq(declared.iter().map(|(d, _)| d.as_str()));
    if !missing.is_empty() || !extra.is_empty() || (exact_order && !in_order) {
        let order = (missing.is_empty() && extra.is_empty()).then(|| names.clone());
        return Err(CsvError::Header {
            file: file.into(),
            missing,
            extra,
            order,
        });
    }
    // Position of each declared column in the file.
    let positions: Vec<usize> = declared
        .iter()
        .map(|(d, _)| names.iter().position(|n| n == d).unwrap_or(0))
        .collect();
    let estimate = bytes.iter().filter(|&&b| b == b'\n').count();
    // Lines after the header's.
    let expected = estimate.saturating_sub(1);
    rows.add_total(expected as i64);
    let mut columns: Vec<Column> = declared
        .iter()
        .map(|(_, ty)| Column::with_capacity(*ty, estimate))
        .collect();
    let mut lines = Vec::with_capacity(estimate);
    let mut errors = Vec::new();
    let mut bad = 0usize;
    let mut record = csv::ByteRecord::new();
    // Line numbers from byte offsets: csv's own line counter lags by one on CRLF files.
    let (mut counted_to, mut newlines) = (0usize, 0u64);
    loop {
        match rdr.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(malformed(file, bytes, &e)),
        }
        let start = record
            .position()
            .map_or(0, |p| p.byte() as usize)
            .min(bytes.len());
        newlines += bytes[counted_to..start]
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64;
        counted_to = start;
        let line = 1 + newlines + u64::from(bytes.get(start) == Some(&b'\n'));
        if record.len() == 1 && record[0].is_empty() && names.len() > 1 {
            continue; // a blank line
        }
        lines.push(line);
        if lines.len() % ROWS_PER_REPORT == 0 {
            rows.inc(ROWS_PER_REPORT as u64);
        }
        for (ci, (name, ty)) in declared.iter().enumerate() {
            let raw = &record[positions[ci]];
            let text = match std::str::from_utf8(raw) {
                Ok(t) => t,
                Err(_) => {
                    return Err(CsvError::Malformed {
                        file: file.into(),
                        line,
                        message: format!("column `{name}` is not valid UTF-8"),
                    });
                }
            };
            if let Err(()) = push_value(&mut columns[ci], text) {
                bad += 1;
                if errors.len() < MAX_VALUE_ERRORS {
                    errors.push(BadValue {
                        line,
                        column: name.clone(),
                        position: positions[ci] + 1,
                        value: text.to_string(),
                        expected: *ty,
                    });
                }
                push_null(&mut columns[ci]);
            }
        }
    }
    rows.inc((lines.len() % ROWS_PER_REPORT) as u64);
    rows.add_total(lines.len() as i64 - expected as i64);
    if bad > 0 {
        return Err(CsvError::Values {
            file: file.into(),
            count: bad,
            errors,
        });
    }
    Ok(Batch {
        columns: declared
            .iter()
            .map(|(n, _)| n.clone())
            .zip(columns)
            .collect(),
        lines,
    })
}

fn malformed(file: &str, bytes: &[u8], e: &csv::Error) -> CsvError {
    let line = e
        .position()
        .map_or(0, |p| line_at(bytes, p.byte() as usize));
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("this row has {len} fields but the header has {expected_len}")
        }
        csv::ErrorKind::Utf8 { err, .. } => format!("invalid UTF-8 in field {}", err.field() + 1),
        _ => e.to_string(),
    };
    CsvError::Malformed {
        file: file.into(),
        line,
        message,
    }
}

/// 1-based line of the record starting at byte `start`.
fn line_at(bytes: &[u8], start: usize) -> u64 {
    let start = start.min(bytes.len());
    let newlines = bytes[..start].iter().filter(|&&b| b == b'\n').count() as u64;
    1 + newlines + u64::from(bytes.get(start) == Some(&b'\n'))
}

fn push_null(col: &mut Column) {
    match col {
        Column::Str(v) => v.push(None),
        Column::Int(v) => v.push(None),
        Column::Float(v) => v.push(None),
        Column::Bool(v) => v.push(None),
        Column::Date(v) => v.push(None),
    }
}

/// Parses one cell into its column; `Err` for a value of the wrong type.
fn push_value(col: &mut Column, text: &str) -> Result<(), ()> {
    let t = text.trim();
    if t.is_empty() {
        push_null(col);
        return Ok(());
    }
    match col {
        Column::Str(v) => v.push(Some(text.to_string())),
        Column::Int(v) => v.push(Some(t.parse::<i64>().map_err(|_| ())?)),
        Column::Float(v) => {
            let x = t.parse::<f64>().map_err(|_| ())?;
            if !x.is_finite() {
                return Err(());
            }
            v.push(Some(x))
        }
        Column::Bool(v) => v.push(Some(match t {
            "True" | "true" | "TRUE" | "1" => true,
            "False" | "false" | "FALSE" | "0" => false,
            _ => return Err(()),
        })),
        Column::Date(v) => v.push(Some(
            NaiveDate::parse_from_str(t, "%Y-%m-%d").map_err(|_| ())?,
        )),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl() -> Vec<(String, ColumnType)> {
        vec![
            ("id".into(), ColumnType::String),
            ("n".into(), ColumnType::Int),
            ("ok".into(), ColumnType::Bool),
        ]
    }

    #[test]
    fn counts_rows_in_batches_and_corrects_the_estimated_total() {
        // 10 000 rows, a blank line, a quoted line break, no final newline.
        let mut text = String::from("id,n,ok\n\"x\ny\",1,True\n\n");
        for i in 1..10_000 {
            text.push_str(&format!("u{i},{i},False"));
            if i < 9_999 {
                text.push('\n');
            }
        }
        let rows = Units::counting();
        let b = parse_counted("t.csv", text.as_bytes(), &decl(), true, &rows).unwrap();
        assert_eq!(b.rows(), 10_000);
        assert_eq!((rows.done(), rows.total()), (10_000, 10_000));
        // A second file adds to the same count.
        parse_counted("u.csv", b"id,n,ok\na,1,True\n", &decl(), true, &rows).unwrap();
        assert_eq!((rows.done(), rows.total()), (10_001, 10_001));
    }

    #[test]
    fn parses_bom_crlf_quotes_and_nulls() {
        let b = parse(
            "t.csv",
            b"\xEF\xBB\xBFid,n,ok\r\n\"a,1\",3,True\r\nb,,False\r\n",
            &decl(),
            true,
        )
        .unwrap();
        assert_eq!(b.rows(), 2);
        assert_eq!(
            b.column("id"),
            Some(&Column::Str(vec![Some("a,1".into()), Some("b".into())]))
        );
        assert_eq!(b.column("n"), Some(&Column::Int(vec![Some(3), None])));
        assert_eq!(b.lines, vec![2, 3]);
    }

    #[test]
    fn reorders_columns_unless_exact() {
        let b = parse("t.csv", b"n,id,ok\n1,a,True\n", &decl(), false).unwrap();
        assert_eq!(b.column("n"), Some(&Column::Int(vec![Some(1)])));
        let e = parse("t.csv", b"n,id,ok\n1,a,True\n", &decl(), true).unwrap_err();
        assert!(e.to_string().contains("another order"), "{e}");
    }

    #[test]
    fn names_line_and_column_of_bad_values() {
        let e = parse("t.csv", b"id,n,ok\na,1,True\nb,x,True\n", &decl(), false).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("line 3, column `n` (#2): `x` is not an int"),
            "{msg}"
        );
    }

    #[test]
    fn reports_missing_and_extra_columns() {
        let e = parse("t.csv", b"id,n,extra\na,1,2\n", &decl(), false).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("missing column(s) `ok`") && msg.contains("undeclared column(s) `extra`"),
            "{msg}"
        );
    }

    #[test]
    fn reports_ragged_rows() {
        let e = parse("t.csv", b"id,n,ok\na,1\n", &decl(), false).unwrap_err();
        assert!(
            e.to_string()
                .contains("t.csv:2: this row has 2 fields but the header has 3"),
            "{e}"
        );
    }
}
