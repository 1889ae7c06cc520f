//! One module per verb of `petdns`, each a function from its validated configuration to an
//! exit code; [`run`] picks the verb. What `serve` and `controller` share (running parts
//! side by side, shutting them down in order) is in `parts.rs`.

use std::io::Write;

use crate::cli::{Cli, Command};
use crate::config::{CheckConfig, ConfigError, ControllerConfig, ServeConfig};

mod check;
mod controller;
mod crd;
mod docs;
mod explain;
mod parts;
mod serve;

pub use check::check;
pub use crd::crd_yaml;

/// Process exit codes.
pub const EXIT_INVALID: u8 = 2;
pub const EXIT_ABORTED: u8 = 130;

/// Errors that map to a particular exit code.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("aborted by a second signal during shutdown")]
    Aborted,
}

/// The exit code for an error returned by [`run`].
pub fn exit_code(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<AppError>() {
        Some(AppError::Config(_)) => EXIT_INVALID,
        Some(AppError::Aborted) => EXIT_ABORTED,
        None => 1,
    }
}

/// Runs the command `cli` names; the result is the process's exit code.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Serve(args) => {
            let cfg = ServeConfig::from_args(&args).map_err(AppError::from)?;
            serve::serve(cfg).await.map(|()| 0)
        }
        Command::Check(args) => {
            let cfg = CheckConfig::from_args(&args).map_err(AppError::from)?;
            Ok(check(&cfg, &mut std::io::stdout().lock()))
        }
        Command::Explain(args) => explain::explain(&args).await,
        Command::Controller(args) => {
            let cfg = ControllerConfig::from_args(&args).map_err(AppError::from)?;
            controller::controller(cfg).await.map(|()| 0)
        }
        Command::Completions { shell } => docs::completions(shell),
        Command::Man { command } => docs::man(command.as_deref()),
        Command::Crd => {
            print!("{}", crd_yaml()?);
            Ok(0)
        }
    }
}

/// Writes to stdout; a closed pipe (`petdns man | head`) is not an error.
fn write_stdout(bytes: &[u8]) -> std::io::Result<()> {
    match std::io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
