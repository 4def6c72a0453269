//! The command line's grammar (clap derive); `callsync man` renders it as manual pages.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Subcommand, Debug)]
pub enum AgentCmd {
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
    /// Test hook (Windows): open the tray menu at screen point X Y, where Wine delivers no
    /// clicks to tray icons. The agent accepts it only when started with CALLSYNC_TEST_HOOKS=1.
    #[command(hide = true)]
    Menu { x: i32, y: i32 },
}

#[derive(Parser, Debug)]
#[command(
    name = "callsync",
    version,
    about = "Joins your softphone to Salesforce: instant offline caller lookup and exactly-once call logging."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug)]
pub struct Global {
    /// The user's configuration file [default: per-user config dir]/config.toml
    #[arg(long, global = true, env = "CALLSYNC_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the cache, queue and logs live [default: per-user data dir]
    #[arg(long, global = true, env = "CALLSYNC_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Override a configuration key, e.g. --set phone.default_region=US (repeatable)
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
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
    Settings(super::settings::SettingsCmd),
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
    #[cfg(feature = "sim")]
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
    #[cfg(feature = "sim")]
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
pub enum CacheCmd {
    /// Records per object, index size, disk use.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Load records from JSON Lines shaped as the Salesforce REST API returns them.
    Import { file: PathBuf },
    /// Delete every cached record (the next sync reloads them).
    Clear,
    /// Rebuild the phone index from the cached records (local work, no sync; done by itself
    /// after full syncs, imports and repairs).
    Rebuild,
}

#[derive(Subcommand, Debug)]
pub enum CallsCmd {
    /// Follow the call logs and print each call event as it happens (Ctrl-C stops).
    Tail {
        /// Follow this log instead of the configured ones: KIND=PATH (native, linphone, twinkle,
        /// microsip, microsip-csv, csv with the default column names).
        #[arg(long = "source", value_name = "KIND=PATH")]
        sources: Vec<String>,
        /// Print JSON Lines.
        #[arg(long)]
        json: bool,
        /// Start again from the beginning of every log.
        #[arg(long)]
        from_start: bool,
    },
    /// Choose the record a call's Task goes on, among its number's matches (`callsync lookup
    /// NUMBER` lists them). Before the Task is written it is written there; after, its WhoId
    /// and WhatId are updated. The choice also wins for the number's next calls.
    Pick {
        /// The call's id (its SIP Call-ID, as `callsync calls tail` and the Task's CallObject
        /// show it).
        call_id: String,
        /// The chosen record's Id (Contact, Account or Lead).
        record_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Read one call log file and print its events.
    Import {
        file: PathBuf,
        #[arg(long, default_value = "native", value_parser = callsync_calllog::SOURCE_KINDS)]
        format: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ProxyCmd {
    /// Store the proxy password for proxy.user in the OS credential store (read without echo,
    /// or from standard input when it is not a terminal).
    Password,
}

#[derive(Subcommand, Debug)]
pub enum QueueCmd {
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
pub enum AuthCmd {
    /// Every sign-in: time, org, user, instance, method.
    History {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
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
        /// The call log to follow, as a plain path (the MSI's CALLLOG): written as
        /// `calllog.sources = [{ kind, path }]` with the quoting done here.
        #[arg(long, value_name = "PATH")]
        call_log: Option<String>,
        /// The kind of `--call-log` (native, linphone, twinkle, microsip, microsip-csv, csv).
        #[arg(long, value_name = "KIND", default_value = "native")]
        call_log_kind: String,
    },
}
