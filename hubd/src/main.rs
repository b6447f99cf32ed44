//! `hubd`: an Ethernet hub for vBET labs; every frame goes to every other
//! port. It is switchd with another forwarding decision.

fn main() -> std::process::ExitCode {
    switchd::main_for(vbet_port::forward::Forwarding::Hub)
}
