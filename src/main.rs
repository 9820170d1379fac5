use std::process::ExitCode;

fn main() -> ExitCode {
    tickring::cli::main()
}
