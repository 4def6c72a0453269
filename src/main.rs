//! The `callsync` command.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use callsync::cache::{Cache, CacheError};
use callsync::config::{self, Layered, LoadOptions};
use callsync::import;
use callsync::logging::{self, Console};
use callsync::lookup::{self, LookupError, LookupResult, Match};
use callsync::paths::{self, DataDir};

/// `println!` that ends the process quietly when stdout is closed (`callsync … | head`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

/// Exit codes (also in the README).
mod exit {
    pub const OK: u8 = 0;
    /// `lookup`: no record matched.
    pub const NO_MATCH: u8 = 1;
    /// Bad command line or configuration.
    pub const USAGE: u8 = 2;
    /// Done, but some input was rejected (see the messages).
    pub const PARTIAL: u8 = 3;
    /// Failed: I/O, storage.
    pub const FAILURE: u8 = 4;
    /// The cache is in use by another callsync process (the running agent).
    pub const BUSY: u8 = 5;
}

#[derive(Parser, Debug)]
#[command(
    name = "callsync",
    version,
    about = "Joins your softphone to Salesforce: instant offline caller lookup and exactly-once call logging."
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct Global {
    /// The user's configuration file [default: per-user config dir]/config.toml
    #[arg(long, global = true, env = "CALLSYNC_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where the cache, queue and logs live [default: per-user data dir]
    #[arg(long, global = true, env = "CALLSYNC_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Override a configuration key, e.g. --set phone.default_region=US (repeatable)
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Identify a phone number from the local cache (works offline).
    Lookup {
        /// The number as dialled or shown, in any common format.
        number: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Inspect and manage the local record cache.
    #[command(subcommand)]
    Cache(CacheCmd),
    /// Show the effective configuration or an annotated example.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Run the simulated Salesforce org on loopback (for trying things with curl, and tests).
    Sim {
        #[arg(long, default_value_t = 8900)]
        port: u16,
        /// Contacts, Accounts, Leads and Users to generate.
        #[arg(long, default_value_t = 10_000)]
        records: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Records per query page (at most 2,000, as Salesforce).
        #[arg(long, default_value_t = 2_000)]
        page_size: usize,
        /// Every refresh returns a new refresh token and invalidates the old one.
        #[arg(long)]
        rotate_refresh_tokens: bool,
        /// The connected app's client id the org accepts.
        #[arg(long, default_value = "callsync-sim-client")]
        client_id: String,
    },
    /// Try callsync without Salesforce: builds a cache from a generated sample org in a
    /// temporary folder (or --data-dir) and identifies a few callers.
    Demo {
        /// How many sample records to generate.
        #[arg(long, default_value_t = 20_000)]
        records: usize,
    },
}

#[derive(Subcommand, Debug)]
enum CacheCmd {
    /// Records per object, index size, disk use.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Load records from JSON Lines shaped as the Salesforce REST API returns them.
    Import { file: PathBuf },
    /// Delete every cached record (the next sync reloads them).
    Clear,
}

#[derive(Subcommand, Debug)]
enum ConfigCmd {
    /// Every key's effective value and where it came from.
    Show {
        #[arg(long)]
        json: bool,
    },
    /// A complete, annotated configuration file.
    Example,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    if let Command::Demo { records } = cli.command {
        return match demo(&cli.global, records) {
            Ok(()) => ExitCode::from(exit::OK),
            Err(e) => {
                eprintln!("callsync: {e:#}");
                ExitCode::from(exit::FAILURE)
            }
        };
    }
    if let Command::Sim {
        port,
        records,
        seed,
        page_size,
        rotate_refresh_tokens,
        ref client_id,
    } = cli.command
    {
        let opts = callsync::sim::SimOptions {
            seed,
            records,
            page_size: page_size.clamp(1, 2_000),
            client_id: client_id.clone(),
            rotate_refresh_tokens,
            ..Default::default()
        };
        return match run_sim(opts, port) {
            Ok(()) => ExitCode::from(exit::OK),
            Err(e) => {
                eprintln!("callsync: {e:#}");
                ExitCode::from(exit::FAILURE)
            }
        };
    }
    if let Command::Config(ConfigCmd::Example) = cli.command {
        print!("{}", config::EXAMPLE);
        return ExitCode::from(exit::OK);
    }
    let layered = match load_config(&cli.global) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("callsync: {e:#}");
            return ExitCode::from(exit::USAGE);
        }
    };
    for w in &layered.warnings {
        eprintln!("callsync: warning: {w}");
    }
    let Some(data) = cli
        .global
        .data_dir
        .clone()
        .or_else(DataDir::default_location)
        .map(DataDir::new)
    else {
        eprintln!("callsync: no home directory found; pass --data-dir");
        return ExitCode::from(exit::USAGE);
    };
    let _log = match logging::init(&data.logs(), &layered.config.logging, Console::Quiet, false) {
        Ok(g) => Some(g),
        Err(e) => {
            eprintln!("callsync: warning: logging to file is off: {e}");
            None
        }
    };
    match run(cli.command, &layered, &data) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("callsync: {e:#}");
            let busy = e
                .chain()
                .any(|c| matches!(c.downcast_ref::<CacheError>(), Some(CacheError::Locked(_))));
            ExitCode::from(if busy { exit::BUSY } else { exit::FAILURE })
        }
    }
}

fn load_config(g: &Global) -> anyhow::Result<Layered> {
    let cli = g
        .set
        .iter()
        .map(|s| config::parse_set(s))
        .collect::<Result<Vec<_>, _>>()?;
    let opts = LoadOptions {
        managed_file: config::default_managed_file(),
        user_file_required: g.config.is_some(),
        user_file: g.config.clone().or_else(paths::default_user_config),
        env: config::env_overrides(),
        cli,
    };
    Ok(config::load(&opts)?)
}

fn open_cache(layered: &Layered, data: &DataDir) -> anyhow::Result<Cache> {
    let (cache, report) = Cache::open(&data.cache(), &layered.config.cache_options())?;
    if let Some((reason, aside)) = &report.rebuilt {
        eprintln!(
            "callsync: warning: the cache was damaged ({reason}) and has been rebuilt empty; the old files are in {}",
            aside.display()
        );
    }
    if report.cleared {
        eprintln!("callsync: warning: the cache was from another version and has been cleared");
    }
    Ok(cache)
}

fn run(command: Command, layered: &Layered, data: &DataDir) -> anyhow::Result<u8> {
    let cfg = &layered.config;
    match command {
        Command::Lookup { number, json } => {
            let normalizer = cfg.normalizer()?;
            let cache = open_cache(layered, data)?;
            let result = match lookup::lookup(&cache, &normalizer, &cfg.lookup_rules(), &number) {
                Ok(r) => r,
                Err(LookupError::Number(e)) => {
                    eprintln!("callsync: {e}");
                    return Ok(exit::USAGE);
                }
                Err(e) => return Err(e.into()),
            };
            tracing::info!(
                number = %callsync::phone::Masked(&number),
                found = result.best.is_some(),
                matches = result.others.len() + usize::from(result.best.is_some()),
                "lookup"
            );
            if json {
                outln!("{}", serde_json::to_string_pretty(&result)?);
            } else {
                let empty = cache.stats()?.records.values().all(|n| *n == 0);
                print_lookup(&result, empty);
            }
            Ok(if result.best.is_some() {
                exit::OK
            } else {
                exit::NO_MATCH
            })
        }
        Command::Cache(CacheCmd::Stats { json }) => {
            let cache = open_cache(layered, data)?;
            let stats = cache.stats()?;
            if json {
                let mut v = serde_json::to_value(&stats)?;
                v["path"] = serde_json::Value::String(data.cache().display().to_string());
                outln!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                outln!("cache: {}", data.cache().display());
                for (kind, n) in &stats.records {
                    outln!("  {kind:<8} {n:>10}");
                }
                outln!("  numbers  {:>10} index entries", stats.index_entries);
                outln!(
                    "  disk     {:>10.1} MiB",
                    stats.size_on_disk as f64 / 1048576.0
                );
                if stats.needs_full_sync {
                    outln!("  a full sync is needed (the cache was repaired)");
                }
            }
            Ok(exit::OK)
        }
        Command::Cache(CacheCmd::Import { file }) => {
            let normalizer = cfg.normalizer()?;
            let cache = open_cache(layered, data)?;
            let total = std::fs::metadata(&file)
                .with_context(|| format!("cannot read {}", file.display()))?
                .len();
            let bar = if std::io::stderr().is_terminal() {
                ProgressBar::new(total)
            } else {
                ProgressBar::hidden()
            };
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} importing [{bar:30}] {bytes}/{total_bytes} ({eta} left)",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            let report =
                import::import_jsonl(&file, &cache, &normalizer, &cfg.lookup_rules(), |b| {
                    bar.set_position(b)
                })?;
            bar.finish_and_clear();
            cache.flush()?;
            for r in &report.rejected {
                eprintln!("{}:{}: {}", file.display(), r.line, r.reason);
            }
            if report.rejected_total > report.rejected.len() {
                eprintln!(
                    "… and {} more rejected lines",
                    report.rejected_total - report.rejected.len()
                );
            }
            outln!(
                "imported {} records from {} lines of {}; {} line(s) rejected; {} phone value(s) were no number and are not matched",
                report.imported,
                report.lines,
                file.display(),
                report.rejected_total,
                report.unusable_numbers
            );
            tracing::info!(
                imported = report.imported,
                rejected = report.rejected_total,
                file = %file.display(),
                "cache import"
            );
            Ok(if report.rejected_total > 0 {
                exit::PARTIAL
            } else {
                exit::OK
            })
        }
        Command::Cache(CacheCmd::Clear) => {
            let cache = open_cache(layered, data)?;
            let before: u64 = cache.stats()?.records.values().sum();
            cache.clear()?;
            outln!(
                "cleared {before} cached records from {}",
                data.cache().display()
            );
            Ok(exit::OK)
        }
        Command::Config(ConfigCmd::Show { json }) => {
            show_config(layered, data, json)?;
            Ok(exit::OK)
        }
        Command::Config(ConfigCmd::Example) | Command::Demo { .. } | Command::Sim { .. } => {
            unreachable!("handled before loading the configuration")
        }
    }
}

fn describe(m: &Match) -> String {
    let when = chrono::DateTime::from_timestamp_millis(m.last_modified)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default();
    format!(
        "{:<15} {}   [{} {}, {}, modified {}]",
        m.kind_label(),
        m.display.one_line(),
        m.kind,
        m.id,
        m.field,
        when
    )
}

fn print_lookup(r: &LookupResult, cache_empty: bool) {
    let ext = r
        .extension
        .as_deref()
        .map(|e| format!(" ext. {e}"))
        .unwrap_or_default();
    outln!("{} → {}{ext}", r.input, r.key.display());
    match &r.best {
        Some(m) => {
            outln!("  {}", describe(m));
            if !r.others.is_empty() {
                outln!("  also on {} other record(s):", r.others.len());
                for o in &r.others {
                    outln!("    {}", describe(o));
                }
            }
        }
        None if cache_empty => {
            outln!("  no match: the cache is empty (run `callsync cache import FILE` or sync)")
        }
        None => outln!("  no match: unknown caller"),
    }
}

fn show_config(layered: &Layered, data: &DataDir, json: bool) -> anyhow::Result<()> {
    let entries = layered.entries();
    if json {
        let items: Vec<serde_json::Value> = entries
            .iter()
            .map(|(k, v)| {
                serde_json::json!({
                    "key": k,
                    "value": v,
                    "source": layered.origins.get(k),
                    "locked": layered.is_locked(k),
                })
            })
            .collect();
        let out = serde_json::json!({
            "managed_file": layered.managed_file,
            "user_file": layered.user_file,
            "data_dir": data.root(),
            "warnings": layered.warnings,
            "keys": items,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let show_path = |p: &Option<PathBuf>, fallback: Option<PathBuf>| match (p, fallback) {
        (Some(p), _) => p.display().to_string(),
        (None, Some(f)) => format!("{} (not present)", f.display()),
        (None, None) => "(none)".into(),
    };
    outln!(
        "# managed file: {}",
        show_path(&layered.managed_file, config::default_managed_file())
    );
    outln!(
        "# user file:    {}",
        show_path(&layered.user_file, paths::default_user_config())
    );
    outln!("# data dir:     {}", data.root().display());
    for w in &layered.warnings {
        outln!("# warning: {w}");
    }
    let width = entries
        .iter()
        .map(|(k, v)| k.len() + v.to_string().len())
        .max()
        .unwrap_or(0);
    for (k, v) in &entries {
        let source = layered
            .origins
            .get(k)
            .map(|s| s.to_string())
            .unwrap_or_default();
        let lock = if layered.is_locked(k) {
            " [locked]"
        } else {
            ""
        };
        let pad = width.saturating_sub(k.len() + v.to_string().len());
        outln!("{k} = {v}{:pad$}  # {source}{lock}", "");
    }
    Ok(())
}

/// The quick-start demo: a sample org, an import with progress, lookups with timings.
fn demo(g: &Global, records: usize) -> anyhow::Result<()> {
    use callsync::synth::{self, SynthSpec};
    use std::io::Write as _;
    use std::time::Instant;

    let temp = tempfile::tempdir()?;
    let root = g.data_dir.clone().unwrap_or_else(|| temp.path().to_owned());
    let data = DataDir::new(&root);
    let layered = config::load(&LoadOptions::default())?;
    let cfg = &layered.config;
    let _log = logging::init(&data.logs(), &cfg.logging, Console::Quiet, false)?;
    outln!("callsync demo: a generated sample org of {records} records (JP/US numbers typed as people type them)");
    outln!("data folder: {}", root.display());

    let file = root.join("sample-org.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file)?);
    let mut samples = Vec::new();
    let mut rng = fastrand::Rng::with_seed(7);
    for (i, r) in synth::generate(&SynthSpec::new(42, records)).enumerate() {
        writeln!(out, "{}", r.json)?;
        if i % (records / 5).max(1) == 3 {
            samples.push(synth::typed_form(&mut rng, &format!("+{}", r.numbers[0])));
        }
    }
    out.flush()?;
    drop(out);
    samples.push("0120-000-000".into());

    let normalizer = cfg.normalizer()?;
    callsync::phone::Normalizer::warm_up();
    let cache = open_cache(&layered, &data)?;
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(std::fs::metadata(&file)?.len())
    } else {
        ProgressBar::hidden()
    };
    let t = Instant::now();
    let report = import::import_jsonl(&file, &cache, &normalizer, &cfg.lookup_rules(), |b| {
        bar.set_position(b)
    })?;
    bar.finish_and_clear();
    outln!(
        "\nimported {} records in {:.1} s ({} index entries)\n",
        report.imported,
        t.elapsed().as_secs_f64(),
        cache.stats()?.index_entries
    );
    for number in samples {
        let t = Instant::now();
        let r = lookup::lookup(&cache, &normalizer, &cfg.lookup_rules(), &number)?;
        let took = t.elapsed();
        print_lookup(&r, false);
        outln!("  ({:.0} µs)\n", took.as_secs_f64() * 1e6);
    }
    outln!(
        "Try your own: callsync --data-dir {} lookup \"03-1234-5678\"",
        root.display()
    );
    if g.data_dir.is_none() {
        outln!("(this temporary folder is removed now; pass --data-dir DIR to keep it)");
    }
    Ok(())
}

fn run_sim(opts: callsync::sim::SimOptions, port: u16) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let records = opts.records;
        let sim = callsync::sim::Sim::start(opts, port)
            .await
            .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
        let url = sim.url();
        outln!("simulated Salesforce org on {url} ({records} records); Ctrl-C stops it");
        outln!("  token:   curl -s -X POST {url}/__sim/token");
        outln!("  query:   curl -s -H \"Authorization: Bearer $TOKEN\" '{url}/services/data/v62.0/query?q=SELECT+Id,Name,Phone+FROM+Contact+LIMIT+5'");
        outln!("  state:   curl -s {url}/__sim/state");
        outln!("  faults:  curl -s -X POST {url}/__sim/faults -H 'Content-Type: application/json' -d '[{{\"kind\":\"service_unavailable\",\"times\":3}}]'");
        tokio::signal::ctrl_c().await?;
        sim.stop().await;
        Ok(())
    })
}
