//! Logging: a rolling file in the data dir always; stdout in headless mode; and every event
//! copied into the state store so views can show recent lines. The TUI never writes to the
//! terminal it draws on.

use crate::config::LogFormat;
use crate::runtime::EventSender;
use crate::runtime::event::{Event, LogLine};
use crate::runtime::state::unix_ms_now;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use tracing::field::{Field, Visit};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// warp logs every connection a peer drops mid-request (a dendrite giving up at its timeout, a
/// port scan) as an ERROR; that is the peer's business, not a node fault.
const QUIET_PEER_ERRORS: &str = "warp::server::run=off";

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("cannot create log directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open rolling log file in {path}: {source}")]
    File {
        path: PathBuf,
        source: tracing_appender::rolling::InitError,
    },
    #[error("invalid log filter `{filter}`: {source}")]
    Filter {
        filter: String,
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("a global logger is already installed")]
    AlreadySet,
}

pub struct LogSettings<'a> {
    pub data_dir: &'a Path,
    pub filter: &'a str,
    pub format: LogFormat,
    /// Headless: also write to stdout.
    pub stdout: bool,
}

/// Keep this alive for the whole run: dropping it flushes the log writers.
pub struct LogGuards(#[allow(dead_code)] Vec<WorkerGuard>);

pub fn init(settings: LogSettings<'_>, events: EventSender) -> Result<LogGuards, LoggingError> {
    let dir = settings.data_dir.join("logs");
    std::fs::create_dir_all(&dir).map_err(|source| LoggingError::Dir {
        path: dir.clone(),
        source,
    })?;
    let appender = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix("nicheimage-tui")
        .filename_suffix("log")
        .max_log_files(14)
        .build(&dir)
        .map_err(|source| LoggingError::File {
            path: dir.clone(),
            source,
        })?;
    let (file_writer, file_guard) = tracing_appender::non_blocking(appender);
    let mut guards = vec![file_guard];

    let filter = || {
        EnvFilter::try_new(settings.filter)
            .map(|f| f.add_directive(QUIET_PEER_ERRORS.parse().expect("a valid directive")))
            .map_err(|source| LoggingError::Filter {
                filter: settings.filter.to_string(),
                source,
            })
    };
    let json = settings.format == LogFormat::Json;
    let file_layer = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(file_writer)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(file_writer)
            .boxed()
    };
    let stdout_layer = if settings.stdout {
        let (w, g) = tracing_appender::non_blocking(std::io::stdout());
        guards.push(g);
        Some(if json {
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(w)
                .boxed()
        } else {
            use std::io::IsTerminal;
            tracing_subscriber::fmt::layer()
                .with_ansi(
                    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
                )
                .with_writer(w)
                .boxed()
        })
    } else {
        None
    };

    Registry::default()
        .with(file_layer.with_filter(filter()?))
        .with(stdout_layer.map(|l| l.with_filter(filter().expect("checked above"))))
        .with(StateLayer { events }.with_filter(filter()?))
        .try_init()
        .map_err(|_| LoggingError::AlreadySet)?;
    Ok(LogGuards(guards))
}

/// Copies log events into the state store (dropped, never blocking, when the channel is full).
struct StateLayer {
    events: EventSender,
}

#[derive(Default)]
struct MessageVisitor {
    message: String,
    fields: String,
}

impl Visit for MessageVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for StateLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut visitor = MessageVisitor::default();
        event.record(&mut visitor);
        let meta = event.metadata();
        self.events.try_send(Event::Log(LogLine {
            unix_ms: unix_ms_now(),
            level: meta.level().to_string(),
            target: meta.target().to_string(),
            message: format!("{}{}", visitor.message, visitor.fields),
        }));
    }
}
