//! `switchd`: a learning Ethernet switch for vBET labs.

fn main() -> std::process::ExitCode {
    switchd::main_for(vbet_port::forward::Forwarding::Switch)
}
