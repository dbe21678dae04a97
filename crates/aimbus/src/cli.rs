use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// aimbus: the integration bus of AIM-OS.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Configuration file; keys can be overridden by AIMBUS_<SECTION>__<FIELD> variables.
    #[arg(
        long,
        global = true,
        env = "AIMBUS_CONFIG",
        default_value = "configs/aimbus.toml"
    )]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the bus: the registry actor and one supervised actor per configured system.
    Serve,
    /// Inspect the systems the configuration registers.
    #[command(subcommand)]
    Systems(SystemsCommand),
    /// Inspect and replay the dead-letter queue.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Bearer tokens for the gateway.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print an HS256 token signed with the configured secret, for local use.
    Mint {
        /// The system id the token speaks for.
        #[arg(long)]
        sub: String,
        /// readonly, publisher or admin (repeat for several).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Lifetime: a number with s, m, h or d (default: security.token_expiration_hours).
        #[arg(long)]
        ttl: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters (they stay in the queue): reason, ids, age.
    List {
        /// Dead letters shown, at most.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        output: Output,
    },
    /// Send dead letters back to the ingress, as they came in.
    Replay {
        /// Replay every dead letter (up to --limit).
        #[arg(long, conflicts_with = "id", required_unless_present = "id")]
        all: bool,
        /// Replay the dead letter with this message id (repeat for several).
        #[arg(long)]
        id: Vec<String>,
        /// Dead letters looked at, at most.
        #[arg(long, default_value_t = 10_000)]
        limit: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum SystemsCommand {
    #[command(flatten)]
    Query(QueryCommand),
    /// Run configured systems as simulated workers over RabbitMQ, until Ctrl-C.
    Simulate(SimulateArgs),
    /// Send `health_check` straight to systems' queues and wait for their workers'
    /// answers; exits 1 if any does not answer healthy (a container healthcheck).
    Ping(PingArgs),
}

/// Questions about the configured registry.
#[derive(Debug, Subcommand)]
pub enum QueryCommand {
    /// List the registered systems.
    List {
        #[command(flatten)]
        filter: ListFilter,
        #[command(flatten)]
        output: Output,
    },
    /// Show one system in full.
    Show {
        system_id: String,
        #[command(flatten)]
        output: Output,
    },
    /// Show what a system needs, in start-up order: every dependency before its dependents.
    Chain {
        system_id: String,
        #[command(flatten)]
        output: Output,
    },
}

/// Which configured systems a command is about.
#[derive(Debug, Args)]
pub struct SystemSelection {
    /// Every configured system.
    #[arg(long, conflicts_with = "system")]
    pub all: bool,
    /// This system (repeat for several).
    #[arg(long = "system", value_name = "ID")]
    pub system: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PingArgs {
    #[command(flatten)]
    pub systems: SystemSelection,
    /// How long each system has to answer, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub systems: SystemSelection,
    /// Time each answer takes, in milliseconds.
    #[arg(long, default_value_t = 5)]
    pub latency_ms: u64,
    /// Share of messages that fail (retryably), from 0.0 to 1.0.
    #[arg(long, default_value_t = 0.0)]
    pub failure_rate: f64,
    /// How the systems take their messages: from their queues over RabbitMQ, or as gRPC
    /// servers on their `grpc` interfaces (the bus then needs `grpc` first in
    /// `transports.interface_preference`, or no `amqp` interface on them).
    #[arg(long, value_enum, default_value_t = SimulatedTransport::Amqp)]
    pub transport: SimulatedTransport,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SimulatedTransport {
    Amqp,
    Grpc,
}

#[derive(Debug, Args)]
pub struct ListFilter {
    /// Only systems of this type (cmc, hhni, … or a custom type).
    #[arg(long = "type")]
    pub system_type: Option<String>,
    /// Only systems offering this capability.
    #[arg(long)]
    pub capability: Option<String>,
    /// Only systems with this interface kind (rest_api, grpc, amqp, …).
    #[arg(long)]
    pub interface: Option<String>,
}

#[derive(Debug, Args)]
pub struct Output {
    /// Print JSON for scripts instead of a table.
    #[arg(long)]
    pub json: bool,
}
