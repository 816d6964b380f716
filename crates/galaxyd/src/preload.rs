//! Start-up preload ("first update"): stream the rows of a query into a galaxy before the
//! node reports ready, so its first gets do not all go to the data source.
//!
//! The rows are read as they come (SQLite on a blocking thread, PostgreSQL as a row
//! stream), through a bounded channel into [`Galaxy::preload`], which keeps the keys this
//! node owns. A progress bar is drawn on stderr when it is a terminal; the end is logged
//! with the rate.

use std::io::IsTerminal;
use std::time::Duration;

use clap::Args;
use galaxycache_galaxy::{Error, Galaxy, Preload, Value};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use tokio::time::Instant;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::backend::preload_rows;
use crate::config::GalaxyConfig;

/// A galaxy's start-up preload: flags and `[[galaxy]]` keys.
#[derive(Args, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
#[command(next_help_heading = "Start-up preload (per galaxy; [[galaxy]] keys with _)")]
pub struct PreloadConfig {
    /// SQLite and PostgreSQL backends: at start-up, run this query and keep the rows this
    /// node owns before /readyz says ready; the first column is the key (text), the second
    /// the value (text or blob/bytea), e.g. `SELECT key, value FROM kv` [default: none]
    #[arg(long, value_name = "SQL", conflicts_with = "config")]
    pub preload_query: Option<String>,
    /// When the preload fails, log a warning and start cold (and ready) instead of stopping
    /// the node with the error [default: off, a failed preload stops the node]
    #[arg(long, conflicts_with = "config")]
    pub first_update_fail_ok: bool,
}

/// Run the preload of `config`'s galaxy, if it has one. A failure is an error unless the
/// galaxy says `first_update_fail_ok`: then it is logged and the node starts cold.
pub(crate) async fn start_up(galaxy: &Galaxy, config: &GalaxyConfig) -> Result<(), String> {
    let Some(query) = &config.preload.preload_query else {
        return Ok(());
    };
    match preload(galaxy, config, query).await {
        Ok(_) => Ok(()),
        Err(e) if config.preload.first_update_fail_ok => {
            tracing::warn!(galaxy = %config.name, error = %e,
                "preload failed; starting cold (first_update_fail_ok)");
            Ok(())
        }
        Err(e) => Err(format!("galaxy {:?}: preload failed: {e}", config.name)),
    }
}

/// Stream the rows of `query` into `galaxy`, showing progress, and log the rate at the end.
async fn preload(galaxy: &Galaxy, config: &GalaxyConfig, query: &str) -> Result<Preload, String> {
    let rows = preload_rows(&config.backend, &config.backend_options, query)?;
    let entries = ReceiverStream::new(rows).map(|row| {
        row.map(|(key, bytes)| (key, Value::new(bytes)))
            .map_err(Error::backend)
    });
    let bar = progress_bar(&config.name);
    let start = Instant::now();
    let result = galaxy
        .preload(entries, |p| {
            bar.set_position(p.seen);
            bar.set_message(format!("{} kept", p.stored));
        })
        .await;
    bar.finish_and_clear();
    let done = result.map_err(|e| e.to_string())?;
    let elapsed = start.elapsed();
    tracing::info!(
        galaxy = %config.name,
        rows = done.seen,
        stored = done.stored,
        skipped = done.skipped,
        elapsed = ?elapsed,
        rows_per_sec = rows_per_sec(done.seen, elapsed),
        "preload done"
    );
    Ok(done)
}

/// Rows per second, rounded down; 0 for an instant preload of nothing.
fn rows_per_sec(rows: u64, elapsed: Duration) -> u64 {
    (rows as f64 / elapsed.as_secs_f64().max(1e-9)) as u64
}

/// A spinner with the rows read and the rate, on stderr; hidden unless it is a terminal.
fn progress_bar(galaxy: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} preloading galaxy {prefix}: {human_pos} rows ({per_sec}), {msg} [{elapsed}]",
    ) {
        bar.set_style(style);
    }
    bar.set_prefix(galaxy.to_owned());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_do_not_divide_by_zero() {
        assert_eq!(rows_per_sec(1000, Duration::from_millis(500)), 2000);
        assert_eq!(rows_per_sec(0, Duration::ZERO), 0);
    }
}
