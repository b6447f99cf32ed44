//! Clock offsets from the spec: the guest's CLOCK_MONOTONIC and
//! CLOCK_BOOTTIME are shifted (time namespace); CLOCK_REALTIME is the
//! host's.

mod common;

use common::*;

fn host_clock(clock: libc::clockid_t) -> f64 {
    vm_monitor::sys::clock_seconds(clock).unwrap()
}

#[tokio::test]
async fn the_guest_clocks_run_ahead_by_the_spec_offsets() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = unique("clk");
    let mut spec = spec("t", &name, dir.path());
    spec.clock.monotonic = 3600.0;
    spec.clock.boottime = 864_000.0;
    let (mut vm, mut client) = TestVm::start(spec, dir.path()).await;

    let before = host_clock(libc::CLOCK_BOOTTIME);
    let out = sh(&mut client, "cat /proc/uptime").await;
    let after = host_clock(libc::CLOCK_BOOTTIME);
    let uptime: f64 = out.split_whitespace().next().unwrap().parse().unwrap();
    assert!(
        uptime >= before + 864_000.0 - 0.1 && uptime <= after + 864_000.0 + 0.1,
        "guest uptime {uptime}, host {before}..{after}"
    );

    // CLOCK_MONOTONIC, read through the vDSO by a program (date's
    // REALTIME beside it is the host's).
    let before = host_clock(libc::CLOCK_MONOTONIC);
    let out = sh(
        &mut client,
        "python3 -c 'import time; print(time.clock_gettime(time.CLOCK_MONOTONIC))'; date +%s",
    )
    .await;
    let after = host_clock(libc::CLOCK_MONOTONIC);
    let mut lines = out.lines();
    let monotonic: f64 = lines.next().unwrap().parse().unwrap();
    let realtime: f64 = lines.next().unwrap().parse().unwrap();
    assert!(
        monotonic >= before + 3600.0 - 0.1 && monotonic <= after + 3600.0 + 0.1,
        "guest monotonic {monotonic}, host {before}..{after}"
    );
    let host_real = host_clock(libc::CLOCK_REALTIME);
    assert!(
        (realtime - host_real).abs() < 5.0,
        "{realtime} vs {host_real}"
    );
    vm.stop();
}

#[tokio::test]
async fn an_impossible_offset_fails_the_boot_with_its_reason() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec("t", &unique("clkb"), dir.path());
    // Further back than the host has been up.
    spec.clock.boottime = -900_000_000.0;
    let out = run_to_end(&spec, dir.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("clock offsets"), "{err}");
    assert_no_leftovers(&spec, &dir.path().join(format!("{}.toml", spec.name)));
}
