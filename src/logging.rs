//! Logging: a rolling file in the data dir always; stdout in headless mode; and every event
//! copied into the state store so views can show recent lines. The TUI never writes to the
//! terminal it draws on.

use nicheimage_node::config::LogFormat;
use nicheimage_node::runtime::LogSender;
use nicheimage_node::runtime::event::LogLine;
use nicheimage_node::runtime::state::unix_ms_now;
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

/// Rolling files: one per UTC day, the newest [`LOG_FILES_KEPT`] kept, each cut at
/// [`LOG_FILE_MAX_BYTES`] (later lines that day go to stdout/journal only, after one line saying
/// so). The data dir's `logs/` thus holds at most about 14 × 128 MiB however hostile the traffic.
const LOG_FILES_KEPT: usize = 14;
const LOG_FILE_MAX_BYTES: u64 = 128 << 20;
const SECS_PER_DAY: u64 = 86_400;

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

pub fn init(settings: LogSettings<'_>, logs: LogSender) -> Result<LogGuards, LoggingError> {
    let dir = settings.data_dir.join("logs");
    std::fs::create_dir_all(&dir).map_err(|source| LoggingError::Dir {
        path: dir.clone(),
        source,
    })?;
    let appender = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix("nicheimage-tui")
        .filename_suffix("log")
        .max_log_files(LOG_FILES_KEPT)
        .build(&dir)
        .map_err(|source| LoggingError::File {
            path: dir.clone(),
            source,
        })?;
    let capped = CappedWriter::new(appender, LOG_FILE_MAX_BYTES, utc_day);
    let (file_writer, file_guard) = tracing_appender::non_blocking(capped);
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
        .with(StateLayer { logs }.with_filter(filter()?))
        .try_init()
        .map_err(|_| LoggingError::AlreadySet)?;
    Ok(LogGuards(guards))
}

/// Copies log events into the state store (dropped, never blocking, when its log channel is
/// full; components' events travel apart).
struct StateLayer {
    logs: LogSender,
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
        self.logs.try_send(LogLine {
            unix_ms: unix_ms_now(),
            level: *meta.level(),
            target: meta.target().to_string(),
            message: format!("{}{}", visitor.message, visitor.fields),
        });
    }
}

/// Days since the epoch in UTC: the rolling appender's daily period.
fn utc_day() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / SECS_PER_DAY)
}

/// Caps the bytes written per period (the appender's day): tracing-appender rotates by time
/// only, so a flood of lines would otherwise grow one file without bound.
struct CappedWriter<W> {
    inner: W,
    cap: u64,
    period: fn() -> u64,
    current: u64,
    written: u64,
    noted: bool,
}

impl<W: std::io::Write> CappedWriter<W> {
    fn new(inner: W, cap: u64, period: fn() -> u64) -> Self {
        Self {
            inner,
            cap,
            period,
            current: period(),
            written: 0,
            noted: false,
        }
    }
}

impl<W: std::io::Write> std::io::Write for CappedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let now = (self.period)();
        if now != self.current {
            (self.current, self.written, self.noted) = (now, 0, false);
        }
        let len = buf.len() as u64;
        if self.written.saturating_add(len) > self.cap {
            if !self.noted {
                self.noted = true;
                let note = format!(
                    "log file reached its cap of {} MiB; further lines until the next rotation \
                     are dropped from the file\n",
                    self.cap >> 20
                );
                self.inner.write_all(note.as_bytes())?;
            }
            // Dropped on purpose: reporting an error would only make the logger complain.
            return Ok(buf.len());
        }
        let n = self.inner.write(buf)?;
        self.written = self.written.saturating_add(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    static DAY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    fn test_day() -> u64 {
        DAY.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[test]
    fn the_file_writer_stops_at_its_cap_until_the_next_period() {
        let mut w = CappedWriter::new(Vec::new(), 100, test_day);
        for _ in 0..50 {
            w.write_all(b"0123456789\n").unwrap();
        }
        let text = String::from_utf8(w.inner.clone()).unwrap();
        assert_eq!(text.matches("0123456789").count(), 9);
        assert_eq!(text.matches("reached its cap").count(), 1);
        DAY.store(1, std::sync::atomic::Ordering::SeqCst);
        w.write_all(b"next day\n").unwrap();
        let text = String::from_utf8(w.inner).unwrap();
        assert!(text.ends_with("next day\n"), "{text}");
    }
}
