//! The `warden` binary: the server and its command line.

// mimalloc: the decision path allocates many small, short-lived values (the answer, the
// records, the plugins' inputs), which it serves faster than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    warden::cli::main()
}
