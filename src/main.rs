//! The `reconcile` binary: a thin shell over the library's CLI.

fn main() -> std::process::ExitCode {
    reconcile::cli::main()
}
