//! The `roost` binary: a thin CLI over the library.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "roost",
    version,
    about = "The IIS request-processing model on Linux"
)]
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
    /// Without -c: ./proxy.yaml, or the embedded default when it does not exist (as serve).
    Check {
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Run a built-in worker (the w3wp/Kestrel role).
    Worker(roost::worker::cli::WorkerArgs),
    /// Talk to a running roost's admin API (status, pools, requests, recycle, ...).
    Ctl(roost::admin::ctl::CtlArgs),
}

// mimalloc instead of glibc malloc: the proxy path allocates small objects per request and
// glibc's malloc/free were ~7% of the front's CPU (BENCHMARKS.md section 3).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The runtime `roost serve` starts on: admin, supervisor, health checks and reloads.
/// Client connections are served on the front threads (`workers`, `roost::runtime`),
/// each with a current-thread runtime of its own.
fn serve_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve {
        config: PathBuf::from("proxy.yaml"),
    }) {
        Command::Serve { config } => {
            roost::serve::init_logging();
            let rt = match serve_runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("roost: cannot start the runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            rt.block_on(roost::serve::run(&config))
        }
        Command::Check { config } => roost::ops::check::run(config),
        Command::Worker(a) => roost::worker::cli::run(a),
        Command::Ctl(a) => roost::admin::ctl::run(a),
    }
}
