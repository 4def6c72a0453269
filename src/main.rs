//! The `callsync` command: parses the command line, loads the configuration and hands over to
//! the command's module in `cli/`.

use std::process::ExitCode;

use clap::Parser;

use callsync_app::logging::{self, Console};
use callsync_app::App;
use callsync_store::paths::DataDir;

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

mod cli;

use cli::{args::Cli, exit};

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
    if let Some(code) = cli::early(&cli) {
        return ExitCode::from(code);
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
    let (layered, opts) = match cli::load_config(&cli.global, &data) {
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
    let mut app = App::new(layered.config.clone(), data.clone());
    app.settings_file = cli::user_config(&cli.global);
    let ctx = cli::Ctx {
        layered: &layered,
        data: &data,
        opts: &opts,
        app,
    };
    match cli::run(cli.command, ctx) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("callsync: {e:#}");
            ExitCode::from(cli::failure_code(&e))
        }
    }
}
