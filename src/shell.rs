//! `riffle sql`: run SQL scripts or an interactive shell.

use anyhow::Context as _;
use riffle::arrow::record_batch::RecordBatch;
use riffle::prelude::*;
use std::collections::HashMap;
use std::io::Write;

/// How results are printed.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    /// An aligned text table.
    Table,
    /// Comma-separated values with a header.
    Csv,
    /// Tab-separated values with a header.
    Tsv,
    /// One JSON object per line.
    Json,
}

/// Prints one result in `format` to stdout.
fn print(batches: &[RecordBatch], format: Format) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Table => {
            writeln!(
                out,
                "{}",
                riffle::arrow::util::pretty::pretty_format_batches(batches)?
            )?;
        }
        Format::Csv | Format::Tsv => {
            let delimiter = if matches!(format, Format::Csv) {
                b','
            } else {
                b'\t'
            };
            let mut writer = riffle::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .with_delimiter(delimiter)
                .build(&mut out);
            for b in batches {
                writer.write(b)?;
            }
        }
        Format::Json => {
            let mut writer = riffle::arrow::json::LineDelimitedWriter::new(&mut out);
            for b in batches {
                writer.write(b)?;
            }
            writer.finish()?;
        }
    }
    Ok(())
}

/// Runs `script` and prints each query's rows; row counts and times go to
/// stderr.
pub fn run_script(
    ctx: &Context,
    script: &str,
    vars: &HashMap<String, String>,
    format: Format,
) -> anyhow::Result<()> {
    for statement in riffle::sql::hive::prepare_script(script, vars)? {
        let output = ctx.run_statement(&statement)?;
        report(&output, format)?;
    }
    Ok(())
}

fn report(output: &riffle::StatementOutput, format: Format) -> anyhow::Result<()> {
    let rows: usize = output.batches.iter().map(RecordBatch::num_rows).sum();
    if output.returns_rows {
        print(&output.batches, format)?;
        eprintln!(
            "{rows} row{} in {:.3} s",
            if rows == 1 { "" } else { "s" },
            output.elapsed.as_secs_f64()
        );
    } else {
        eprintln!("OK in {:.3} s", output.elapsed.as_secs_f64());
    }
    Ok(())
}

/// The interactive shell: statements end with `;`; a bad statement prints
/// its error and the shell goes on.
pub fn interactive(
    ctx: &Context,
    vars: &HashMap<String, String>,
    format: Format,
) -> anyhow::Result<()> {
    use rustyline::error::ReadlineError;
    let mut editor = rustyline::DefaultEditor::new().context("cannot start the line editor")?;
    let history =
        std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".riffle_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    eprintln!("Riffle SQL shell: end statements with `;`, Ctrl-D to quit.");
    let mut pending = String::new();
    loop {
        let prompt = if pending.is_empty() {
            "riffle> "
        } else {
            "   ...> "
        };
        match editor.readline(prompt) {
            Ok(line) => {
                pending.push_str(&line);
                pending.push('\n');
                if !line.trim_end().ends_with(';') {
                    continue;
                }
                let _ = editor.add_history_entry(pending.trim());
                if let Err(e) = run_script(ctx, &pending, vars, format) {
                    eprintln!("error: {e:#}");
                }
                pending.clear();
            }
            Err(ReadlineError::Interrupted) => pending.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    Ok(())
}
