//! The `roost` binary: a thin CLI over the library.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "roost", version, about = "The IIS request-processing model on Linux")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the front (the default): listeners, pools, supervisor, admin API.
    Serve {
        /// Configuration file; the embedded default is used when it does not exist.
        #[arg(short, long, default_value = "proxy.yaml")]
        config: PathBuf,
    },
    /// Validate a configuration file: print every problem, exit 0 valid / 2 invalid.
    Check {
        #[arg(short, long, default_value = "proxy.yaml")]
        config: PathBuf,
    },
    /// Run a built-in worker (the w3wp/Kestrel role).
    Worker(roost::worker::cli::WorkerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve {
        config: PathBuf::from("proxy.yaml"),
    }) {
        Command::Serve { config } => {
            let _ = config;
            ExitCode::SUCCESS
        }
        Command::Check { config } => {
            let _ = config;
            ExitCode::SUCCESS
        }
        Command::Worker(a) => roost::worker::cli::run(a),
    }
}
