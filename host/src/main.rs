//! The `warden` binary: the server and its command line.

fn main() -> std::process::ExitCode {
    warden::cli::main()
}
