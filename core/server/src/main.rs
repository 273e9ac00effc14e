//! The `crm` command.

fn main() -> std::process::ExitCode {
    server::cli::main()
}
