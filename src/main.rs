use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// mimalloc returns freed memory to the system: the parse of a large manifest set is freed
/// once the index is built, and the resident size drops back to what the index holds.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = petdns::cli::Cli::parse();
    petdns::telemetry::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("petdns: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(petdns::app::run(cli));
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(code) => code.into(),
        Err(e) => {
            eprintln!("petdns: {e:#}");
            petdns::app::exit_code(&e).into()
        }
    }
}
