//! Syscall fault injection by rule: the rules, their triggers, and the
//! supervisor that answers the guest's seccomp user notifications.
//!
//! A VM whose spec has `faults = true` runs under one more seccomp filter
//! (see [`crate::seccomp::FAULTABLE`]) that sends the faultable syscalls to
//! the monitor as user notifications. For each, the supervisor looks for a
//! matching rule; with none (or none firing) it answers CONTINUE at once
//! and the syscall runs as usual. A firing rule fails the syscall with an
//! errno, delays it, or signals the caller. The guest init itself is never
//! faulted. VMs without `faults` have no such filter and pay nothing.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vbet_proto::vbet::vm::v1 as pb;

/// A rule that cannot be added.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RuleError {
    /// The VM was not started with `faults = true`.
    #[error("faults are off in this VM: set `faults = true` in its spec and restart it")]
    Off,
    /// Not a syscall name we know.
    #[error("unknown syscall {0:?}")]
    UnknownSyscall(String),
    /// A syscall outside the notified set.
    #[error("syscall {name} cannot be faulted; faultable: {}", .faultable.join(", "))]
    NotFaultable {
        /// The name given.
        name: String,
        /// What can be faulted.
        faultable: Vec<String>,
    },
    /// Bad errno.
    #[error("errno {0} is out of range (1..=4095)")]
    Errno(i32),
    /// Bad probability.
    #[error("probability {0} is out of range (0 < p <= 1)")]
    Probability(f64),
    /// Bad signal.
    #[error("signal {0} is out of range (1..=64)")]
    Signal(i32),
    /// No action at all.
    #[error("the rule does nothing: give an errno, a delay or a signal")]
    NoAction,
    /// No such rule.
    #[error("no fault rule {0}")]
    NoRule(u64),
}

/// One rule, with its counters.
#[derive(Debug, Clone)]
struct Rule {
    proto: pb::FaultRule,
    nr: i64,
    added: Instant,
}

/// What to do with one notified syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Verdict {
    /// Fail with this errno (0: let it run).
    pub errno: i32,
    /// Wait this long first.
    pub delay: Duration,
    /// Signal the caller.
    pub signal: i32,
}

impl Verdict {
    /// Nothing to do: CONTINUE at once.
    pub fn is_pass(&self) -> bool {
        *self == Verdict::default()
    }
}

/// The caller of a notified syscall, as far as rules care.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// `/proc/PID/comm`.
    pub comm: String,
    /// Guest PID.
    pub pid: u32,
}

/// The rules of one VM.
#[derive(Debug)]
pub struct Rules {
    enabled: bool,
    next_id: u64,
    rules: BTreeMap<u64, Rule>,
    rng: u64,
}

impl Rules {
    /// An empty rule set; `enabled` says whether the VM has the filter.
    pub fn new(enabled: bool) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Rules {
            enabled,
            next_id: 1,
            rules: BTreeMap::new(),
            rng: seed | 1,
        }
    }

    /// Whether any rule is set (the fast path when not).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The names that can be faulted in this VM.
    pub fn faultable(&self) -> Vec<String> {
        if !self.enabled {
            return Vec::new();
        }
        crate::seccomp::FAULTABLE
            .iter()
            .map(|(_, name, _)| (*name).to_owned())
            .collect()
    }

    /// Validates and adds a rule; returns it with its id.
    pub fn add(&mut self, mut rule: pb::FaultRule) -> Result<pb::FaultRule, RuleError> {
        if !self.enabled {
            return Err(RuleError::Off);
        }
        let nr = crate::seccomp::FAULTABLE
            .iter()
            .find(|(_, name, _)| *name == rule.syscall)
            .map(|(nr, _, _)| *nr)
            .ok_or_else(|| {
                if crate::seccomp::is_syscall_name(&rule.syscall) {
                    RuleError::NotFaultable {
                        name: rule.syscall.clone(),
                        faultable: self.faultable(),
                    }
                } else {
                    RuleError::UnknownSyscall(rule.syscall.clone())
                }
            })?;
        if !(0..=4095).contains(&rule.error_number) {
            return Err(RuleError::Errno(rule.error_number));
        }
        if let Some(p) = rule.probability {
            if !(p > 0.0 && p <= 1.0) {
                return Err(RuleError::Probability(p));
            }
        }
        if !(0..=64).contains(&rule.signal) {
            return Err(RuleError::Signal(rule.signal));
        }
        if rule.error_number == 0 && rule.delay_ms == 0 && rule.signal == 0 {
            return Err(RuleError::NoAction);
        }
        rule.id = self.next_id;
        rule.matched = 0;
        rule.fired = 0;
        self.next_id += 1;
        self.rules.insert(
            rule.id,
            Rule {
                proto: rule.clone(),
                nr,
                added: Instant::now(),
            },
        );
        Ok(rule)
    }

    /// Removes a rule.
    pub fn remove(&mut self, id: u64) -> Result<(), RuleError> {
        self.rules
            .remove(&id)
            .map(|_| ())
            .ok_or(RuleError::NoRule(id))
    }

    /// The rules with their counters.
    pub fn list(&self) -> Vec<pb::FaultRule> {
        self.rules.values().map(|r| r.proto.clone()).collect()
    }

    /// Whether some rule is about syscall `nr` (then the caller is worth
    /// looking up).
    pub fn wants(&self, nr: i64) -> bool {
        self.rules.values().any(|r| r.nr == nr)
    }

    fn random(&mut self) -> f64 {
        // xorshift64*: enough for fault triggers.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Decides the fate of one call of syscall `nr` by `caller`: the first
    /// matching rule (in id order) that fires wins; every matching rule
    /// counts the call.
    pub fn decide(&mut self, nr: i64, caller: &Caller, now: Instant) -> Verdict {
        let mut verdict = Verdict::default();
        let mut decided = false;
        let ids: Vec<u64> = self.rules.keys().copied().collect();
        for id in ids {
            let roll = self.random();
            let rule = self.rules.get_mut(&id).expect("listed");
            let p = &rule.proto;
            if rule.nr != nr
                || (!p.command.is_empty() && p.command != caller.comm)
                || (p.pid != 0 && p.pid != caller.pid)
            {
                continue;
            }
            if p.duration_ms > 0
                && now.duration_since(rule.added).as_millis() as u64 > p.duration_ms
            {
                continue;
            }
            rule.proto.matched += 1;
            let n = rule.proto.matched;
            let p = &rule.proto;
            let fires = n > p.after
                && (p.every == 0 || (n - p.after) % p.every == 0)
                && p.probability.is_none_or(|prob| roll < prob);
            if fires && !decided {
                decided = true;
                verdict = Verdict {
                    errno: p.error_number,
                    delay: Duration::from_millis(p.delay_ms),
                    signal: p.signal,
                };
                rule.proto.fired += 1;
            }
        }
        verdict
    }
}

/// Errno names a rule may use, with their numbers.
pub const ERRNOS: &[(&str, i32)] = &[
    ("EPERM", libc::EPERM),
    ("ENOENT", libc::ENOENT),
    ("EINTR", libc::EINTR),
    ("EIO", libc::EIO),
    ("EBADF", libc::EBADF),
    ("EAGAIN", libc::EAGAIN),
    ("ENOMEM", libc::ENOMEM),
    ("EACCES", libc::EACCES),
    ("EBUSY", libc::EBUSY),
    ("EEXIST", libc::EEXIST),
    ("EINVAL", libc::EINVAL),
    ("ENFILE", libc::ENFILE),
    ("EMFILE", libc::EMFILE),
    ("ENOSPC", libc::ENOSPC),
    ("EROFS", libc::EROFS),
    ("EPIPE", libc::EPIPE),
    ("ENOSYS", libc::ENOSYS),
    ("EADDRINUSE", libc::EADDRINUSE),
    ("EADDRNOTAVAIL", libc::EADDRNOTAVAIL),
    ("ENETDOWN", libc::ENETDOWN),
    ("ENETUNREACH", libc::ENETUNREACH),
    ("ECONNABORTED", libc::ECONNABORTED),
    ("ECONNRESET", libc::ECONNRESET),
    ("ENOBUFS", libc::ENOBUFS),
    ("ETIMEDOUT", libc::ETIMEDOUT),
    ("ECONNREFUSED", libc::ECONNREFUSED),
    ("EHOSTUNREACH", libc::EHOSTUNREACH),
    ("EDQUOT", libc::EDQUOT),
];

/// An errno from its name ("ENOBUFS", "enobufs") or number.
pub fn parse_errno(text: &str) -> Result<i32, String> {
    if let Ok(n) = text.parse::<i32>() {
        return Ok(n);
    }
    ERRNOS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(text))
        .map(|(_, n)| *n)
        .ok_or_else(|| {
            format!(
                "unknown errno {text:?}: give a number or one of {}",
                ERRNOS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// The name of an errno, or its number.
pub fn errno_name(n: i32) -> String {
    ERRNOS
        .iter()
        .find(|(_, e)| *e == n)
        .map(|(name, _)| (*name).to_owned())
        .unwrap_or_else(|| n.to_string())
}

/// The rules of a VM, shared by the API and the supervisor.
pub type SharedRules = Arc<Mutex<Rules>>;

fn caller(host_pid: u32) -> Caller {
    let comm = std::fs::read_to_string(format!("/proc/{host_pid}/comm"))
        .map(|s| s.trim_end().to_owned())
        .unwrap_or_default();
    // The last NSpid field is the PID inside the VM's PID namespace.
    let pid = std::fs::read_to_string(format!("/proc/{host_pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("NSpid:"))
                .and_then(|l| l.split_whitespace().last().map(str::to_owned))
        })
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    Caller { comm, pid }
}

/// Starts the supervisor: a thread of its own that answers the
/// notifications of `listener` until every guest process is gone. It
/// blocks in the kernel between notifications (no async runtime in the
/// way: a round trip through a reactor costs several times more);
/// delayed answers are handed to the runtime's timers. `init_pid` (host
/// PID) is never faulted. Must be called from within the runtime.
pub fn supervise(listener: OwnedFd, rules: SharedRules, init_pid: u32) -> std::io::Result<()> {
    let runtime = tokio::runtime::Handle::current();
    if let Err(e) = crate::sys::notif_set_sync_wakeup(&listener) {
        tracing::debug!("fault supervisor: no synchronous wake-ups: {e}");
    }
    let listener = Arc::new(listener);
    std::thread::Builder::new()
        .name("vbet-faults".into())
        .spawn(move || serve(&listener, &rules, init_pid, &runtime))?;
    Ok(())
}

fn serve(
    listener: &Arc<OwnedFd>,
    rules: &SharedRules,
    init_pid: u32,
    runtime: &tokio::runtime::Handle,
) {
    loop {
        // POLLHUP: every guest process using the filter is gone.
        if crate::sys::poll_wait(listener.as_ref()).is_err() {
            return;
        }
        let notif = match crate::sys::notif_recv(listener.as_ref()) {
            Ok(n) => n,
            // The caller died meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => {
                tracing::error!("fault supervisor: receiving: {e}");
                return;
            }
        };
        let nr = i64::from(notif.data.nr);
        let verdict = {
            let wanted = {
                let r = rules.lock().expect("not poisoned");
                notif.pid != init_pid && r.wants(nr)
            };
            if wanted {
                let who = caller(notif.pid);
                let mut r = rules.lock().expect("not poisoned");
                r.decide(nr, &who, Instant::now())
            } else {
                Verdict::default()
            }
        };
        if verdict.delay.is_zero() {
            answer(listener.as_ref(), notif.id, notif.pid, verdict);
        } else {
            let l = listener.clone();
            runtime.spawn(async move {
                tokio::time::sleep(verdict.delay).await;
                answer(l.as_ref(), notif.id, notif.pid, verdict);
            });
        }
    }
}

fn answer(listener: &impl AsRawFd, id: u64, pid: u32, v: Verdict) {
    if v.signal != 0 {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::try_from(v.signal).ok(),
        );
    }
    // ENOENT: the caller is gone (killed meanwhile); nothing to answer.
    let _ = crate::sys::notif_send(listener, id, v.errno);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(syscall: &str) -> pb::FaultRule {
        pb::FaultRule {
            syscall: syscall.into(),
            error_number: libc::EIO,
            ..Default::default()
        }
    }

    fn nr(name: &str) -> i64 {
        crate::seccomp::FAULTABLE
            .iter()
            .find(|(_, n, _)| *n == name)
            .unwrap()
            .0
    }

    #[test]
    fn errno_names() {
        assert_eq!(parse_errno("ENOBUFS"), Ok(libc::ENOBUFS));
        assert_eq!(parse_errno("econnrefused"), Ok(libc::ECONNREFUSED));
        assert_eq!(parse_errno("5"), Ok(5));
        assert!(parse_errno("EWHAT").is_err());
        assert_eq!(errno_name(libc::EIO), "EIO");
    }

    #[test]
    fn bad_rules_are_refused() {
        let mut r = Rules::new(true);
        assert!(matches!(
            r.add(rule("nosuchcall")),
            Err(RuleError::UnknownSyscall(_))
        ));
        assert!(matches!(
            r.add(rule("getppid")),
            Err(RuleError::NotFaultable { .. })
        ));
        let mut bad = rule("read");
        bad.error_number = 5000;
        assert_eq!(r.add(bad), Err(RuleError::Errno(5000)));
        let mut bad = rule("read");
        bad.probability = Some(1.5);
        assert_eq!(r.add(bad), Err(RuleError::Probability(1.5)));
        let mut bad = rule("read");
        bad.error_number = 0;
        assert_eq!(r.add(bad), Err(RuleError::NoAction));
        assert_eq!(Rules::new(false).add(rule("read")), Err(RuleError::Off));
        assert_eq!(r.remove(7), Err(RuleError::NoRule(7)));
    }

    #[test]
    fn every_third_after_and_filters() {
        let mut r = Rules::new(true);
        let mut x = rule("connect");
        x.every = 3;
        let id = r.add(x).unwrap().id;
        let who = Caller::default();
        let fired: Vec<bool> = (0..6)
            .map(|_| !r.decide(nr("connect"), &who, Instant::now()).is_pass())
            .collect();
        assert_eq!(fired, [false, false, true, false, false, true]);
        assert!(r.decide(nr("openat"), &who, Instant::now()).is_pass());
        r.remove(id).unwrap();
        assert!(r.is_empty());

        let mut x = rule("openat");
        x.command = "cat".into();
        x.after = 1;
        r.add(x).unwrap();
        let cat = Caller {
            comm: "cat".into(),
            pid: 5,
        };
        let head = Caller {
            comm: "head".into(),
            pid: 6,
        };
        assert!(r.decide(nr("openat"), &cat, Instant::now()).is_pass());
        assert_eq!(
            r.decide(nr("openat"), &cat, Instant::now()).errno,
            libc::EIO
        );
        assert!(r.decide(nr("openat"), &head, Instant::now()).is_pass());
        assert_eq!(r.list()[0].matched, 2);
        assert_eq!(r.list()[0].fired, 1);
    }

    #[test]
    fn probability_and_duration() {
        let mut r = Rules::new(true);
        let mut x = rule("sendto");
        x.probability = Some(0.3);
        r.add(x).unwrap();
        let who = Caller::default();
        let n = (0..10_000)
            .filter(|_| !r.decide(nr("sendto"), &who, Instant::now()).is_pass())
            .count();
        assert!((2_500..3_500).contains(&n), "{n}");

        let mut r = Rules::new(true);
        let mut x = rule("write");
        x.duration_ms = 1000;
        r.add(x).unwrap();
        let now = Instant::now();
        assert!(!r.decide(nr("write"), &who, now).is_pass());
        assert!(
            r.decide(nr("write"), &who, now + Duration::from_secs(2))
                .is_pass()
        );
    }
}
