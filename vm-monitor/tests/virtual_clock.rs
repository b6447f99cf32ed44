//! The virtual clock: CLOCK_REALTIME offset and rate from the spec and at
//! run time (SetClock), seen by `date` and by programs reading
//! clock_gettime; refused with reasons where it cannot apply.

mod common;

use std::time::Instant;

use common::*;
use vbet_proto::vbet::vm::v1 as pb;

fn host_now() -> f64 {
    vm_monitor::sys::clock_seconds(libc::CLOCK_REALTIME).unwrap()
}

fn parse_lines(out: &str) -> Vec<f64> {
    out.lines()
        .map(|l| {
            l.split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap_or_else(|_| panic!("not a number: {l:?}"))
        })
        .collect()
}

#[tokio::test]
async fn a_realtime_offset_puts_date_an_hour_ahead() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec("t", &unique("vclk"), dir.path());
    spec.clock.realtime = 3600.0;
    let (mut vm, mut client) = TestVm::start(spec, dir.path()).await;

    let before = host_now();
    let out = sh(
        &mut client,
        "date +%s.%N; python3 -c 'import time; print(time.time()); print(time.clock_gettime(time.CLOCK_REALTIME))'",
    )
    .await;
    let after = host_now();
    for guest in parse_lines(&out) {
        assert!(
            guest >= before + 3600.0 - 0.5 && guest <= after + 3600.0 + 0.5,
            "guest {guest}, host {before}..{after}:\n{out}"
        );
    }
    // GetClock tells the same.
    let clock = client
        .get_clock(pb::GetClockRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(clock.enabled);
    assert!((clock.realtime_offset - 3600.0).abs() < 0.5, "{clock:?}");
    assert_eq!(clock.rate, 1.0);
    drop(client);
    assert!(vm.stop().success());
}

#[tokio::test]
async fn at_rate_one_half_two_host_seconds_are_one_guest_second() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec("t", &unique("vrate"), dir.path());
    spec.clock.rate = 0.5;
    let (mut vm, mut client) = TestVm::start(spec, dir.path()).await;

    // `date` twice around 2 s of host time (sleep's interval is the
    // host's: timers are not dilated).
    let started = Instant::now();
    let out = sh(&mut client, "date +%s.%N; sleep 2; date +%s.%N").await;
    let host = started.elapsed().as_secs_f64();
    let t = parse_lines(&out);
    let guest = t[1] - t[0];
    assert!(
        guest > 0.9 && guest < host / 2.0 + 0.1,
        "guest {guest} s for host {host} s"
    );

    // A program spinning on clock_gettime until one guest second has
    // passed by CLOCK_MONOTONIC takes about two host seconds, and sees
    // REALTIME advance by about one.
    let started = Instant::now();
    let out = sh(
        &mut client,
        "python3 -c '
import time
m0, r0, n = time.monotonic(), time.time(), 0
while time.monotonic() - m0 < 1.0:
    n += 1
print(time.time() - r0, n)'",
    )
    .await;
    let host = started.elapsed().as_secs_f64();
    let t = parse_lines(&out);
    let calls: u64 = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(host >= 1.9, "1 guest second took {host} host seconds");
    assert!((t[0] - 1.0).abs() < 0.2, "REALTIME advanced {} s", t[0]);
    assert!(calls > 100, "only {calls} clock reads");

    let clock = client
        .get_clock(pb::GetClockRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(clock.rate, 0.5);
    drop(client);
    assert!(vm.stop().success());
}

#[tokio::test]
async fn set_clock_at_run_time_and_its_refusals() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec("t", &unique("vset"), dir.path());
    spec.clock.settable = true;
    let (mut vm, mut client) = TestVm::start(spec, dir.path()).await;

    let guest = parse_lines(&sh(&mut client, "date +%s.%N").await)[0];
    assert!(
        (guest - host_now()).abs() < 1.0,
        "settable alone keeps the host's time"
    );

    let state = client
        .set_clock(pb::SetClockRequest {
            realtime_offset: Some(-86400.0),
            rate: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!((state.realtime_offset + 86400.0).abs() < 0.5, "{state:?}");
    let guest = parse_lines(&sh(&mut client, "date +%s.%N").await)[0];
    assert!(
        (guest - (host_now() - 86400.0)).abs() < 1.0,
        "date {guest} is not a day behind {}",
        host_now()
    );
    let ymd = sh(&mut client, "date -u +%F").await;
    let yesterday = chrono_like_date(host_now() - 86400.0);
    assert_eq!(ymd.trim(), yesterday);

    // The CLI sets it too.
    let out = std::process::Command::new(MONITOR)
        .args(["clock", "--api"])
        .arg(vm.spec.api_socket())
        .args(["--offset", "120"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("offset +120."),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let guest = parse_lines(&sh(&mut client, "date +%s.%N").await)[0];
    assert!((guest - (host_now() + 120.0)).abs() < 1.0);

    // Bad values are refused with their reason, and change nothing.
    for (offset, rate, why) in [
        (None, Some(0.0), "clock rate 0 is out of range"),
        (None, Some(f64::NAN), "clock rate NaN is out of range"),
        (Some(1e12), None, "realtime offset"),
    ] {
        let err = client
            .set_clock(pb::SetClockRequest {
                realtime_offset: offset,
                rate,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains(why), "{}", err.message());
    }
    let state = client
        .get_clock(pb::GetClockRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state.rate, 1.0);
    assert!((state.realtime_offset - 120.0).abs() < 0.5);

    // A VM whose spec did not ask has no mechanism: refused, with what to
    // do; its guest reads the vDSO (no clock filter: 2 seccomp filters).
    let plain = common::spec("t", &unique("vplain"), dir.path());
    let (mut other, mut other_client) = TestVm::start(plain, dir.path()).await;
    let err = other_client
        .set_clock(pb::SetClockRequest {
            realtime_offset: Some(60.0),
            rate: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains("in its spec"), "{}", err.message());
    let filters = "grep Seccomp_filters /proc/self/status | cut -f2";
    assert_eq!(sh(&mut other_client, filters).await.trim(), "2");
    assert_eq!(sh(&mut client, filters).await.trim(), "3");
    drop((client, other_client));
    assert!(other.stop().success());
    assert!(vm.stop().success());
}

/// YYYY-MM-DD (UTC) of a Unix time, by the civil-from-days algorithm.
fn chrono_like_date(t: f64) -> String {
    let days = (t / 86400.0).floor() as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[test]
fn civil_dates() {
    assert_eq!(chrono_like_date(0.0), "1970-01-01");
    assert_eq!(chrono_like_date(1_700_000_000.0), "2023-11-14");
}
