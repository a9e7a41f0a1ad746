//! How commands print: data on stdout (a table for people, JSON with `--json`),
//! diagnostics and progress on stderr.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::CliError;

/// A progress bar on stderr, hidden when stderr is not a terminal or the output is JSON
/// (a script reading it wants no escape codes). `len` `None`: a spinner.
pub fn progress(len: Option<u64>, json: bool, message: &str) -> ProgressBar {
    let bar = match len {
        Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::hidden()),
        None => ProgressBar::hidden(),
    };
    if json || !std::io::stderr().is_terminal() {
        return bar;
    }
    bar.set_draw_target(ProgressDrawTarget::stderr());
    let template = if len.is_some() {
        "{msg} [{bar:30}] {pos}/{len} {elapsed}"
    } else {
        "{spinner} {msg} {pos} {elapsed}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Writes `value` as one line of JSON.
pub fn json_line<T: Serialize>(out: &mut dyn Write, value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string(value)
        .map_err(|e| CliError::Failed(format!("cannot write JSON: {e}")))?;
    line(out, &text)
}

/// Writes one line to the data stream.
pub fn line(out: &mut dyn Write, text: &str) -> Result<(), CliError> {
    writeln!(out, "{text}").map_err(|e| CliError::Failed(format!("cannot write output: {e}")))
}

/// Left-aligned columns, each as wide as its widest cell, two spaces apart; no trailing
/// spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let render = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(cell);
            if i + 1 < cells.len() {
                let pad = widths
                    .get(i)
                    .map_or(0, |w| w.saturating_sub(cell.chars().count()));
                s.push_str(&" ".repeat(pad));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = render(header.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&render(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// `12 ms`, `1.5 s`, or `-` when unknown.
pub fn millis(ms: Option<u64>) -> String {
    match ms {
        None => "-".to_owned(),
        Some(ms) if ms < 1_000 => format!("{ms} ms"),
        Some(ms) => format!("{:.1} s", ms as f64 / 1_000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_lines_have_no_trailing_space() {
        let t = table(
            &["a", "long header"],
            &[vec!["wide cell".to_owned(), "x".to_owned()]],
        );
        assert_eq!(t, "a          long header\nwide cell  x\n");
        assert_eq!(millis(Some(1500)), "1.5 s");
        assert_eq!(millis(Some(12)), "12 ms");
        assert_eq!(millis(None), "-");
    }
}
