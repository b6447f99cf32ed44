//! `vbet`: the vBET command line.

fn main() -> std::process::ExitCode {
    orchestrator::cli::main()
}
