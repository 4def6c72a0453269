//! Logging: daily files in the data directory's `logs/` folder, plus stderr when run in a
//! terminal. tracing-appender's own pruning (`max_log_files`) only runs at rollover and deletes
//! one file too many on start, and its non-blocking writer drops lines when full, so callsync
//! prunes by itself and runs the writer in blocking (lossless) mode.
//!
//! Secrets are kept out of logs by type (tokens are never formatted), and, as a last line of
//! defence, every line is scrubbed of anything shaped like an OAuth token, session id or
//! password before it is written.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_appender::rolling::{Builder, Rotation};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use callsync_config::LoggingConfig;

const PREFIX: &str = "callsync";
const SUFFIX: &str = "log";

/// Keeps the background writer alive; drop it last (end of `main`) so buffered lines are written.
pub struct LogGuard {
    _file: WorkerGuard,
    pub dir: PathBuf,
}

/// How chatty stderr is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Console {
    /// Long-running commands (agent, demo, sync): the configured level.
    Full,
    /// One-shot commands whose output is their result: warnings and errors only.
    Quiet,
}

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("cannot create the log folder {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot open a log file in {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("bad log level {0:?}: {1}")]
    Level(String, String),
}

fn filter(cfg: &LoggingConfig) -> Result<EnvFilter, LoggingError> {
    match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => {
            EnvFilter::try_new(&v).map_err(|e| LoggingError::Level(v, e.to_string()))
        }
        _ => EnvFilter::try_new(&cfg.level)
            .map_err(|e| LoggingError::Level(cfg.level.clone(), e.to_string())),
    }
}

/// Sets up the global subscriber. `long_running` also prunes old files once an hour.
pub fn init(
    dir: &Path,
    cfg: &LoggingConfig,
    console: Console,
    long_running: bool,
) -> Result<LogGuard, LoggingError> {
    callsync_core::phone::set_masking(cfg.mask_numbers);
    callsync_fs::create_private_dir(dir).map_err(|source| LoggingError::Dir {
        path: dir.to_owned(),
        source,
    })?;
    prune(dir, cfg.keep_files as usize);
    let appender = Builder::new()
        .rotation(Rotation::DAILY)
        .filename_prefix(PREFIX)
        .filename_suffix(SUFFIX)
        .build(dir)
        .map_err(|e| LoggingError::File {
            path: dir.to_owned(),
            reason: e.to_string(),
        })?;
    let (writer, guard) = NonBlockingBuilder::default().lossy(false).finish(appender);
    let file_layer = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(Redacting(writer))
        .with_filter(filter(cfg)?);
    let console_layer = io::stderr().is_terminal().then(|| {
        let f = match console {
            Console::Full => filter(cfg).unwrap_or_else(|_| EnvFilter::new("info")),
            Console::Quiet => EnvFilter::new("warn"),
        };
        tracing_subscriber::fmt::layer()
            .with_writer(Redacting(io::stderr))
            .with_target(false)
            .without_time()
            .with_filter(f)
    });
    // A second init (tests, embedding) keeps the first subscriber; that is not an error.
    let _ = tracing_subscriber::registry()
        .with(file_layer)
        .with(console_layer)
        .try_init();
    if long_running {
        let dir = dir.to_owned();
        let keep = cfg.keep_files as usize;
        let _ = std::thread::Builder::new()
            .name("log-prune".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(3600));
                prune(&dir, keep);
            });
    }
    Ok(LogGuard {
        _file: guard,
        dir: dir.to_owned(),
    })
}

/// Deletes all but the newest `keep` log files (by the date in their names), never the current one.
pub fn prune(dir: &Path, keep: usize) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut files: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with(&format!("{PREFIX}.")) && n.ends_with(&format!(".{SUFFIX}"))
            })
        })
        .collect();
    // Names are callsync.YYYY-MM-DD.log: lexical order is date order.
    files.sort();
    let excess = files.len().saturating_sub(keep.max(1));
    let mut removed = 0;
    for p in files.into_iter().take(excess) {
        if std::fs::remove_file(&p).is_ok() {
            removed += 1;
        }
    }
    removed
}

static SECRET_PATTERNS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        (
            r#"(?i)((?:access|refresh|id)_token|client_secret|password|passwd|assertion|code_verifier|authorization_code|\bcode)("?\s*[:=]\s*"?)[^"&\s,;}]+"#,
            "${1}${2}[REDACTED]",
        ),
        (r"(?i)(bearer\s+)[A-Za-z0-9._~+/=!\-]+", "${1}[REDACTED]"),
        // Salesforce session ids / access tokens: 00D…!…
        (r"\b00D[A-Za-z0-9]{12,15}![A-Za-z0-9._\-]+", "[REDACTED]"),
    ]
    .into_iter()
    .filter_map(|(p, r)| Regex::new(p).ok().map(|re| (re, r)))
    .collect()
});

/// Replaces anything token-shaped with `[REDACTED]`.
pub(crate) fn redact(line: &str) -> std::borrow::Cow<'_, str> {
    let mut out = std::borrow::Cow::Borrowed(line);
    for (re, rep) in SECRET_PATTERNS.iter() {
        if re.is_match(&out) {
            out = std::borrow::Cow::Owned(re.replace_all(&out, *rep).into_owned());
        }
    }
    out
}

/// A `MakeWriter` whose writers scrub each formatted event before passing it on (the fmt layer
/// writes an event in one call).
struct Redacting<M>(M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;
    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(self.0.make_writer())
    }
}

struct RedactingWriter<W>(W);

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(s) => {
                self.0.write_all(redact(s).as_bytes())?;
                Ok(buf.len())
            }
            Err(_) => self.0.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_table() {
        let cases = [
            (
                r#"token response {"access_token":"00Dxx0000001gPL!AR8AQJXg5oj8jXSgxJfA0lBog.39AsX.LVpxezPwuX5VAIrrbbHMuol7GQxnMeYMN7cj8EoWr78nT2ULHN8f8D9UI4ob6.","refresh_token":"5Aep861TSESvWeug_xvFHRBTTbf_YrTWgEyjBJrfMXTZdgxvxuVGzgv"}"#,
                r#"token response {"access_token":"[REDACTED]","refresh_token":"[REDACTED]"}"#,
            ),
            (
                "GET /services/data Authorization: Bearer abc.def-123",
                "GET /services/data Authorization: Bearer [REDACTED]",
            ),
            (
                "grant_type=refresh_token&refresh_token=5Aep861&client_id=x",
                "grant_type=refresh_token&refresh_token=[REDACTED]&client_id=x",
            ),
            (
                "redirect ?code=aPrxabc123&state=s",
                "redirect ?code=[REDACTED]&state=s",
            ),
            ("session 00D5g000004XyZa!ARoAQ.abc", "session [REDACTED]"),
            ("proxy password = hunter2", "proxy password = [REDACTED]"),
            (
                "synced 2000 records from 003000000000001AAA",
                "synced 2000 records from 003000000000001AAA",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(redact(input), want);
        }
    }

    #[test]
    fn prune_keeps_the_newest() {
        let d = tempfile::tempdir().unwrap();
        for day in 1..=9 {
            std::fs::write(d.path().join(format!("callsync.2026-11-0{day}.log")), "x").unwrap();
        }
        std::fs::write(d.path().join("other.txt"), "keep me").unwrap();
        assert_eq!(prune(d.path(), 3), 6);
        let mut left: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "callsync.2026-11-07.log",
                "callsync.2026-11-08.log",
                "callsync.2026-11-09.log",
                "other.txt"
            ]
        );
    }
}
