//! `petdns completions SHELL` and `petdns man [COMMAND]`: generated from the flags, so they
//! cannot drift from them.

use clap::CommandFactory;

use super::{EXIT_INVALID, write_stdout};
use crate::cli::Cli;

/// The shell completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<u8> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "petdns", &mut script);
    write_stdout(&script)?;
    Ok(0)
}

/// The man page of petdns, or of one of its commands.
pub fn man(command: Option<&str>) -> anyhow::Result<u8> {
    let root = Cli::command();
    let cmd = match command {
        None => root,
        Some(name) => match root.find_subcommand(name) {
            Some(sub) => sub.clone().name(format!("petdns-{name}")),
            None => {
                eprintln!("petdns: no command {name:?}");
                return Ok(EXIT_INVALID);
            }
        },
    };
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut page)?;
    write_stdout(&page)?;
    Ok(0)
}
