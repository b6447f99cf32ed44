//! A VM's virtual clock: CLOCK_REALTIME with an offset and a rate, and
//! the monotonic clocks at the same rate. Pure arithmetic over host
//! readings (the tracer applies it at the guest's clock syscalls; see
//! `crate::tracer`).
//!
//! guest = base_guest + (host_now − base_host) × rate, per clock family;
//! every change rebases at the current instant, so the monotonic clocks
//! never jump and REALTIME jumps only when an offset is set.

/// Host clock readings at one instant, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostNow {
    /// CLOCK_REALTIME.
    pub realtime: i128,
    /// CLOCK_MONOTONIC.
    pub monotonic: i128,
    /// CLOCK_BOOTTIME.
    pub boottime: i128,
}

impl HostNow {
    /// Reads the host's clocks.
    pub fn read() -> Self {
        let ns = |clock| crate::sys::clock_nanos(clock).unwrap_or(0);
        HostNow {
            realtime: ns(libc::CLOCK_REALTIME),
            monotonic: ns(libc::CLOCK_MONOTONIC),
            boottime: ns(libc::CLOCK_BOOTTIME),
        }
    }
}

/// A clock family the guest can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// CLOCK_REALTIME, _COARSE, _ALARM.
    Realtime,
    /// CLOCK_MONOTONIC, _RAW, _COARSE.
    Monotonic,
    /// CLOCK_BOOTTIME, _ALARM.
    Boottime,
}

impl Family {
    /// The family of a clock id; None for the clocks left to the kernel
    /// (CPU-time clocks, TAI).
    pub fn of(clock_id: i32) -> Option<Family> {
        match clock_id {
            libc::CLOCK_REALTIME | libc::CLOCK_REALTIME_COARSE | libc::CLOCK_REALTIME_ALARM => {
                Some(Family::Realtime)
            }
            libc::CLOCK_MONOTONIC | libc::CLOCK_MONOTONIC_RAW | libc::CLOCK_MONOTONIC_COARSE => {
                Some(Family::Monotonic)
            }
            libc::CLOCK_BOOTTIME | libc::CLOCK_BOOTTIME_ALARM => Some(Family::Boottime),
            _ => None,
        }
    }
}

/// The lowest and highest rates accepted.
pub const RATE_RANGE: (f64, f64) = (0.001, 1000.0);

/// The largest REALTIME offset accepted, in seconds (about 30 years).
pub const MAX_OFFSET: f64 = 1e9;

/// A rejected clock setting.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ClockError {
    /// Rate out of range.
    #[error("clock rate {0} is out of range ({lo}..={hi})", lo = RATE_RANGE.0, hi = RATE_RANGE.1)]
    Rate(f64),
    /// Offset out of range.
    #[error("clock realtime offset {0} s is out of range (±{MAX_OFFSET} s)")]
    Offset(f64),
}

/// Checks a rate.
pub fn check_rate(rate: f64) -> Result<(), ClockError> {
    if rate.is_finite() && rate >= RATE_RANGE.0 && rate <= RATE_RANGE.1 {
        Ok(())
    } else {
        Err(ClockError::Rate(rate))
    }
}

/// Checks a REALTIME offset.
pub fn check_offset(offset: f64) -> Result<(), ClockError> {
    if offset.is_finite() && offset.abs() <= MAX_OFFSET {
        Ok(())
    } else {
        Err(ClockError::Offset(offset))
    }
}

/// One VM's virtual clock.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualClock {
    rate: f64,
    base_host: HostNow,
    base_guest: HostNow,
}

fn secs_to_ns(s: f64) -> i128 {
    (s * 1e9).round() as i128
}

impl VirtualClock {
    /// A clock starting at `now`: REALTIME ahead by `realtime_offset`,
    /// MONOTONIC and BOOTTIME by the time namespace's offsets (which the
    /// kernel would add), all advancing at `rate`.
    pub fn new(
        now: HostNow,
        realtime_offset: f64,
        monotonic_offset: f64,
        boottime_offset: f64,
        rate: f64,
    ) -> Self {
        VirtualClock {
            rate,
            base_host: now,
            base_guest: HostNow {
                realtime: now.realtime + secs_to_ns(realtime_offset),
                monotonic: now.monotonic + secs_to_ns(monotonic_offset),
                boottime: now.boottime + secs_to_ns(boottime_offset),
            },
        }
    }

    /// The rate.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    fn scale(&self, elapsed: i128) -> i128 {
        if self.rate == 1.0 {
            elapsed
        } else {
            (elapsed as f64 * self.rate) as i128
        }
    }

    /// The guest's clocks at host instant `now`.
    pub fn guest(&self, now: HostNow) -> HostNow {
        HostNow {
            realtime: self.base_guest.realtime + self.scale(now.realtime - self.base_host.realtime),
            monotonic: self.base_guest.monotonic
                + self.scale(now.monotonic - self.base_host.monotonic),
            boottime: self.base_guest.boottime + self.scale(now.boottime - self.base_host.boottime),
        }
    }

    /// One family of the guest's clocks at `now`, in nanoseconds.
    pub fn read(&self, family: Family, now: HostNow) -> i128 {
        let g = self.guest(now);
        match family {
            Family::Realtime => g.realtime,
            Family::Monotonic => g.monotonic,
            Family::Boottime => g.boottime,
        }
    }

    /// Changes the clock at `now`: REALTIME jumps to host + `offset` if
    /// given (else continues), the rate changes if given; the monotonic
    /// clocks continue without a jump.
    pub fn set(
        &mut self,
        now: HostNow,
        offset: Option<f64>,
        rate: Option<f64>,
    ) -> Result<(), ClockError> {
        if let Some(r) = rate {
            check_rate(r)?;
        }
        if let Some(o) = offset {
            check_offset(o)?;
        }
        let mut guest = self.guest(now);
        if let Some(o) = offset {
            guest.realtime = now.realtime + secs_to_ns(o);
        }
        self.base_host = now;
        self.base_guest = guest;
        if let Some(r) = rate {
            self.rate = r;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i128) -> HostNow {
        HostNow {
            realtime: 1_700_000_000_000_000_000 + s * 1_000_000_000,
            monotonic: 1000 * 1_000_000_000 + s * 1_000_000_000,
            boottime: 2000 * 1_000_000_000 + s * 1_000_000_000,
        }
    }

    #[test]
    fn offset_and_rate() {
        let c = VirtualClock::new(at(0), 3600.0, 10.0, 0.0, 0.5);
        let g = c.guest(at(10));
        assert_eq!(
            g.realtime,
            at(0).realtime + 3600 * 1_000_000_000 + 5_000_000_000
        );
        assert_eq!(
            g.monotonic,
            at(0).monotonic + 10 * 1_000_000_000 + 5_000_000_000
        );
        assert_eq!(
            c.read(Family::Boottime, at(4)),
            at(0).boottime + 2_000_000_000
        );
    }

    #[test]
    fn changes_rebase_without_monotonic_jumps() {
        let mut c = VirtualClock::new(at(0), 0.0, 0.0, 0.0, 1.0);
        let before = c.guest(at(10));
        c.set(at(10), Some(-60.0), Some(2.0)).unwrap();
        let after = c.guest(at(10));
        assert_eq!(before.monotonic, after.monotonic);
        assert_eq!(after.realtime, at(10).realtime - 60_000_000_000);
        assert_eq!(c.guest(at(11)).monotonic, before.monotonic + 2_000_000_000);
        // Rate only: REALTIME continues from where it was.
        c.set(at(11), None, Some(1.0)).unwrap();
        assert_eq!(
            c.guest(at(11)).realtime,
            at(10).realtime - 60_000_000_000 + 2_000_000_000
        );
    }

    #[test]
    fn bad_values_are_refused_with_their_reason() {
        let mut c = VirtualClock::new(at(0), 0.0, 0.0, 0.0, 1.0);
        assert_eq!(c.set(at(1), None, Some(0.0)), Err(ClockError::Rate(0.0)));
        assert!(c.set(at(1), None, Some(f64::NAN)).is_err());
        assert_eq!(c.set(at(1), Some(2e9), None), Err(ClockError::Offset(2e9)));
        assert!(ClockError::Rate(0.0).to_string().contains("0.001..=1000"));
        assert_eq!(c.rate(), 1.0);
        assert_eq!(Family::of(libc::CLOCK_PROCESS_CPUTIME_ID), None);
        assert_eq!(
            Family::of(libc::CLOCK_REALTIME_COARSE),
            Some(Family::Realtime)
        );
    }
}
