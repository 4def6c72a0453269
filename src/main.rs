//! The `callsync` command.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use callsync::app::App;
use callsync::cache::{Cache, CacheError};
use callsync::config::{self, Layered, LoadOptions};
use callsync::control::Request;
use callsync::import;
use callsync::logging::{self, Console};
use callsync::lookup::{self, LookupError, LookupResult, Match};
use callsync::paths::{self, DataDir};
use callsync::salesforce::SfError;

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
    /// Not signed in, or the sign-in expired or was refused: run `callsync connect`.
    pub const SIGN_IN: u8 = 6;
    /// Salesforce could not be reached or is failing for now: try again later.
    pub const UNAVAILABLE: u8 = 7;
}

#[path = "cli/settings.rs"]
mod settings_cli;

#[derive(Subcommand, Debug)]
enum AgentCmd {
    /// Tell the user the agent is running (a desktop notification).
    Show,
    /// Stop sending Tasks (they stay queued).
    Pause,
    /// Send again.
    Resume,
    /// Sync with Salesforce now (the tray's "Sync now").
    Sync,
    /// Stop the agent gracefully.
    Quit,
    /// Stop gracefully and start again (applies changed settings; `settings set` does it).
    Restart,
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
    /// Run the agent (what autostart starts): the tray, call-log following, a Task for every
    /// call, cache sync, screen pops. One per user; a second start shows the running one.
    /// Ctrl-C, SIGTERM, logout or the tray's Quit stop it without losing anything.
    Run {
        /// No tray (servers, CI, desktops without a tray host).
        #[arg(long)]
        headless: bool,
    },
    /// Ask the running agent: show itself, pause or resume sending, quit.
    #[command(subcommand)]
    Agent(AgentCmd),
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
    /// Sign in to Salesforce (browser with PKCE, or JWT bearer when configured).
    Connect {
        /// Print the sign-in URL instead of opening a browser.
        #[arg(long)]
        no_browser: bool,
        /// Send the Tasks queued for another org to the org signed in to now.
        #[arg(long)]
        send_queue_here: bool,
    },
    /// Sign out: revoke the token at Salesforce and forget it.
    Disconnect,
    /// Bring the cache up to date with Salesforce now.
    Sync {
        /// Reload everything instead of only what changed.
        #[arg(long)]
        full: bool,
        /// Keep syncing on the adaptive schedule until Ctrl-C (the agent does this itself).
        #[arg(long, conflicts_with = "full")]
        watch: bool,
    },
    /// Signed-in org and user, last sync, records per object, pending work, API usage.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Authentication history.
    #[command(subcommand)]
    Auth(AuthCmd),
    /// Integration settings: activity history, meeting history, assignee groups and contact
    /// retrieval; export/import; restore the backup taken at `disconnect`.
    #[command(subcommand)]
    Settings(settings_cli::SettingsCmd),
    /// Softphone call logs: follow them or read one.
    #[command(subcommand)]
    Calls(CallsCmd),
    /// Check the network path, the sign-in and the API, and say how to fix what fails.
    Doctor {
        #[arg(long)]
        json: bool,
    },
    /// Proxy credentials.
    #[command(subcommand)]
    Proxy(ProxyCmd),
    /// Tasks waiting for Salesforce (pending and parked).
    Queue {
        #[command(subcommand)]
        cmd: Option<QueueCmd>,
        #[arg(long)]
        json: bool,
    },
    /// The integration error log: inputs callsync could not use, and why.
    Errors {
        #[arg(long)]
        json: bool,
    },
    /// Zip logs, status, configuration, queue and settings for IT or support, with tokens removed
    /// and phone numbers masked.
    SupportBundle {
        /// Where to write it [default: ./callsync-support-DATE.zip]
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Write the manual pages (callsync.1 and one per subcommand) into DIR (packaging).
    #[command(hide = true)]
    Man { dir: PathBuf },
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
        /// Serve HTTPS with this certificate chain (PEM, for host name `localhost`)…
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// …and this private key (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Try callsync without Salesforce: a simulated org on loopback, sign-in, sync, lookups
    /// (in a temporary folder, or --data-dir).
    Demo {
        /// How many records the simulated org holds.
        #[arg(long, default_value_t = 20_000)]
        records: usize,
        /// End after the walkthrough instead of running the agent (tray, screen pops).
        #[arg(long)]
        no_agent: bool,
        /// Run the agent without the tray.
        #[arg(long)]
        headless: bool,
        /// Stop the agent after this many seconds [default: when Ctrl-C or Quit ends it; 30 s
        /// when not run from a terminal].
        #[arg(long)]
        agent_secs: Option<u64>,
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
enum CallsCmd {
    /// Follow the call logs and print each call event as it happens (Ctrl-C stops).
    Tail {
        /// Follow this log instead of the configured ones: KIND=PATH (native, linphone, twinkle,
        /// csv with the default column names).
        #[arg(long = "source", value_name = "KIND=PATH")]
        sources: Vec<String>,
        /// Print JSON Lines.
        #[arg(long)]
        json: bool,
        /// Start again from the beginning of every log.
        #[arg(long)]
        from_start: bool,
    },
    /// Read one call log file and print its events.
    Import {
        file: PathBuf,
        #[arg(long, default_value = "native", value_parser = callsync::calllog::SOURCE_KINDS)]
        format: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum ProxyCmd {
    /// Store the proxy password for proxy.user in the OS credential store (read without echo,
    /// or from standard input when it is not a terminal).
    Password,
}

#[derive(Subcommand, Debug)]
enum QueueCmd {
    /// Send parked Tasks again after the cause was fixed.
    Retry {
        /// One item (its number in `callsync queue`).
        id: Option<u64>,
        /// Every parked item.
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
}

#[derive(Subcommand, Debug)]
enum AuthCmd {
    /// Every sign-in: time, org, user, instance, method.
    History {
        #[arg(long)]
        json: bool,
    },
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
    /// Set keys in a configuration file, keeping its comments (installers write the
    /// machine-wide file with it: `config set-file FILE salesforce.login_url=…`). Empty values
    /// are skipped, so unset installer properties change nothing.
    #[command(hide = true)]
    SetFile {
        file: PathBuf,
        #[arg(value_name = "KEY=VALUE")]
        values: Vec<String>,
    },
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
    if let Command::Demo {
        records,
        no_agent,
        headless,
        agent_secs,
    } = cli.command
    {
        let secs = agent_secs.or((!std::io::stdin().is_terminal()).then_some(30));
        return match demo(
            &cli.global,
            records,
            (!no_agent).then_some((headless, secs)),
        ) {
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
        ref tls_cert,
        ref tls_key,
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
        let tls = match (tls_cert, tls_key) {
            (Some(c), Some(k)) => match (std::fs::read(c), std::fs::read(k)) {
                (Ok(c), Ok(k)) => Some((c, k)),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("callsync: cannot read the TLS certificate or key: {e}");
                    return ExitCode::from(exit::USAGE);
                }
            },
            _ => None,
        };
        return match run_sim(opts, port, tls) {
            Ok(()) => ExitCode::from(exit::OK),
            Err(e) => {
                eprintln!("callsync: {e:#}");
                ExitCode::from(exit::FAILURE)
            }
        };
    }
    if let Command::Man { dir } = &cli.command {
        use clap::CommandFactory;
        let r = std::fs::create_dir_all(dir)
            .and_then(|()| clap_mangen::generate_to(Cli::command(), dir));
        return match r {
            Ok(()) => ExitCode::from(exit::OK),
            Err(e) => {
                eprintln!(
                    "callsync: cannot write the manual pages to {}: {e}",
                    dir.display()
                );
                ExitCode::from(exit::FAILURE)
            }
        };
    }
    if let Command::Config(ConfigCmd::SetFile { file, values }) = &cli.command {
        return match config::set_in_file(file, values) {
            Ok(n) => {
                outln!("{n} value(s) written to {}", file.display());
                ExitCode::from(exit::OK)
            }
            Err(e) => {
                eprintln!("callsync: {e}");
                ExitCode::from(exit::USAGE)
            }
        };
    }
    if let Command::Config(ConfigCmd::Example) = cli.command {
        print!("{}", config::EXAMPLE);
        return ExitCode::from(exit::OK);
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
    let (layered, opts) = match load_config(&cli.global, &data) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("callsync: {e:#}");
            return ExitCode::from(exit::USAGE);
        }
    };
    for w in &layered.warnings {
        eprintln!("callsync: warning: {w}");
    }
    let _log = match logging::init(&data.logs(), &layered.config.logging, Console::Quiet, false) {
        Ok(g) => Some(g),
        Err(e) => {
            eprintln!("callsync: warning: logging to file is off: {e}");
            None
        }
    };
    let settings = cli
        .global
        .config
        .clone()
        .or_else(paths::default_user_config);
    match run(cli.command, &layered, &data, settings, &opts) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("callsync: {e:#}");
            let busy = e.chain().any(|c| {
                matches!(c.downcast_ref::<CacheError>(), Some(CacheError::Locked(_)))
                    || matches!(
                        c.downcast_ref::<callsync::outbox::OutboxError>(),
                        Some(callsync::outbox::OutboxError::Locked(_))
                    )
            });
            ExitCode::from(if busy { exit::BUSY } else { exit::FAILURE })
        }
    }
}

fn load_config(g: &Global, data: &DataDir) -> anyhow::Result<(Layered, LoadOptions)> {
    let cli = g
        .set
        .iter()
        .map(|s| config::parse_set(s))
        .collect::<Result<Vec<_>, _>>()?;
    let (policy, problems) = callsync::policy::to_config(&callsync::policy::read());
    for (key, why) in problems {
        eprintln!(
            "callsync: warning: policy {key} in {} ignored: {why}",
            callsync::policy::SOURCE
        );
    }
    let opts = LoadOptions {
        managed_file: config::default_managed_file(),
        policy,
        user_file_required: g.config.is_some(),
        user_file: g.config.clone().or_else(paths::default_user_config),
        settings_file: Some(data.settings()),
        settings_values: None,
        env: config::env_overrides(),
        cli,
    };
    Ok((config::load(&opts)?, opts))
}

/// The cache, telling the user when it had to be rebuilt or cleared.
fn open_cache(app: &App) -> anyhow::Result<Cache> {
    Ok(opened(app.open_cache()?))
}

/// An opened cache, after telling the user what opening it had to repair.
fn opened((cache, report): (Cache, callsync::cache::OpenReport)) -> Cache {
    if let Some((reason, aside)) = &report.rebuilt {
        eprintln!(
            "callsync: warning: the cache was damaged ({reason}) and has been rebuilt empty; the old files are in {}",
            aside.display()
        );
    }
    if report.cleared {
        eprintln!("callsync: warning: the cache was from another version and has been cleared");
    }
    cache
}

fn run(
    command: Command,
    layered: &Layered,
    data: &DataDir,
    settings: Option<PathBuf>,
    opts: &LoadOptions,
) -> anyhow::Result<u8> {
    let cfg = &layered.config;
    let mut app = App::new(cfg.clone(), data.clone());
    app.settings_file = settings;
    match command {
        Command::Lookup { number, json } => {
            if !cfg.sync.contact_retrieval {
                eprintln!("callsync: contact retrieval is off (sync.contact_retrieval = false): callers are not identified");
                return Ok(exit::NO_MATCH);
            }
            let normalizer = cfg.normalizer()?;
            if let Err(e) = normalizer.key(&number) {
                eprintln!("callsync: {e}");
                return Ok(exit::USAGE);
            }
            // The running agent holds the cache: it answers.
            let (result, stats) = match app.open_cache() {
                Err(e @ CacheError::Locked(_)) => {
                    let r: LookupResult = from_agent(
                        &app,
                        Request::Lookup {
                            number: number.clone(),
                        },
                        e,
                    )?;
                    let busy = CacheError::Locked(data.cache());
                    (r, from_agent(&app, Request::CacheStats, busy)?)
                }
                Err(e) => return Err(e.into()),
                Ok(c) => {
                    let cache = opened(c);
                    match lookup::lookup(&cache, &normalizer, &cfg.lookup_rules(), &number) {
                        Ok(r) => (r, cache.stats()?),
                        Err(LookupError::Number(e)) => {
                            eprintln!("callsync: {e}");
                            return Ok(exit::USAGE);
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
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
                let empty = stats.records.values().all(|n| *n == 0);
                print_lookup(&result, empty);
            }
            Ok(if result.best.is_some() {
                exit::OK
            } else {
                exit::NO_MATCH
            })
        }
        Command::Cache(CacheCmd::Stats { json }) => {
            let stats: callsync::cache::CacheStats = match app.open_cache() {
                Err(e @ CacheError::Locked(_)) => from_agent(&app, Request::CacheStats, e)?,
                Err(e) => return Err(e.into()),
                Ok(c) => opened(c).stats()?,
            };
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
            let cache = open_cache(&app)?;
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
            let cache = open_cache(&app)?;
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
        Command::Connect {
            no_browser,
            send_queue_here,
        } => runtime()?.block_on(connect(&app, no_browser, send_queue_here)),
        Command::Run { headless } => run_agent(app, headless),
        Command::Agent(cmd) => agent_cmd(&app, cmd),
        Command::Disconnect => runtime()?.block_on(disconnect(&app, layered)),
        Command::Settings(cmd) => settings_cli::run(cmd, &app, layered, data, opts),
        Command::SupportBundle { output } => support_bundle(&app, layered, output),
        Command::Sync {
            full: _,
            watch: true,
        } => runtime()?.block_on(sync_watch(&app)),
        Command::Sync { full, watch: false } => runtime()?.block_on(sync_now(&app, full)),
        Command::Status { json } => status(&app, json),
        Command::Calls(CallsCmd::Tail {
            sources,
            json,
            from_start,
        }) => calls_tail(&app, &sources, json, from_start),
        Command::Calls(CallsCmd::Import { file, format, json }) => {
            calls_import(data, &file, &format, json)
        }
        Command::Doctor { json } => {
            let checks = runtime()?.block_on(callsync::doctor::run(&app));
            let ok = checks.iter().all(|c| c.ok);
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"ok": ok, "checks": checks}))?
                );
            } else {
                for c in &checks {
                    outln!(
                        "{} {:<20} {}",
                        if c.ok { "ok  " } else { "FAIL" },
                        c.name,
                        c.detail
                    );
                    if let Some(f) = &c.fix {
                        outln!("     {:<20} fix: {f}", "");
                    }
                }
            }
            Ok(if ok { exit::OK } else { exit::FAILURE })
        }
        Command::Proxy(ProxyCmd::Password) => {
            let p = &layered.config.proxy;
            if p.user.is_empty() || p.url.is_empty() {
                eprintln!(
                    "callsync: set proxy.url and proxy.user first (see `callsync config example`)"
                );
                return Ok(exit::USAGE);
            }
            let pw = if std::io::stdin().is_terminal() {
                rpassword::prompt_password(format!("Password for {} at {}: ", p.user, p.url))?
            } else {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                line.trim_end_matches(['\r', '\n']).to_owned()
            };
            let where_ = callsync::auth::secret_set(
                data.root(),
                &callsync::auth::proxy_secret_name(&p.user, &p.url),
                &pw,
            )?;
            outln!("proxy password stored in {where_}");
            Ok(exit::OK)
        }
        Command::Queue { cmd, json } => {
            // The running agent holds the queue: it answers.
            let outbox = match callsync::outbox::Outbox::open(&data.outbox()) {
                Ok(o) => Some(o),
                Err(callsync::outbox::OutboxError::Locked(_)) => None,
                Err(e) => return Err(e.into()),
            };
            let busy = || callsync::outbox::OutboxError::Locked(data.outbox());
            match cmd {
                Some(QueueCmd::Retry { id, all }) => {
                    if id.is_none() && !all {
                        eprintln!("callsync: name an item (callsync queue retry ID) or pass --all");
                        return Ok(exit::USAGE);
                    }
                    let n = match &outbox {
                        Some(o) => o.retry(id)?,
                        None => from_agent::<serde_json::Value>(
                            &app,
                            Request::QueueRetry { id },
                            busy(),
                        )?["retried"]
                            .as_u64()
                            .unwrap_or(0) as usize,
                    };
                    outln!("{n} parked item(s) will be sent again");
                }
                None => {
                    let items: Vec<callsync::outbox::Item> = match &outbox {
                        Some(o) => o.items()?,
                        None => from_agent(&app, Request::Queue, busy())?,
                    };
                    if json {
                        outln!("{}", serde_json::to_string_pretty(&items)?);
                    } else if items.is_empty() {
                        outln!("nothing waiting: every call is in Salesforce");
                    } else {
                        for i in &items {
                            let state = match &i.state {
                                callsync::outbox::State::Pending => format!(
                                    "pending, {} attempt(s){}",
                                    i.attempts,
                                    i.last_error
                                        .as_deref()
                                        .map(|e| format!(", last: {e}"))
                                        .unwrap_or_default()
                                ),
                                callsync::outbox::State::Parked {
                                    explanation, fix, ..
                                } => format!("PARKED: {explanation}\n      fix: {fix}"),
                            };
                            outln!(
                                "{:>6}  {:?} call {}  queued {}  {state}",
                                i.seq,
                                i.op,
                                i.call_id,
                                i.queued_at
                            );
                        }
                        let parked = items
                            .iter()
                            .filter(|i| matches!(i.state, callsync::outbox::State::Parked { .. }))
                            .count();
                        outln!("{} pending, {parked} parked", items.len() - parked);
                    }
                }
            }
            Ok(exit::OK)
        }
        Command::Errors { json } => {
            let log = callsync::errorlog::ErrorLog::new(data.error_log());
            let entries = log.read()?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&entries)?);
            } else if entries.is_empty() {
                outln!("no integration errors");
            } else {
                for e in &entries {
                    let place = match (&e.file, e.line) {
                        (Some(f), Some(l)) => format!("{f}:{l}"),
                        (Some(f), None) => f.clone(),
                        _ => e.source.clone(),
                    };
                    outln!("{}  [{}] {place}: {}", e.at, e.area, e.reason);
                }
            }
            Ok(exit::OK)
        }
        Command::Auth(AuthCmd::History { json }) => {
            let h = callsync::auth::read_history(&app.history_file())?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&h)?);
            } else if h.is_empty() {
                outln!("no sign-ins yet");
            } else {
                for e in h {
                    outln!(
                        "{}  org {}  user {} ({})  {}  [{}]",
                        e.at,
                        e.org_id,
                        e.user_id,
                        e.username,
                        e.instance_url,
                        e.method
                    );
                }
            }
            Ok(exit::OK)
        }
        // Handled in `main` before the configuration is loaded.
        Command::Config(ConfigCmd::Example | ConfigCmd::SetFile { .. })
        | Command::Demo { .. }
        | Command::Sim { .. }
        | Command::Man { .. } => Ok(exit::OK),
    }
}

/// What the running agent answers to a query request (it holds the stores), decoded. With no
/// agent to ask, the store is held by another command: `busy` says so (exit code 5).
fn from_agent<T: serde::de::DeserializeOwned>(
    app: &App,
    req: Request,
    busy: impl Into<anyhow::Error>,
) -> anyhow::Result<T> {
    let r = match callsync::control::call(&app.data, &req, std::time::Duration::from_secs(10)) {
        Ok(r) => r,
        Err(callsync::control::ControlError::NotRunning) => return Err(busy.into()),
        Err(e) => anyhow::bail!("the running agent holds the store and could not be asked: {e}"),
    };
    if !r.ok {
        anyhow::bail!("{}", r.error.unwrap_or_else(|| "the agent refused".into()));
    }
    Ok(serde_json::from_value(r.data.unwrap_or_default())?)
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

/// `config show --json`: every key, its value, source and lock.
fn config_json(layered: &Layered, data: &DataDir) -> serde_json::Value {
    let items: Vec<serde_json::Value> = layered
        .entries()
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
    serde_json::json!({
        "managed_file": layered.managed_file,
        "user_file": layered.user_file,
        "data_dir": data.root(),
        "warnings": layered.warnings,
        "keys": items,
    })
}

/// `callsync support-bundle`.
fn support_bundle(app: &App, layered: &Layered, output: Option<PathBuf>) -> anyhow::Result<u8> {
    use callsync::control::{self, Request};
    let out = output.unwrap_or_else(|| {
        PathBuf::from(format!(
            "callsync-support-{}.zip",
            chrono::Local::now().format("%Y%m%d-%H%M%S")
        ))
    });
    let mut reports = vec![(
        "config.json",
        serde_json::to_string_pretty(&config_json(layered, &app.data))?,
    )];
    // The running agent holds the stores: its state, else the stores read directly.
    match control::call(
        &app.data,
        &Request::Status,
        std::time::Duration::from_secs(3),
    ) {
        Ok(r) => reports.push((
            "status.json",
            serde_json::to_string_pretty(&serde_json::json!({"running": true, "agent": r.state}))?,
        )),
        Err(_) => {
            let outbox = callsync::outbox::Outbox::open(&app.data.outbox()).ok();
            if let Ok((cache, _)) = app.open_cache() {
                let st = app.status_with(&cache, outbox.as_ref())?;
                reports.push(("status.json", serde_json::to_string_pretty(&st)?));
            }
            if let Some(outbox) = &outbox {
                reports.push((
                    "queue.json",
                    serde_json::to_string_pretty(&outbox.items()?)?,
                ));
            }
        }
    }
    let b = callsync::support::write(&out, &app.data, &reports)?;
    outln!(
        "{} ({} files; tokens removed, phone numbers masked): {}",
        b.path.display(),
        b.files.len(),
        b.files.join(", ")
    );
    Ok(exit::OK)
}

fn show_config(layered: &Layered, data: &DataDir, json: bool) -> anyhow::Result<()> {
    let entries = layered.entries();
    if json {
        let out = config_json(layered, data);
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

/// The quick-start demo: a simulated org on loopback, a real PKCE sign-in (the demo plays the
/// browser), a full sync with progress, lookups, a change in Salesforce picked up by one
/// incremental sync.
/// The walkthrough, then (`agent`: `Some((headless, seconds))`) the agent itself against the
/// same simulated org, with a call ringing every 20 s.
fn demo(g: &Global, records: usize, agent: Option<(bool, Option<u64>)>) -> anyhow::Result<()> {
    use callsync::sim::{self, Sim, SimOptions};
    use std::time::Instant;

    let temp = tempfile::tempdir()?;
    let root = g.data_dir.clone().unwrap_or_else(|| temp.path().to_owned());
    let data = DataDir::new(&root);
    let rt = runtime()?;
    let (sim, app, phones, _log) = rt.block_on(async {
        let sim = Sim::start(SimOptions { records, ..Default::default() }, 0).await?;
        let mut config = config::Config::default();
        config.salesforce.login_url = sim.url();
        config.salesforce.client_id = sim.org().opts.client_id.clone();
        config.salesforce.redirect_port = free_port()?;
        config.auth.store = "file".into();
        let log_guard = logging::init(&data.logs(), &config.logging, Console::Quiet, false)?;
        let app = App::new(config, data.clone());
        outln!("callsync demo");
        outln!("  simulated Salesforce org: {} ({records} generated records: Contacts, Accounts, person accounts, Leads, Users)", sim.url());
        outln!("  data folder: {}\n", root.display());

        outln!("1. Sign in (OAuth web-server flow with PKCE; the demo plays your browser)");
        let cfg = app.client_config();
        let token = callsync::auth::sign_in_pkce(
            &cfg,
            app.config.salesforce.redirect_port,
            |url| {
                tokio::spawn(sim::play_browser(url.to_owned()));
            },
            std::time::Duration::from_secs(30),
        )
        .await?;
        let stored = app.complete_sign_in(&token, "pkce").await?;
        outln!("   connected to org {} as {} ({})\n", stored.org_id, stored.username, stored.user_id);

        outln!("2. Full sync into the local cache");
        let client = app.client()?;
        let (cache, _) = app.open_cache()?;
        let bar = if std::io::stderr().is_terminal() { ProgressBar::new(0) } else { ProgressBar::hidden() };
        bar.set_style(
            ProgressStyle::with_template("   {msg:8} [{bar:30}] {pos}/{len}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        let t = Instant::now();
        let r = app
            .sync(&cache, &client, false, &mut |k, done, total| {
                bar.set_message(k.api_name());
                bar.set_length(total);
                bar.set_position(done);
            })
            .await?;
        bar.finish_and_clear();
        outln!("   {} records in {:.1} s with {} API calls\n", r.upserted, t.elapsed().as_secs_f64(), r.api_calls);

        outln!("3. Who is calling? (offline lookups from the cache)");
        let normalizer = app.config.normalizer()?;
        let rules = app.config.lookup_rules();
        let mut samples: Vec<String> = Vec::new();
        {
            let org = sim.org();
            for object in ["Contact", "Account", "Lead"] {
                for row in org.rows(object).iter().filter(|r| r["Phone"].is_string()).take(2) {
                    samples.push(row["Phone"].as_str().unwrap_or_default().to_owned());
                }
            }
        }
        samples.push("0120-000-000".into());
        for number in &samples {
            let t = Instant::now();
            let r = lookup::lookup(&cache, &normalizer, &rules, number)?;
            let took = t.elapsed();
            print_lookup(&r, false);
            outln!("   ({:.0} µs)", took.as_secs_f64() * 1e6);
        }

        outln!("\n4. Someone edits Salesforce; one incremental sync picks it up");
        let id = {
            let mut org = sim.org();
            let mut f = serde_json::Map::new();
            f.insert("Name".into(), serde_json::json!("デモ 太郎"));
            f.insert("Phone".into(), serde_json::json!("０３－９８７６－５４３２"));
            org.admin_upsert("Contact", f)
        };
        let r = app.sync(&cache, &client, false, &mut |_, _, _| {}).await?;
        outln!("   new Contact {id}: {} change(s) with {} API call(s)", r.upserted + r.deleted, r.api_calls);
        print_lookup(&lookup::lookup(&cache, &normalizer, &rules, "03-9876-5432")?, false);

        outln!("\n5. Calls become Tasks: a sample call log → the durable outbox → Salesforce");
        let (contact_phone, lead_phone) = {
            let org = sim.org();
            let c = org.rows("Contact").into_iter().find(|r| r["Phone"].is_string() && r["IsPersonAccount"] != serde_json::json!(true));
            let l = org.rows("Lead").into_iter().find(|r| r["Phone"].is_string() && r["IsConverted"] == serde_json::json!(false));
            (
                c.map(|r| r["Phone"].as_str().unwrap_or_default().to_owned()).unwrap_or_default(),
                l.map(|r| r["Phone"].as_str().unwrap_or_default().to_owned()).unwrap_or_default(),
            )
        };
        let now = chrono::Local::now().fixed_offset();
        let t = |s: i64| (now + chrono::Duration::seconds(s)).to_rfc3339();
        let lines = [
            serde_json::json!({"call_id": "demo-1", "event": "ringing", "at": t(0), "direction": "inbound", "remote": contact_phone, "agent": "demo"}),
            serde_json::json!({"call_id": "demo-1", "event": "answered", "at": t(4)}),
            serde_json::json!({"call_id": "demo-1", "event": "ended", "at": t(184), "outcome": "answered"}),
            serde_json::json!({"call_id": "demo-1", "event": "memo", "at": t(200), "items": ["Quote"], "comment": "wants a quote by Friday"}),
            serde_json::json!({"call_id": "demo-2", "event": "ringing", "at": t(300), "direction": "inbound", "remote": "0120-000-000"}),
            serde_json::json!({"call_id": "demo-2", "event": "ended", "at": t(320), "outcome": "no_answer"}),
            serde_json::json!({"call_id": "demo-3", "event": "dialing", "at": t(400), "direction": "outbound", "remote": lead_phone}),
            serde_json::json!({"call_id": "demo-3", "event": "answered", "at": t(406)}),
            serde_json::json!({"call_id": "demo-3", "event": "ended", "at": t(466), "outcome": "answered"}),
        ];
        let log_path = root.join("sample-calls.jsonl");
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&log_path, &text)?;
        outln!("   call log: {} ({} events)", log_path.display(), lines.len());
        let events: Vec<callsync::calllog::CallEvent> = text
            .lines()
            .filter_map(|l| callsync::calllog::native::parse_line("demo", l).ok().flatten())
            .collect();
        let outbox = callsync::outbox::Outbox::open(&data.outbox())?;
        let settings = app.config.activity.settings();
        let assignees = app.config.assignee.assignees(Some(&stored.user_id));
        let pipeline = callsync::pipeline::Pipeline {
            outbox: &outbox,
            cache: Some(&cache),
            normalizer: &normalizer,
            rules: &rules,
            settings: Some(&settings),
            meeting: None,
            assignees: &assignees,
        };
        pipeline.handle(&events)?;
        let sender = callsync::outbox::Sender { client: &client, outbox: &outbox, external_id: Some("Call_Id__c".into()), event_external_id: None, errors: None };
        let rep = sender.send_due().await?;
        outln!("   {} Task(s) sent\n", rep.sent);
        for task in sim.org().rows("Task") {
            let s = |k: &str| task[k].as_str().unwrap_or("-").to_owned();
            outln!("   {}  [{} {} s]  Who {}  What {}", s("Subject"), s("CallType"), task["CallDurationInSeconds"], s("WhoId"), s("WhatId"));
            if let Some(d) = task["Description"].as_str() {
                for line in d.lines() {
                    outln!("      {line}");
                }
            }
        }
        outln!();
        drop(cache);
        Ok::<_, anyhow::Error>((sim, app, (contact_phone, lead_phone), log_guard))
    })?;
    if let Some((headless, secs)) = agent {
        outln!("6. The agent: tray icon, screen pops, a Task for every call");
        let log = root.join("calls.jsonl");
        std::fs::write(&log, "")?;
        let mut app = app;
        app.config.calllog.sources = vec![config::CallLogSource {
            kind: "native".into(),
            path: log.display().to_string(),
            name: "demo".into(),
            csv: None,
        }];
        outln!(
            "   a call rings every 20 s (written to {}); watch the notifications and the tray menu",
            log.display()
        );
        outln!(
            "   in another terminal: callsync --data-dir {} status",
            root.display()
        );
        match secs {
            Some(s) => outln!("   the agent stops after {s} s (--agent-secs); Ctrl-C or the tray's Quit end it sooner\n"),
            None => outln!("   Ctrl-C or the tray's Quit ends the demo\n"),
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let feeder = {
            let stop = stop.clone();
            std::thread::spawn(move || demo_calls(&log, &[phones.0, phones.1], &stop))
        };
        if let Some(s) = secs {
            let (data, stop) = (app.data.clone(), stop.clone());
            std::thread::spawn(move || {
                if !demo_wait(&stop, s) {
                    return;
                }
                let req = callsync::control::Request::Quit;
                let _ = callsync::control::call(&data, &req, std::time::Duration::from_secs(5));
            });
        }
        let r = run_agent(app, headless);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = feeder.join();
        r?;
        let live = sim
            .org()
            .rows("Task")
            .iter()
            .filter(|t| {
                t["CallObject"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("demo-live-"))
            })
            .count();
        outln!("   the agent wrote {live} Task(s) for the calls it saw\n");
    }
    if g.data_dir.is_some() {
        outln!("Try: callsync --data-dir {} status", root.display());
    } else {
        outln!("(the demo's temporary folder is removed now; pass --data-dir DIR to keep it)");
    }
    rt.block_on(sim.stop());
    Ok(())
}

/// Sleeps `secs` in the demo's helper threads; false as soon as the demo's agent stopped.
fn demo_wait(stop: &std::sync::atomic::AtomicBool, secs: u64) -> bool {
    for _ in 0..secs * 10 {
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    true
}

/// The demo's softphone: a call every 20 s, alternately from a known Contact, an unknown
/// number and a Lead; each rings, is answered after 3 s and ends after 12 s.
fn demo_calls(log: &std::path::Path, known: &[String], stop: &std::sync::atomic::AtomicBool) {
    use std::io::Write;
    let wait = |secs: u64| demo_wait(stop, secs);
    let mut n = 0usize;
    while wait(if n == 0 { 3 } else { 8 }) {
        n += 1;
        let remote = match n % 3 {
            1 => known.first().cloned().unwrap_or_default(),
            2 => "0120-000-000".to_owned(),
            _ => known.get(1).cloned().unwrap_or_default(),
        };
        let id = format!("demo-live-{n}-{}", chrono::Utc::now().timestamp());
        let line = |event: &str, extra: &str| {
            let at = chrono::Local::now().fixed_offset().to_rfc3339();
            format!("{{\"call_id\":\"{id}\",\"event\":\"{event}\",\"at\":\"{at}\"{extra}}}\n")
        };
        let write = |s: String| {
            if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(log) {
                let _ = f.write_all(s.as_bytes());
            }
        };
        write(line(
            "ringing",
            &format!(",\"direction\":\"inbound\",\"remote\":\"{remote}\""),
        ));
        if !wait(3) {
            return;
        }
        write(line("answered", ""));
        if !wait(9) {
            return;
        }
        write(line("ended", ",\"outcome\":\"answered\""));
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn run_sim(
    opts: callsync::sim::SimOptions,
    port: u16,
    tls: Option<(Vec<u8>, Vec<u8>)>,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let records = opts.records;
        let sim = match &tls {
            Some((cert, key)) => callsync::sim::Sim::start_tls(opts, port, cert, key).await,
            None => callsync::sim::Sim::start(opts, port).await,
        }
        .with_context(|| format!("cannot serve on 127.0.0.1:{port}"))?;
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

/// Completes on Ctrl-C, SIGTERM (service stop, logout) or SIGHUP (terminal closed).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(mut term), Ok(mut hup)) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                    _ = hup.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(windows)]
    {
        // Installers and logoff close the hidden window; a console sends Ctrl-C.
        let close = callsync::winclose::install();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = close.notified() => {}
        }
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `callsync run`: one agent per user. A second start asks the running one to show itself.
fn run_agent(app: App, headless: bool) -> anyhow::Result<u8> {
    use callsync::control::{self, ControlError, InstanceLock, Request};
    let lock = match InstanceLock::acquire(&app.data) {
        Ok(l) => l,
        Err(ControlError::AlreadyRunning(pid)) => {
            match control::call(&app.data, &Request::Show, std::time::Duration::from_secs(3)) {
                Ok(_) => {
                    outln!("callsync is already running (pid {pid}); it was asked to show itself")
                }
                Err(e) => eprintln!(
                    "callsync: another agent holds {} (pid {pid}) but does not answer: {e}",
                    app.data.root().join("agent.lock").display()
                ),
            }
            return Ok(exit::OK);
        }
        Err(e) => return Err(e.into()),
    };
    let rt = runtime()?;
    let listener = {
        let _guard = rt.enter();
        control::bind(&control::socket_path(&app.data))?
    };
    let (ends, handle) = callsync::agent::endpoints();
    let lang = app.config.ui.lang();
    let tray = !headless
        && match callsync::tray::probe() {
            Ok(true) => true,
            Ok(false) => {
                eprintln!("callsync: warning: no tray host is running (StatusNotifierWatcher); the icon appears when one starts");
                tracing::warn!("no tray host yet");
                true
            }
            Err(e) => {
                eprintln!("callsync: warning: {e}; running headless (status: `callsync status`)");
                tracing::warn!(error = %e, "no tray; running headless");
                false
            }
        };
    tracing::info!(tray, pid = std::process::id(), lock = %lock.path().display(), "starting the agent");
    let mut core = rt.spawn(callsync::agent::run(app, stop_signal(), ends));
    rt.spawn(listener.serve(handle.requests.clone()));
    let result = rt.block_on(async {
        let r = if tray {
            tokio::select! {
                r = &mut core => Some(r),
                t = callsync::tray::run(handle.clone(), lang) => {
                    if let Err(e) = t {
                        eprintln!("callsync: warning: {e}; running headless");
                        tracing::warn!(error = %e, "tray failed; running headless");
                    }
                    None
                }
            }
        } else {
            None
        };
        let r = match r {
            Some(r) => r,
            None => core.await,
        };
        // Lets the answer to a Quit request reach the asker.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        r
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    result??;
    drop(lock);
    if handle.restart_requested() {
        tracing::info!("restarting to apply new settings");
        return restart_self();
    }
    outln!("stopped");
    Ok(exit::OK)
}

/// Starts this program again with the same arguments: on Unix in place (same pid, so a
/// systemd unit or a supervisor keeps following it), elsewhere as a new process.
fn restart_self() -> anyhow::Result<u8> {
    let exe = std::env::current_exe().context("cannot find the callsync executable")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(std::env::args_os().skip(1));
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let e = cmd.exec();
        Err(anyhow::anyhow!("cannot restart: {e}"))
    }
    #[cfg(not(unix))]
    {
        cmd.spawn().context("cannot restart")?;
        Ok(exit::OK)
    }
}

/// `callsync agent …`: asks the running agent.
fn agent_cmd(app: &App, cmd: AgentCmd) -> anyhow::Result<u8> {
    use callsync::control::{self, ControlError, Request};
    let req = match cmd {
        AgentCmd::Show => Request::Show,
        AgentCmd::Pause => Request::Pause,
        AgentCmd::Resume => Request::Resume,
        AgentCmd::Sync => Request::SyncNow,
        AgentCmd::Quit => Request::Quit,
        AgentCmd::Restart => Request::Restart,
    };
    match control::call(&app.data, &req, std::time::Duration::from_secs(10)) {
        Ok(r) if r.ok => {
            outln!("ok");
            Ok(exit::OK)
        }
        Ok(r) => {
            eprintln!(
                "callsync: the agent refused: {}",
                r.error.unwrap_or_default()
            );
            Ok(exit::FAILURE)
        }
        Err(ControlError::NotRunning) => {
            eprintln!("callsync: the agent is not running (start it with `callsync run`)");
            Ok(exit::UNAVAILABLE)
        }
        Err(e) => Err(e.into()),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// The client for the stored sign-in, or the exit code that explains why there is none.
fn signed_in_client(app: &App) -> Result<callsync::salesforce::Client, u8> {
    app.client().map_err(|e| {
        eprintln!("callsync: {e}");
        sf_exit(&e)
    })
}

/// Exit code for a Salesforce error.
fn sf_exit(e: &SfError) -> u8 {
    match e {
        SfError::SignInNeeded { .. } | SfError::NotConnected => exit::SIGN_IN,
        e if e.is_retryable() => exit::UNAVAILABLE,
        _ => exit::FAILURE,
    }
}

async fn connect(app: &App, no_browser: bool, send_queue_here: bool) -> anyhow::Result<u8> {
    let sf = &app.config.salesforce;
    if !sf.jwt_username.is_empty() && !sf.jwt_key_file.is_empty() {
        outln!(
            "signing in as {} with the JWT bearer flow…",
            sf.jwt_username
        );
    }
    let open = |url: &str| {
        if no_browser || webbrowser::open(url).is_err() {
            outln!("Open this address in your browser to sign in to Salesforce:\n\n  {url}\n");
        } else {
            outln!("Your browser is open at the Salesforce sign-in page; waiting for you to allow access…");
        }
    };
    let result = app.sign_in(open, std::time::Duration::from_secs(300)).await;
    if let Err(callsync::auth::SignInError::Settings(m)) = &result {
        eprintln!("callsync: {m}");
        return Ok(exit::USAGE);
    }
    let (token, method) = match result {
        Ok(t) => t,
        Err(e) => {
            eprintln!("callsync: {e}");
            return Ok(exit::SIGN_IN);
        }
    };
    let stored = app.complete_sign_in(&token, method).await?;
    outln!(
        "Connected to org {} as {} ({}) at {}",
        stored.org_id,
        if stored.username.is_empty() {
            &stored.user_id
        } else {
            &stored.username
        },
        stored.user_id,
        stored.instance_url
    );
    outln!(
        "The refresh token is kept in {}.",
        app.auth_store().describe()
    );
    match app.backup_note(&stored.org_id) {
        Ok(Some(callsync::app::BackupNote::OtherOrg { taken_at, org_id, username })) => eprintln!(
            "callsync: warning: the settings backup ({taken_at}) is from org {org_id} ({username}), not this org: restoring it here would apply another org's field names and users; `callsync settings restore` checks them"
        ),
        Ok(Some(callsync::app::BackupNote::Available { taken_at })) => outln!(
            "A settings backup from {taken_at} is available: `callsync settings restore` applies it."
        ),
        Ok(None) => {}
        Err(e) => eprintln!("callsync: warning: {e}"),
    }
    // The sign-in rule: the cache becomes this org's, the queue resumes for its own org and is
    // never handed to another one unasked. Applied here, or by the running agent that holds
    // the stores.
    let applied = match (
        app.open_cache(),
        callsync::outbox::Outbox::open(&app.data.outbox()),
    ) {
        (Ok((cache, _)), Ok(outbox)) => app
            .apply_sign_in(&stored.org_id, &cache, &outbox, send_queue_here)
            .map_err(anyhow::Error::msg)?,
        (Err(CacheError::Locked(_)), _) | (_, Err(callsync::outbox::OutboxError::Locked(_))) => {
            let busy = CacheError::Locked(app.data.cache());
            match from_agent(app, Request::SignedIn { send_queue_here }, busy) {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("callsync: note: the cache and Task queue are in use ({e}); the agent applies the new sign-in when it next looks (within a minute)");
                    return Ok(exit::OK);
                }
            }
        }
        (Err(e), _) => return Err(e.into()),
        (_, Err(e)) => return Err(e.into()),
    };
    if let callsync::cache::Claim::Switched { from } = &applied.cache {
        eprintln!(
            "callsync: warning: this is a different org than before ({from} → {}); the cache is reloaded at the next sync",
            stored.org_id
        );
    }
    match applied.queue {
        callsync::outbox::Adoption::Held { why } => eprintln!("callsync: warning: {why}"),
        callsync::outbox::Adoption::Resumed { queued } if queued > 0 => {
            outln!("{queued} queued Task(s) will be sent to this org.")
        }
        callsync::outbox::Adoption::Resumed { .. } => {}
        callsync::outbox::Adoption::UserPaused { why } => {
            eprintln!("callsync: note: sending stays paused: {why}")
        }
    }
    Ok(exit::OK)
}

async fn disconnect(app: &App, layered: &Layered) -> anyhow::Result<u8> {
    // The backup first: whatever happens at Salesforce, the settings are kept.
    let who = app.auth_store().load().ok().flatten();
    if let Some(a) = &who {
        let path = app.data.settings_backup();
        let previous = callsync::settings::Backup::load(&path).ok().flatten();
        callsync::settings::Backup::of(layered, &a.org_id, &a.username).save(&path)?;
        let replaced = previous
            .map(|p| format!(" (replacing the backup of {})", p.taken_at))
            .unwrap_or_default();
        outln!(
            "settings backed up to {}{replaced}; `callsync settings restore` applies them after `callsync connect`",
            path.display()
        );
    }
    if !app.sign_out().await? {
        outln!("not signed in");
        return Ok(exit::OK);
    }
    let why = "signed out with `callsync disconnect`; the queue is kept and sent after `callsync connect`";
    match callsync::outbox::Outbox::open(&app.data.outbox()) {
        Ok(outbox) => {
            outbox.pause(callsync::outbox::PauseKind::SignedOut, why)?;
            let (p, k) = outbox.counts()?;
            outln!("signed out; the token is revoked and forgotten; the cache and {} queued Task(s) are kept", p + k);
        }
        Err(callsync::outbox::OutboxError::Locked(_)) => {
            // The running agent holds the queue: it stops sending when its token fails.
            let _ = callsync::control::call(
                &app.data,
                &callsync::control::Request::SignOut,
                std::time::Duration::from_secs(5),
            );
            outln!("signed out; the token is revoked and forgotten; the running agent keeps the cache and the Task queue")
        }
        Err(e) => return Err(e.into()),
    }
    Ok(exit::OK)
}

async fn sync_now(app: &App, full: bool) -> anyhow::Result<u8> {
    let client = match signed_in_client(app) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let cache = open_cache(app)?;
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg:8} [{bar:30}] {pos}/{len} records ({per_sec})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let mut progress = |kind: callsync::record::ObjectKind, done: u64, total: u64| {
        bar.set_message(kind.api_name());
        bar.set_length(total);
        bar.set_position(done);
    };
    let t = std::time::Instant::now();
    let result = app.sync(&cache, &client, full, &mut progress).await;
    bar.finish_and_clear();
    match result {
        Ok(r) => {
            let what = if r.full.is_empty() {
                "incremental".to_owned()
            } else {
                format!("full load of {}", r.full.join(", "))
            };
            outln!(
                "synced in {:.1} s ({what}): {} records updated, {} removed, {} API calls",
                t.elapsed().as_secs_f64(),
                r.upserted,
                r.deleted,
                r.api_calls
            );
            if let Some((used, max)) = client.api_usage() {
                outln!(
                    "org API usage: {used} of {max} daily calls ({:.1} %)",
                    used as f64 * 100.0 / max.max(1) as f64
                );
            }
            Ok(exit::OK)
        }
        Err(callsync::sync::SyncError::Salesforce(e)) => {
            eprintln!("callsync: sync failed: {e}");
            if let Some((_, fix)) =
                callsync::sync::explain(&callsync::sync::SyncError::Salesforce(e.clone()))
            {
                eprintln!("fix: {fix}");
            }
            if matches!(e, SfError::SignInNeeded { .. }) {
                eprintln!("run `callsync connect` to sign in again; the cache is kept and still answers lookups");
            } else if e.is_rate_limited() {
                eprintln!("the org's daily API limit is used up; callsync will try again later");
            }
            Ok(sf_exit(&e))
        }
        Err(e) => Err(e.into()),
    }
}

fn status(app: &App, json: bool) -> anyhow::Result<u8> {
    use callsync::control::{self, Request};
    // The running agent holds the stores: ask it first.
    if let Ok(r) = control::call(
        &app.data,
        &Request::Status,
        std::time::Duration::from_secs(3),
    ) {
        if let Some(st) = r.state {
            return agent_status(app, &st, json);
        }
    }
    let cache = open_cache(app)?;
    let st = app.status(&cache)?;
    if json {
        let mut v = serde_json::to_value(&st)?;
        v["running"] = serde_json::Value::Bool(false);
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(exit::OK);
    }
    outln!("agent: not running");
    match &st.signed_in {
        Some(s) => outln!(
            "signed in: {} ({}) in org {} at {} since {} [{}]",
            s.username,
            s.user_id,
            s.org_id,
            s.instance_url,
            s.since,
            s.method
        ),
        None => outln!("not signed in: run `callsync connect`"),
    }
    if !st.contact_retrieval {
        outln!("contact retrieval is off");
    }
    for o in &st.records {
        outln!(
            "  {:<8} {:>9} records   last sync {}{}",
            o.object,
            o.records,
            o.last_sync.as_deref().unwrap_or("never"),
            if o.load_in_progress {
                "  (full load interrupted; resumes at next sync)"
            } else {
                ""
            }
        );
    }
    outln!("  numbers  {:>9} index entries", st.index_entries);
    match (st.pending_tasks, st.parked_tasks) {
        (Some(p), Some(k)) => {
            outln!("  pending  {p:>9} Tasks to send, {k} parked (callsync queue)")
        }
        _ => outln!("  pending  {:>9} (the running agent holds the queue)", "?"),
    }
    if let Some(u) = st.api_usage {
        outln!(
            "  org API usage at last sync: {} of {} daily calls",
            u.used,
            u.max
        );
    }
    Ok(exit::OK)
}

fn agent_status(app: &App, st: &callsync::state::AgentState, json: bool) -> anyhow::Result<u8> {
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"running": true, "agent": st}))?
        );
        return Ok(exit::OK);
    }
    let lang = app.config.ui.lang();
    let v = callsync::state::view(st, lang, chrono::Utc::now().timestamp_millis());
    outln!("agent: running (pid {}), {}", st.pid, v.health.name());
    outln!("  {}", v.status);
    if let (Some(u), Some(o)) = (&st.user, &st.org_id) {
        outln!(
            "  signed in as {u} in org {o} at {}",
            st.instance_url.as_deref().unwrap_or("")
        );
    }
    outln!("  {}", v.records);
    outln!("  {}", v.pending);
    if let Some(why) = &st.paused {
        outln!("  sending paused: {why}");
    }
    if let Some(why) = &st.offline {
        outln!("  offline: {why}");
    }
    outln!(
        "  {} ({} since the agent started; `callsync errors` lists them)",
        v.errors_label,
        st.new_errors
    );
    for line in &v.errors {
        outln!("    {line}");
    }
    Ok(exit::OK)
}

/// Syncs on the adaptive schedule until Ctrl-C; failures back off and never stop the loop
/// (except a sign-in that must be renewed).
async fn sync_watch(app: &App) -> anyhow::Result<u8> {
    use callsync::schedule::{next_delay, ScheduleInput};
    let client = match signed_in_client(app) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let cache = open_cache(app)?;
    let mut failures = 0u32;
    let mut rng = fastrand::Rng::new();
    loop {
        let rate_limited = match app.sync(&cache, &client, false, &mut |_, _, _| {}).await {
            Ok(r) => {
                failures = 0;
                tracing::info!(
                    upserted = r.upserted,
                    deleted = r.deleted,
                    api_calls = r.api_calls,
                    "sync"
                );
                outln!(
                    "{} synced: {} updated, {} removed, {} API call(s)",
                    chrono::Local::now().format("%H:%M:%S"),
                    r.upserted,
                    r.deleted,
                    r.api_calls
                );
                false
            }
            Err(callsync::sync::SyncError::Salesforce(e)) if !e.is_retryable() => {
                eprintln!("callsync: {e}");
                return Ok(sf_exit(&e));
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, failures, "sync failed; backing off");
                eprintln!("callsync: sync failed ({e}); retrying later");
                matches!(&e, callsync::sync::SyncError::Salesforce(s) if s.is_rate_limited())
            }
        };
        // No call log here: neither calls nor idleness are known.
        let delay = next_delay(ScheduleInput {
            api_share: client.api_usage().map(|(u, m)| u as f64 / m.max(1) as f64),
            failures,
            rate_limited,
            jitter: rng.f64(),
            ..ScheduleInput::from_config(&app.config.sync)
        });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = tokio::signal::ctrl_c() => {
                cache.flush()?;
                outln!("stopped");
                return Ok(exit::OK);
            }
        }
    }
}

/// One line for a person.
fn describe_event(
    e: &callsync::calllog::CallEvent,
    call_type: Option<callsync::calllog::CallType>,
) -> String {
    use callsync::calllog::EventKind;
    let who = e
        .info
        .as_ref()
        .map(|i| {
            format!(" {:?} {}", i.direction, callsync::phone::Masked(&i.remote)).to_lowercase()
        })
        .unwrap_or_default();
    let detail = match &e.kind {
        EventKind::Ended {
            outcome,
            duration_s,
        } => format!(
            " {outcome:?}{}{}",
            duration_s.map(|d| format!(", {d} s")).unwrap_or_default(),
            call_type
                .map(|t| format!(
                    " → {t:?}{}",
                    if t.is_integrated() {
                        ""
                    } else {
                        " (not integrated)"
                    }
                ))
                .unwrap_or_default()
        ),
        EventKind::Transferred { kind, to } => {
            format!(" {kind:?} to {}", callsync::phone::Masked(to))
        }
        EventKind::Memo {
            items,
            comment,
            edited,
        } => format!(
            " {items:?} {}{}",
            comment.clone().unwrap_or_default(),
            if *edited { " (edited)" } else { "" }
        ),
        EventKind::Speech { summary, .. } => format!(" summary: {summary}"),
        _ => String::new(),
    };
    format!(
        "{} {:<8} {:<12} {:<11}{who}{detail}",
        e.at.format("%Y-%m-%d %H:%M:%S%:z"),
        e.source,
        e.call_id,
        e.kind.name()
    )
}

fn calls_tail(app: &App, overrides: &[String], json: bool, from_start: bool) -> anyhow::Result<u8> {
    use callsync::calllog::{
        classify,
        cursor::CursorStore,
        watch::{Follower, Waker},
        CallInfo, EventKind, TransferKind,
    };
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let mut sources = Vec::new();
    if overrides.is_empty() {
        for s in &app.config.calllog.sources {
            sources.push(s.open().map_err(anyhow::Error::msg)?);
        }
    } else {
        for o in overrides {
            let (kind, path) = o.split_once('=').context("--source takes KIND=PATH")?;
            sources.push(
                callsync::calllog::open_source(kind, kind, PathBuf::from(path), None)
                    .map_err(anyhow::Error::msg)?,
            );
        }
    }
    if sources.is_empty() {
        eprintln!("callsync: no call logs configured: add [calllog] sources (see `callsync config example`) or pass --source KIND=PATH");
        return Ok(exit::USAGE);
    }
    let store = CursorStore::new(app.data.root().join("calllog").join("tail-cursors.json"));
    if from_start {
        let _ = std::fs::remove_file(store.path());
    }
    let mut follower = Follower::new(sources, store)?;
    let mut waker = Waker::new(follower.dirs(), std::time::Duration::from_millis(20))?;
    let errors = callsync::errorlog::ErrorLog::new(app.data.error_log());
    // Screen pops come from the cache when it is free (the agent may hold it).
    let cache = app.open_cache().ok().map(|(c, _)| c);
    let normalizer = app.config.normalizer()?;
    let rules = app.config.lookup_rules();

    let stop = Arc::new(AtomicBool::new(false));
    let rt = runtime()?;
    {
        let stop = stop.clone();
        let wake = waker.handle();
        rt.spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.store(true, Ordering::SeqCst);
            let _ = wake.send(());
        });
    }
    let mut calls: HashMap<String, (CallInfo, Option<TransferKind>)> = HashMap::new();
    let backstop = std::time::Duration::from_secs(app.config.calllog.poll_secs);
    while !stop.load(Ordering::SeqCst) {
        let (batches, retry) = follower.poll();
        for b in &batches {
            for p in &b.problems {
                eprintln!(
                    "callsync: {}{}: {}",
                    p.file,
                    p.line.map(|l| format!(":{l}")).unwrap_or_default(),
                    p.reason
                );
            }
            let _ = errors.calllog_batch(&b.problems);
            for e in &b.events {
                if let Some(i) = &e.info {
                    calls
                        .entry(e.call_id.clone())
                        .or_insert_with(|| (i.clone(), None));
                }
                if let EventKind::Transferred { kind, .. } = &e.kind {
                    if let Some(c) = calls.get_mut(&e.call_id) {
                        c.1 = Some(*kind);
                    }
                }
                let call_type = match &e.kind {
                    EventKind::Ended { outcome, .. } => calls
                        .get(&e.call_id)
                        .map(|(i, t)| classify(i.direction, *outcome, *t)),
                    _ => None,
                };
                if json {
                    outln!("{}", serde_json::to_string(e)?);
                } else {
                    outln!("{}", describe_event(e, call_type));
                }
                if !json {
                    let pop = callsync::calllog::screen_pop(e, |n| {
                        cache
                            .as_ref()
                            .and_then(|c| lookup::lookup(c, &normalizer, &rules, n).ok())
                    });
                    if let Some(p) = pop {
                        let more = if p.others > 0 {
                            format!(" + {} more", p.others)
                        } else {
                            String::new()
                        };
                        let kind = p.kind.map(|k| format!(" ({k})")).unwrap_or_default();
                        outln!("    screen pop: {}{kind}{more}  {}", p.title, p.number);
                    }
                }
            }
            follower.ack(b)?;
        }
        let wait = if retry {
            std::time::Duration::from_millis(100)
        } else {
            waker.backstop(backstop)
        };
        waker.wait(wait);
    }
    outln!("stopped");
    Ok(exit::OK)
}

fn calls_import(
    data: &DataDir,
    file: &std::path::Path,
    format: &str,
    json: bool,
) -> anyhow::Result<u8> {
    if !file.exists() {
        eprintln!("callsync: cannot read {}: no such file", file.display());
        return Ok(exit::FAILURE);
    }
    let mut src = callsync::calllog::open_source(format, format, file.to_owned(), None)
        .map_err(anyhow::Error::msg)?;
    let p = src.read_whole();
    let errors = callsync::errorlog::ErrorLog::new(data.error_log());
    for e in &p.events {
        if json {
            outln!("{}", serde_json::to_string(e)?);
        } else {
            outln!("{}", describe_event(e, None));
        }
    }
    {
        use std::io::Write;
        let mut err = std::io::stderr().lock();
        for pr in &p.problems {
            let _ = writeln!(
                err,
                "{}{}: {}",
                pr.file,
                pr.line.map(|l| format!(":{l}")).unwrap_or_default(),
                pr.reason
            );
        }
    }
    let _ = errors.calllog_batch(&p.problems);
    if !json {
        outln!("{} events; {} problem(s)", p.events.len(), p.problems.len());
    }
    Ok(if p.problems.is_empty() {
        exit::OK
    } else {
        exit::PARTIAL
    })
}
