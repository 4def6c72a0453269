//! `callsync support-bundle`: one zip an agent can send to IT or support, with what explains a
//! problem (status, configuration with provenance, logs, the integration error log, the queue,
//! the sign-in history, the settings) and nothing that must not leave the PC: no token, no
//! credential file, no cache or queue store, and every phone number masked but its last digits.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;

/// A number-like run: digits with the separators people type. Dates and times have fewer than
/// nine digits or are broken by `T`/`:`; Salesforce Ids end in letters (no word boundary).
static NUMBER: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?:\+|\b)\d[\d\-\s().]{5,}\d\b").ok());

/// Tokens redacted (as in the logs) and phone numbers masked.
pub(crate) fn scrub(text: &str) -> String {
    let text = crate::logging::redact(text);
    match NUMBER.as_ref() {
        Some(re) => re
            .replace_all(&text, |c: &regex::Captures| {
                let m = &c[0];
                if m.chars().filter(char::is_ascii_digit).count() >= 9 {
                    callsync_core::phone::mask(m)
                } else {
                    m.to_owned()
                }
            })
            .into_owned(),
        None => text.into_owned(),
    }
}

/// What went into a bundle.
#[derive(Debug, Default)]
pub struct Bundle {
    pub path: PathBuf,
    pub files: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the zip {path}: {source}")]
    Zip {
        path: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },
}

/// Newest log files first, at most this many (a few days).
const LOG_FILES: usize = 7;

/// Writes the bundle to `out`. `reports` are generated texts (name, content): status,
/// configuration, queue; they are scrubbed like everything else.
pub fn write(
    out: &Path,
    data: &callsync_store::paths::DataDir,
    reports: &[(&str, String)],
) -> Result<Bundle, BundleError> {
    let werr = |source| BundleError::Write {
        path: out.to_owned(),
        source,
    };
    let zerr = |source| BundleError::Zip {
        path: out.to_owned(),
        source,
    };
    // Built in memory (a few log files), then written private and whole by the helper every
    // store uses: never readable by others, never half a zip.
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o600);
    let mut bundle = Bundle {
        path: out.to_owned(),
        files: Vec::new(),
    };
    let mut add = |zip: &mut zip::ZipWriter<std::io::Cursor<Vec<u8>>>, name: &str, text: &str| {
        zip.start_file(name, opts).map_err(zerr)?;
        zip.write_all(scrub(text).as_bytes()).map_err(werr)?;
        bundle.files.push(name.to_owned());
        Ok::<(), BundleError>(())
    };
    let system = format!(
        "callsync {}\nos: {} {}\ndata folder: {}\n",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH,
        data.root().display()
    );
    add(&mut zip, "system.txt", &system)?;
    for (name, text) in reports {
        add(&mut zip, name, text)?;
    }
    for (name, path) in [
        ("errors.jsonl", data.error_log()),
        ("auth-history.jsonl", data.auth_history()),
        ("settings.json", data.settings()),
        ("settings-backup.json", data.settings_backup()),
    ] {
        if let Ok(text) = std::fs::read_to_string(&path) {
            add(&mut zip, name, &text)?;
        }
    }
    let mut logs: Vec<PathBuf> = std::fs::read_dir(data.logs())
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains(".log"))
        })
        .collect();
    logs.sort();
    for p in logs.iter().rev().take(LOG_FILES) {
        if let (Some(name), Ok(bytes)) = (p.file_name().and_then(|n| n.to_str()), std::fs::read(p))
        {
            add(
                &mut zip,
                &format!("logs/{name}"),
                &String::from_utf8_lossy(&bytes),
            )?;
        }
    }
    let bytes = zip.finish().map_err(zerr)?.into_inner();
    callsync_fs::write_private_atomic(out, &bytes).map_err(werr)?;
    Ok(bundle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_tokens_are_masked_dates_and_ids_are_not() {
        for (input, want) in [
            ("ring from 03-1234-5678 ok", "ring from **-****-5678 ok"),
            ("+81 90 1111 2222", "+** ** **** 2222"),
            (
                "2026-11-21T10:00:00+09:00 sync",
                "2026-11-21T10:00:00+09:00 sync",
            ),
            ("WhoId 003000000000001AAA", "WhoId 003000000000001AAA"),
            ("took 12345 ms", "took 12345 ms"),
            (
                "access_token=00Dxx0000001gPL!AR8AQJXg",
                "access_token=[REDACTED]",
            ),
        ] {
            assert_eq!(scrub(input), want, "{input}");
        }
    }
}
