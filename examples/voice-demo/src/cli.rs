//! Pieces the example binaries share: the exit code of `main`, the `PORT` variable, the printed conversation.

use std::io::Write;
use std::process::ExitCode;

use crate::conversation::{DemoConfig, DemoReport, run_conversation};
use crate::providers::Providers;
use crate::render;

/// The exit code of a binary named `name` whose `run` returned `result`: success, or the error (with its causes)
/// on stderr and failure.
pub fn exit_code(name: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The port in the `PORT` environment variable, `default` when it is not set.
///
/// # Errors
/// When `PORT` is set but not a port number.
pub fn port_from_env(default: u16) -> anyhow::Result<u16> {
    match std::env::var("PORT") {
        Ok(p) => p
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("PORT={p:?}: {e}")),
        Err(_) => Ok(default),
    }
}

/// Runs the conversation of `config`, printing each line as it happens and then the per-turn latency table.
///
/// # Errors
/// As [`run_conversation`], and when stdout cannot be written.
pub async fn print_conversation(
    config: &DemoConfig,
    providers: &Providers,
) -> anyhow::Result<DemoReport> {
    let report = run_conversation(config, providers, |line| {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{}", render::line(line));
        let _ = out.flush();
    })
    .await?;
    let mut out = std::io::stdout();
    writeln!(out, "\nPer-turn latency (ms):")?;
    write!(out, "{}", render::latency_table(&report.latencies()))?;
    Ok(report)
}
