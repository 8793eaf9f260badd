//! How the listing commands (`streams`, `metadata`, `schema list`) print: a readable
//! table for a person at a terminal, JSON lines for a program (`--format` chooses).

use std::io::{IsTerminal, Write};

use serde::Serialize;
use serde_json::Value;

/// The output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON document per line.
    Json,
    /// Aligned columns with a header.
    Table,
}

/// The `--format` option.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct FormatArg {
    /// Output format: a table, or JSON lines (default: a table on a terminal, JSON
    /// lines when the output goes to a file or a pipe).
    #[arg(long, value_enum, value_name = "FORMAT")]
    format: Option<Format>,
}

impl FormatArg {
    /// The format asked for, or the one that suits where standard output goes.
    pub fn resolve(self) -> Format {
        self.format.unwrap_or_else(|| {
            if std::io::stdout().is_terminal() {
                Format::Table
            } else {
                Format::Json
            }
        })
    }
}

/// Prints `rows`: as JSON lines (each row serialized as it is, its fields in their
/// order), or as a table of the given `columns` (a field missing from a row is an
/// empty cell).
pub fn print_rows<T: Serialize>(
    format: Format,
    rows: &[T],
    columns: &[&str],
) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            for row in rows {
                writeln!(out, "{}", serde_json::to_string(row)?)?;
            }
        }
        Format::Table => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|row| {
                    let value = serde_json::to_value(row).unwrap_or(Value::Null);
                    columns.iter().map(|c| cell(value.get(*c))).collect()
                })
                .collect();
            write_table(&mut out, columns, &cells)?;
        }
    }
    out.flush()
}

/// Prints one object: as a JSON line, or as a table of its fields and values.
pub fn print_object<T: Serialize>(format: Format, object: &T) -> std::io::Result<()> {
    match format {
        Format::Json => print_rows(Format::Json, std::slice::from_ref(object), &[]),
        Format::Table => {
            let object = serde_json::to_value(object)?;
            let cells: Vec<Vec<String>> = object
                .as_object()
                .into_iter()
                .flatten()
                .map(|(key, value)| vec![key.clone(), cell(Some(value))])
                .collect();
            let mut out = std::io::stdout().lock();
            write_table(&mut out, &["field", "value"], &cells)?;
            out.flush()
        }
    }
}

/// A value as a table shows it: text without quotes, nothing for null or missing,
/// anything else as compact JSON.
fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

/// Columns padded to their widest cell, two spaces apart, under an upper-case header.
/// (Plain aligned text: a table crate would add borders we do not want.)
fn write_table(out: &mut impl Write, header: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let header: Vec<String> = header.iter().map(|h| h.to_uppercase()).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, text) in widths.iter_mut().zip(row) {
            *width = (*width).max(text.chars().count());
        }
    }
    for line in std::iter::once(&header).chain(rows) {
        let mut text = String::new();
        for (i, (cell, width)) in line.iter().zip(&widths).enumerate() {
            if i + 1 == line.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        writeln!(out, "{}", text.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_aligns_columns_under_their_headers() {
        let mut out = Vec::new();
        let rows = vec![
            vec!["order-1".to_string(), "3".to_string()],
            vec!["a-much-longer-stream".to_string(), "12".to_string()],
        ];
        write_table(&mut out, &["stream", "last_revision"], &rows).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "STREAM                LAST_REVISION\n\
             order-1               3\n\
             a-much-longer-stream  12\n"
        );
    }

    #[test]
    fn cells_show_text_bare_and_other_values_as_json() {
        assert_eq!(cell(Some(&Value::from("x"))), "x");
        assert_eq!(cell(Some(&serde_json::json!({"a": 1}))), r#"{"a":1}"#);
        assert_eq!(cell(Some(&Value::Null)), "");
        assert_eq!(cell(None), "");
    }
}
