//! The `shiftcover` binary: command-line parsing only; see the library for the commands.

fn main() -> std::process::ExitCode {
    shiftcover::cli::main()
}
