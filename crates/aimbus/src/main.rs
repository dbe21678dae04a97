//! The aimbus binary: loads and validates the configuration, then serves the bus or
//! answers questions about its registry.
#![forbid(unsafe_code)]

mod cli;
mod dlq;
mod keyring;
mod serve;
mod signals;
mod simulate;
mod systems;
mod token;

use std::io::IsTerminal;
use std::process::ExitCode;

use aimbus_core::{Config, LogLevel, SystemsFile};
use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, SystemsCommand};

/// Routing allocates a few small objects per message; mimalloc serves those faster than
/// the system allocator (`benches/route` measures with it too).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status for a configuration that cannot be used (as for a usage error).
const EXIT_BAD_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli.config, std::env::vars()) {
        Ok(config) => config,
        Err(error) => return config_failure(&error),
    };
    let systems = match SystemsFile::load(&config.systems_file()) {
        Ok(systems) => systems,
        Err(error) => return config_failure(&error),
    };
    init_logging(config.monitoring().log_level);
    let needs_tokens = matches!(cli.command, Command::Serve | Command::Token(_));
    let authenticator = if needs_tokens {
        match token::authenticator(&config) {
            Ok(authenticator) => Some(authenticator),
            Err(error) => {
                eprintln!("error: invalid configuration: {error}");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
        }
    } else {
        None
    };
    let outcome = match (cli.command, authenticator) {
        (Command::Serve, Some(authenticator)) => serve::run(&config, &systems, authenticator),
        (Command::Token(command), Some(authenticator)) => {
            token::run(&config, &authenticator, command)
        }
        (Command::Serve | Command::Token(_), None) => unreachable!("made above"),
        (Command::Systems(SystemsCommand::Simulate(args)), _) => {
            simulate::run(&config, &systems, &args)
        }
        (Command::Systems(SystemsCommand::Query(query)), _) => {
            systems::run(systems.registry(), query)
        }
        (Command::Dlq(command), _) => dlq::run(&config, command),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        // A configuration problem found only when used (an unreadable keyring) exits as
        // any bad configuration does.
        Err(error) => match error.downcast_ref::<aimbus_core::Error>() {
            Some(config_error) if config_error.is_config_error() => config_failure(config_error),
            _ => {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn config_failure(error: &aimbus_core::Error) -> ExitCode {
    eprintln!("error: invalid configuration: {error}");
    ExitCode::from(EXIT_BAD_CONFIG)
}

/// Logs go to standard error, so `systems … --json` output stays clean; RUST_LOG, when
/// set, wins over the configured level.
fn init_logging(level: LogLevel) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(level.as_str().to_ascii_lowercase()));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
