//! The command line: its grammar (`args`), one module per command, and what they share (the
//! context, exit codes, asking the running agent).

pub mod args;
mod auth;
mod cache;
mod calls;
mod connect;
#[cfg(feature = "sim")]
mod demo;
mod doctor;
mod errors;
mod lookup;
mod proxy;
mod queue;
mod run;
mod settings;
mod status;
mod support;
mod sync;

use std::path::PathBuf;

use callsync_agent::control::Request;
use callsync_app::App;
use callsync_config::{Layered, LoadOptions};
use callsync_core::wire::SfError;
use callsync_store::cache::{Cache, CacheError};
use callsync_store::paths::{self, DataDir};

use args::{AuthCmd, CacheCmd, CallsCmd, Cli, Command, ConfigCmd, Global, ProxyCmd};

/// Exit codes (also in the README).
pub mod exit {
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

/// What every command that works on the user's data is given.
pub struct Ctx<'a> {
    pub layered: &'a Layered,
    pub data: &'a DataDir,
    pub opts: &'a LoadOptions,
    pub app: App,
}

/// Commands that need no configuration or data folder (the demo, the simulator, packaging
/// helpers): their exit code, or `None` for every other command.
pub fn early(cli: &Cli) -> Option<u8> {
    let code = match &cli.command {
        #[cfg(feature = "sim")]
        Command::Demo {
            records,
            no_agent,
            headless,
            agent_secs,
        } => {
            use std::io::IsTerminal;
            let secs = agent_secs.or((!std::io::stdin().is_terminal()).then_some(30));
            report(demo::run(
                &cli.global,
                *records,
                (!no_agent).then_some((*headless, secs)),
            ))
        }
        #[cfg(feature = "sim")]
        Command::Sim {
            port,
            records,
            seed,
            page_size,
            rotate_refresh_tokens,
            client_id,
            tls_cert,
            tls_key,
        } => {
            let opts = callsync_sim::SimOptions {
                seed: *seed,
                records: *records,
                page_size: (*page_size).clamp(1, 2_000),
                client_id: client_id.clone(),
                rotate_refresh_tokens: *rotate_refresh_tokens,
                ..Default::default()
            };
            let tls = match (tls_cert, tls_key) {
                (Some(c), Some(k)) => match (std::fs::read(c), std::fs::read(k)) {
                    (Ok(c), Ok(k)) => Some((c, k)),
                    (Err(e), _) | (_, Err(e)) => {
                        eprintln!("callsync: cannot read the TLS certificate or key: {e}");
                        return Some(exit::USAGE);
                    }
                },
                _ => None,
            };
            report(demo::sim(opts, *port, tls))
        }
        Command::Man { dir } => {
            use clap::CommandFactory;
            let r = std::fs::create_dir_all(dir)
                .and_then(|()| clap_mangen::generate_to(Cli::command(), dir));
            match r {
                Ok(()) => exit::OK,
                Err(e) => {
                    eprintln!(
                        "callsync: cannot write the manual pages to {}: {e}",
                        dir.display()
                    );
                    exit::FAILURE
                }
            }
        }
        Command::Config(ConfigCmd::SetFile {
            file,
            values,
            call_log,
            call_log_kind,
        }) => {
            let log = call_log
                .as_deref()
                .map(|path| callsync_config::InstallerCallLog {
                    kind: call_log_kind,
                    path,
                });
            match callsync_config::set_in_file(file, values, log) {
                Ok(n) => {
                    outln!("{n} value(s) written to {}", file.display());
                    exit::OK
                }
                Err(e) => {
                    eprintln!("callsync: {e}");
                    exit::USAGE
                }
            }
        }
        Command::Config(ConfigCmd::Example) => {
            print!("{}", callsync_config::EXAMPLE);
            exit::OK
        }
        _ => return None,
    };
    Some(code)
}

#[cfg(feature = "sim")]
fn report(r: anyhow::Result<()>) -> u8 {
    match r {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("callsync: {e:#}");
            exit::FAILURE
        }
    }
}

/// The layered configuration: defaults, the machine-wide file, policy, the user's file, the
/// settings store, the environment and `--set`.
pub fn load_config(g: &Global, data: &DataDir) -> anyhow::Result<(Layered, LoadOptions)> {
    let cli = g
        .set
        .iter()
        .map(|s| callsync_config::parse_set(s))
        .collect::<Result<Vec<_>, _>>()?;
    let (policy, problems) = callsync_config::policy::to_config(&callsync_config::policy::read());
    for (key, why) in problems {
        eprintln!(
            "callsync: warning: policy {key} in {} ignored: {why}",
            callsync_config::policy::SOURCE
        );
    }
    let opts = LoadOptions {
        managed_file: callsync_config::default_managed_file(),
        policy,
        user_file_required: g.config.is_some(),
        user_file: g.config.clone().or_else(paths::default_user_config),
        settings_file: Some(data.settings()),
        settings_values: None,
        env: callsync_config::env_overrides(),
        cli,
    };
    Ok((callsync_config::load(&opts)?, opts))
}

/// Runs a command that works on the user's data.
pub fn run(command: Command, ctx: Ctx) -> anyhow::Result<u8> {
    if let Command::Run { headless } = command {
        return run::agent(ctx.app, headless);
    }
    let ctx = &ctx;
    let (layered, data, app) = (ctx.layered, ctx.data, &ctx.app);
    match command {
        Command::Lookup { number, json } => lookup::run(ctx, number, json),
        Command::Cache(CacheCmd::Stats { json }) => cache::stats(ctx, json),
        Command::Cache(CacheCmd::Import { file }) => cache::import(ctx, file),
        Command::Cache(CacheCmd::Clear) => cache::clear(ctx),
        Command::Cache(CacheCmd::Rebuild) => cache::rebuild(ctx),
        Command::Config(ConfigCmd::Show { json }) => {
            support::show_config(layered, data, json)?;
            Ok(exit::OK)
        }
        Command::Connect {
            no_browser,
            send_queue_here,
        } => runtime()?.block_on(connect::connect(app, no_browser, send_queue_here)),
        Command::Agent(cmd) => run::ask(app, cmd),
        Command::Disconnect => runtime()?.block_on(connect::disconnect(app, layered)),
        Command::Settings(cmd) => settings::run(cmd, app, layered, data, ctx.opts),
        Command::SupportBundle { output } => support::bundle(app, layered, output),
        Command::Sync {
            full: _,
            watch: true,
        } => runtime()?.block_on(sync::watch(app)),
        Command::Sync { full, watch: false } => runtime()?.block_on(sync::now(app, full)),
        Command::Status { json } => status::run(app, json),
        Command::Calls(CallsCmd::Tail {
            sources,
            json,
            from_start,
        }) => calls::tail(app, &sources, json, from_start),
        Command::Calls(CallsCmd::Pick {
            call_id,
            record_id,
            json,
        }) => calls::pick(app, &call_id, &record_id, json),
        Command::Calls(CallsCmd::Import { file, format, json }) => {
            calls::import(data, &file, &format, json)
        }
        Command::Doctor { json } => doctor::run(ctx, json),
        Command::Proxy(ProxyCmd::Password) => proxy::password(ctx),
        Command::Queue { cmd, json } => queue::run(ctx, cmd, json),
        Command::Errors { json } => errors::run(ctx, json),
        Command::Auth(AuthCmd::History { json }) => auth::history(ctx, json),
        // Handled by `early`, before the configuration is loaded.
        Command::Config(ConfigCmd::Example | ConfigCmd::SetFile { .. })
        | Command::Man { .. }
        | Command::Run { .. } => Ok(exit::OK),
        #[cfg(feature = "sim")]
        Command::Demo { .. } | Command::Sim { .. } => Ok(exit::OK),
    }
}

/// Exit code for a failed command: busy when the running agent holds a store.
pub fn failure_code(e: &anyhow::Error) -> u8 {
    let busy = e.chain().any(|c| {
        matches!(c.downcast_ref::<CacheError>(), Some(CacheError::Locked(_)))
            || matches!(
                c.downcast_ref::<callsync_store::outbox::OutboxError>(),
                Some(callsync_store::outbox::OutboxError::Locked(_))
            )
    });
    if busy {
        exit::BUSY
    } else {
        exit::FAILURE
    }
}

/// The settings file the user edits: `--config`, or the per-user default.
pub fn user_config(g: &Global) -> Option<PathBuf> {
    g.config.clone().or_else(paths::default_user_config)
}

/// The cache, telling the user when it had to be rebuilt or cleared.
fn open_cache(app: &App) -> anyhow::Result<Cache> {
    Ok(opened(app.open_cache()?))
}

/// An opened cache, after telling the user what opening it had to repair.
fn opened((cache, report): (Cache, callsync_store::cache::OpenReport)) -> Cache {
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

/// What the running agent answers to a query request (it holds the stores), decoded. With no
/// agent to ask, the store is held by another command: `busy` says so (exit code 5).
fn from_agent<T: serde::de::DeserializeOwned>(
    app: &App,
    req: Request,
    busy: impl Into<anyhow::Error>,
) -> anyhow::Result<T> {
    use callsync_agent::control::{self, ControlError};
    let r = match control::call(&app.data, &req, std::time::Duration::from_secs(10)) {
        Ok(r) => r,
        Err(ControlError::NotRunning) => return Err(busy.into()),
        Err(e) => anyhow::bail!("the running agent holds the store and could not be asked: {e}"),
    };
    if !r.ok {
        anyhow::bail!("{}", r.error.unwrap_or_else(|| "the agent refused".into()));
    }
    Ok(serde_json::from_value(r.data.unwrap_or_default())?)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// The client for the stored sign-in, or the exit code that explains why there is none.
fn signed_in_client(app: &App) -> Result<callsync_salesforce::Client, u8> {
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
