//! `cargo run -p migration -- <command>`; see [`migration::cli`].

fn main() -> std::process::ExitCode {
    migration::cli::main()
}
