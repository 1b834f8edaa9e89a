//! `cargo run -p api [-- --migrate]`: serves the API on `API_ADDR` (default 127.0.0.1:3000)
//! over `DATABASE_URL` (default: the embedded SQLite file `data/db.sqlite`) until Ctrl-C or
//! SIGTERM. See `api --help` for every setting (each also an environment variable).

use std::process::ExitCode;

use api::Invocation;

#[tokio::main]
async fn main() -> ExitCode {
    // `.env` first: it may set DATABASE_URL, API_ADDR, RUST_LOG, ...
    let dotenv = service::config::load_dotenv();
    api::init_tracing();
    if let Err(message) = dotenv {
        report_error(&message);
        return ExitCode::FAILURE;
    }
    let config = match Invocation::from_env(std::env::args().skip(1)) {
        Ok(Invocation::Serve(config)) => config,
        Ok(Invocation::Print(text)) => {
            print_text(&text);
            return ExitCode::SUCCESS;
        }
        Err(api::ConfigError::CommandLine { message, .. }) => {
            // clap's message: it starts with `error:` and ends with the usage line.
            report(&message);
            return ExitCode::from(2);
        }
        Err(err) => {
            report_error(&err);
            return ExitCode::from(2);
        }
    };
    match api::run(*config, api::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report_error(&err);
            ExitCode::FAILURE
        }
    }
}

/// Printed directly rather than through `tracing`, so no `RUST_LOG` filter can hide why the
/// server did not start.
fn report_error(err: &dyn std::fmt::Display) {
    report(&format!("error: {err}"));
}

#[allow(clippy::print_stderr)]
fn report(message: &str) {
    eprintln!("{}", message.trim_end());
}

#[allow(clippy::print_stdout)] // the help text is the command's output
fn print_text(text: &str) {
    println!("{}", text.trim_end());
}
