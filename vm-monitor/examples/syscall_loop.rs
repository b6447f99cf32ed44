//! A syscall-heavy loop for bench/virtual-os.sh: `syscall_loop getppid N`
//! calls getppid(2) N times, `syscall_loop clock N` reads
//! CLOCK_REALTIME N times (through the vDSO unless the VM hides it);
//! prints the wall-clock and CPU (user + system) time per call: on a
//! loaded machine the CPU time is the steadier measure of a syscall's own
//! cost (it leaves out time waiting for a CPU, and also a tracer's time).

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "getppid".into());
    let n: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let start = std::time::Instant::now();
    let cpu0 = cpu_seconds();
    let mut sink = 0i64;
    match what.as_str() {
        "getppid" => {
            for _ in 0..n {
                sink = sink.wrapping_add(i64::from(nix::unistd::getppid().as_raw()));
            }
        }
        "clock" => {
            for _ in 0..n {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos())
                    .unwrap_or(0);
                sink = sink.wrapping_add(i64::from(t));
            }
        }
        other => {
            eprintln!("usage: syscall_loop getppid|clock N (not {other:?})");
            std::process::exit(2);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    println!(
        "{what} {n} calls in {secs:.3} s ({:.0} ns/call, {:.0} ns/call cpu) [{}]",
        secs * 1e9 / n as f64,
        cpu * 1e9 / n as f64,
        sink % 2
    );
}

/// User + system CPU time of this process, in seconds.
fn cpu_seconds() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let Ok(u) = getrusage(UsageWho::RUSAGE_SELF) else {
        return 0.0;
    };
    let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    tv(u.user_time()) + tv(u.system_time())
}
