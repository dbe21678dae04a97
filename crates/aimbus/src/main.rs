//! The aimbus binary: loads and validates the configuration, then serves the bus or
//! answers questions about its registry.
#![forbid(unsafe_code)]

mod cli;
mod dlq;
mod keyring;
mod ping;
mod serve;
mod signals;
mod simulate;
mod systems;
mod token;

use std::process::ExitCode;

use aimbus_core::{Config, SystemsFile};
use aimbus_telemetry::Process;
use clap::Parser;

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
    // A bus node needs its id before anything logs, exports or stores it.
    let config = match cli.command {
        Command::Serve => config.with_node_id(),
        _ => config,
    };
    let process = match cli.command {
        Command::Serve => Process::Bus,
        Command::Systems(SystemsCommand::Simulate(_)) => Process::Systems,
        _ => Process::Command,
    };
    // Kept to the end of main: dropping it flushes the spans still queued.
    let _telemetry = match aimbus_telemetry::init(&config, process) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("error: invalid configuration: {error}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
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
        (Command::Systems(SystemsCommand::Ping(args)), _) => ping::run(&config, &systems, &args),
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
