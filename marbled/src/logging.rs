//! Tracing setup for the `marbled` binary: stderr (launchd's `StandardErrorPath` captures it),
//! or, when `daemon.log_file` is set (as `marblectl install` sets it), only that file, rotated
//! daily by the daemon — launchd's file is rotated by nobody who can make launchd reopen it,
//! so it keeps only what precedes logging and panics. The filter comes from `MARBLE_LOG`
//! (default `info`).
//!
//! Only `main` calls [`init`]; the library itself never installs a subscriber. Spans use
//! `skip_all` and explicit fields, and no code path formats a credential, so secrets cannot
//! reach either sink.

use std::path::Path;

use tracing_subscriber::EnvFilter;

/// Environment variable holding the log filter.
pub const LOG_ENV: &str = "MARBLE_LOG";

/// Keeps the file writer flushing; drop it last.
#[derive(Debug)]
pub struct LogGuard {
    _file: Option<tracing_appender::non_blocking::WorkerGuard>,
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log file's rotation could not be set up.
    #[error("cannot open log file {path}")]
    File {
        /// The configured file.
        path: String,
        /// Cause.
        #[source]
        source: tracing_appender::rolling::InitError,
    },
    /// `MARBLE_LOG` is not a valid filter.
    #[error("invalid {LOG_ENV} filter")]
    Filter(#[from] tracing_subscriber::filter::FromEnvError),
}

/// Install the global subscriber.
pub fn init(log_file: Option<&Path>, keep: u32) -> Result<LogGuard, LogError> {
    let filter = EnvFilter::builder()
        .with_default_directive(tracing::Level::INFO.into())
        .with_env_var(LOG_ENV)
        .from_env()?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    let Some(path) = log_file else {
        builder.with_writer(std::io::stderr).init();
        return Ok(LogGuard { _file: None });
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let prefix = path
        .file_name()
        .map_or_else(|| "marbled.log".into(), |n| n.to_string_lossy());
    let appender = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix(prefix.as_ref())
        .max_log_files(usize::try_from(keep.max(1)).unwrap_or(1))
        .build(dir)
        .map_err(|source| LogError::File {
            path: path.display().to_string(),
            source,
        })?;
    let (file, guard) = tracing_appender::non_blocking(appender);
    builder.with_writer(file).init();
    Ok(LogGuard { _file: Some(guard) })
}
