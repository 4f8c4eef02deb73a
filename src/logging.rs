//! Logging: a rolling file in the data dir always; stdout in headless mode; and every event
//! copied into the state store so views can show recent lines. The TUI never writes to the
//! terminal it draws on.

use crate::config::LogFormat;
use crate::runtime::EventSender;
use crate::runtime::event::{Event, LogLine};
use crate::runtime::state::unix_ms_now;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
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

/// How often a [`RefusalCounter`] may write its summary line.
pub const REFUSAL_SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// Refused reward requests (`reward::routes`), summarised instead of one INFO line each.
pub static REWARD_REFUSALS: RefusalCounter =
    RefusalCounter::new("reward requests refused", REFUSAL_SUMMARY_EVERY);

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

/// Counts repeated refusals by reason and logs at most one INFO summary per interval, so a
/// flood of bad requests costs a line a minute instead of a line each. Every refusal is still
/// logged at DEBUG. Counts left when the flood stops go out with the next refusal's summary.
pub struct RefusalCounter {
    what: &'static str,
    every: Duration,
    state: Mutex<RefusalState>,
}

struct RefusalState {
    last_summary: Option<Instant>,
    counts: BTreeMap<String, u64>,
    last_message: String,
}

/// One summary: the refusals since the last one, by reason.
#[derive(Debug, PartialEq, Eq)]
pub struct RefusalSummary {
    pub total: u64,
    pub by_reason: String,
    pub last: String,
}

/// Distinct reasons kept per interval; the rest are counted under "other" (the reason may come
/// from the peer).
const MAX_REASONS: usize = 16;
/// Longest example message kept in a summary.
const MAX_MESSAGE: usize = 300;

impl RefusalCounter {
    pub const fn new(what: &'static str, every: Duration) -> Self {
        Self {
            what,
            every,
            state: Mutex::new(RefusalState {
                last_summary: None,
                counts: BTreeMap::new(),
                last_message: String::new(),
            }),
        }
    }

    /// Counts one refusal (`reason`: a short key such as the status code) and logs the
    /// summary when one is due.
    pub fn record(&self, reason: &str, message: &str) {
        tracing::debug!(reason, message, "{}", self.what);
        if let Some(s) = self.record_at(Instant::now(), reason, message) {
            tracing::info!(
                refused = s.total,
                by_reason = %s.by_reason,
                last = %s.last,
                "{} (summary, at most one per {} s)",
                self.what,
                self.every.as_secs()
            );
        }
    }

    /// The counting behind [`record`](Self::record), with the clock given: a summary when the
    /// interval since the last one has passed (the first refusal after a quiet spell is shown
    /// at once).
    pub fn record_at(&self, now: Instant, reason: &str, message: &str) -> Option<RefusalSummary> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let key = if state.counts.len() < MAX_REASONS || state.counts.contains_key(reason) {
            reason
        } else {
            "other"
        };
        let count = state.counts.entry(key.to_string()).or_default();
        *count = count.saturating_add(1);
        state.last_message = message.chars().take(MAX_MESSAGE).collect();
        let due = state
            .last_summary
            .is_none_or(|t| now.saturating_duration_since(t) >= self.every);
        if !due {
            return None;
        }
        state.last_summary = Some(now);
        let counts = std::mem::take(&mut state.counts);
        let total = counts.values().fold(0u64, |a, n| a.saturating_add(*n));
        let by_reason = counts
            .iter()
            .map(|(r, n)| format!("{r}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        Some(RefusalSummary {
            total,
            by_reason,
            last: std::mem::take(&mut state.last_message),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn refusals_are_summarised_at_most_once_per_interval() {
        let counter = RefusalCounter::new("test refusals", Duration::from_secs(60));
        let t0 = Instant::now();
        let first = counter
            .record_at(t0, "403", "not on the allow-list")
            .unwrap();
        assert_eq!(first.total, 1, "the first refusal is shown at once");
        for i in 0..1000u64 {
            let at = t0 + Duration::from_millis(i * 50);
            let reason = if i % 4 == 0 { "429" } else { "403" };
            assert_eq!(counter.record_at(at, reason, "x"), None, "{i}");
        }
        let s = counter
            .record_at(t0 + Duration::from_secs(61), "400", "bad json")
            .unwrap();
        assert_eq!(s.total, 1001);
        assert_eq!(s.by_reason, "400: 1, 403: 750, 429: 250");
        assert_eq!(s.last, "bad json");
        assert_eq!(
            counter.record_at(t0 + Duration::from_secs(62), "403", "x"),
            None
        );
    }

    #[test]
    fn peer_chosen_reasons_and_messages_stay_bounded() {
        let counter = RefusalCounter::new("test refusals", Duration::from_secs(60));
        let t0 = Instant::now();
        counter.record_at(t0, "first", "");
        for i in 0..100 {
            counter.record_at(t0, &format!("reason {i}"), &"m".repeat(10_000));
        }
        let s = counter
            .record_at(t0 + Duration::from_secs(60), "reason 0", "")
            .unwrap();
        assert_eq!(s.by_reason.matches(": ").count(), MAX_REASONS + 1);
        assert!(s.by_reason.contains("other: 84"), "{}", s.by_reason);
        assert_eq!(s.total, 101);
        counter.record_at(t0 + Duration::from_secs(120), "r", &"é".repeat(1000));
        let s = counter
            .record_at(t0 + Duration::from_secs(180), "r", &"é".repeat(1000))
            .unwrap();
        assert_eq!(s.last.chars().count(), MAX_MESSAGE);
    }

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
