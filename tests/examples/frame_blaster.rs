//! Small-frame forwarding rate of a switch: plugs a sender and a receiver
//! port into the switch at CTL with our own client side of the port
//! protocol, lets the switch learn both MACs (one frame each way), then
//! blasts unicast frames from the sender to the receiver for SECONDS with
//! non-blocking sends and counts what arrives.
//!
//! Works against any switch that speaks the port protocol version 3:
//! switchd, hubd, `vde_switch`, `uml_switch` (then run it in the switch's
//! network namespace: `uml_switch` replies with an abstract address).
//!
//! Usage: `frame_blaster CTL SECONDS [FRAME_BYTES]` (CTL the control
//! socket or its directory; FRAME_BYTES 64 by default, 14 to 1514).
//!
//! A send that would block (`EAGAIN`) is counted, and the sender then
//! waits up to 1 ms for the socket to become writable rather than spin,
//! so that on a small machine the switch and the receiver keep their
//! CPU. The last line is machine-readable:
//! `RESULT frames_per_s=… sent=… eagain=… send_errors=… received=… seconds=…`.
#![deny(unsafe_code)]

use std::io::ErrorKind;
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use vbet_port::client::connect;

/// The sender's MAC (locally administered).
const SENDER_MAC: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 1];
/// The receiver's MAC (locally administered).
const RECEIVER_MAC: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 2];
/// An EtherType for local experiments (IEEE 802 local experimental 1).
const ETHERTYPE: [u8; 2] = [0x88, 0xb5];
/// How long the learning frames may take to cross the switch.
const LEARN_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the receiver waits for stragglers after the blast.
const DRAIN: Duration = Duration::from_millis(300);

/// A frame from `src` to `dst` of `len` bytes, payload zeroed.
fn frame(dst: [u8; 6], src: [u8; 6], len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&ETHERTYPE);
    f
}

/// Whether `f` is one of our frames from `src` to `dst`.
fn is_ours(f: &[u8], dst: [u8; 6], src: [u8; 6]) -> bool {
    f.len() >= 14 && f[0..6] == dst && f[6..12] == src && f[12..14] == ETHERTYPE
}

/// Waits until `sock` receives one of our frames from `src` to `dst`.
fn expect_frame(sock: &UnixDatagram, dst: [u8; 6], src: [u8; 6]) -> anyhow::Result<()> {
    let deadline = Instant::now() + LEARN_TIMEOUT;
    let mut buf = [0u8; 2048];
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    while Instant::now() < deadline {
        match sock.recv(&mut buf) {
            Ok(n) if is_ours(&buf[..n], dst, src) => return Ok(()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e).context("receiving a learning frame"),
        }
    }
    bail!("the switch did not forward a learning frame within {LEARN_TIMEOUT:?}")
}

/// What the sender did.
#[derive(Debug, Default)]
struct Sent {
    frames: u64,
    eagain: u64,
    errors: u64,
    seconds: f64,
}

/// Sends `frame` on `sock` without blocking until `duration` has passed.
fn blast(sock: &UnixDatagram, frame: &[u8], duration: Duration) -> anyhow::Result<Sent> {
    sock.set_nonblocking(true)?;
    let mut sent = Sent::default();
    let start = Instant::now();
    let deadline = start + duration;
    let mut i: u64 = 0;
    loop {
        i += 1;
        if i % 64 == 0 && Instant::now() >= deadline {
            break;
        }
        match sock.send(frame) {
            Ok(_) => sent.frames += 1,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                sent.eagain += 1;
                let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLOUT)];
                let _ = poll(&mut fds, PollTimeout::from(1u8));
                if Instant::now() >= deadline {
                    break;
                }
            }
            Err(_) => sent.errors += 1,
        }
    }
    sent.seconds = start.elapsed().as_secs_f64();
    Ok(sent)
}

/// Counts our frames arriving on `sock` until `stop` is set and the queue
/// is empty; `in_window` is the count when `window_over` became set.
fn count_frames(
    sock: &UnixDatagram,
    stop: &AtomicBool,
    window_over: &AtomicBool,
    in_window: &AtomicU64,
) -> anyhow::Result<u64> {
    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    let mut buf = [0u8; 2048];
    let mut count = 0u64;
    let mut window_open = true;
    loop {
        if window_open && window_over.load(Ordering::Relaxed) {
            window_open = false;
            in_window.store(count, Ordering::Relaxed);
        }
        match sock.recv(&mut buf) {
            Ok(n) if is_ours(&buf[..n], RECEIVER_MAC, SENDER_MAC) => count += 1,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
            Err(e) => return Err(e).context("receiving frames"),
        }
    }
    if window_open {
        in_window.store(count, Ordering::Relaxed);
    }
    Ok(count)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [ctl, seconds, rest @ ..] = args.as_slice() else {
        bail!("usage: frame_blaster CTL SECONDS [FRAME_BYTES]");
    };
    let ctl = PathBuf::from(ctl);
    let seconds: f64 = seconds.parse().context("SECONDS must be a number")?;
    let size: usize = match rest.first() {
        Some(s) => s.parse().context("FRAME_BYTES must be a number")?,
        None => 64,
    };
    if !(14..=1514).contains(&size) {
        bail!("FRAME_BYTES must be between 14 and 1514, not {size}");
    }

    let sender = connect(&ctl).with_context(|| format!("plugging the sender into {ctl:?}"))?;
    let receiver = connect(&ctl).with_context(|| format!("plugging the receiver into {ctl:?}"))?;

    // One frame each way: each one floods (unknown destination) to the
    // other port, and the switch learns both source MACs.
    receiver
        .data
        .send(&frame(SENDER_MAC, RECEIVER_MAC, size))
        .context("sending the receiver's learning frame")?;
    expect_frame(&sender.data, SENDER_MAC, RECEIVER_MAC).context("sender port")?;
    sender
        .data
        .send(&frame(RECEIVER_MAC, SENDER_MAC, size))
        .context("sending the sender's learning frame")?;
    expect_frame(&receiver.data, RECEIVER_MAC, SENDER_MAC).context("receiver port")?;

    let stop = Arc::new(AtomicBool::new(false));
    let window_over = Arc::new(AtomicBool::new(false));
    let in_window = Arc::new(AtomicU64::new(0));
    let rx = receiver.data.try_clone()?;
    let counter = {
        let (stop, window_over, in_window) = (stop.clone(), window_over.clone(), in_window.clone());
        std::thread::spawn(move || count_frames(&rx, &stop, &window_over, &in_window))
    };

    let blasted = blast(
        &sender.data,
        &frame(RECEIVER_MAC, SENDER_MAC, size),
        Duration::from_secs_f64(seconds),
    );
    window_over.store(true, Ordering::Relaxed);
    std::thread::sleep(DRAIN);
    stop.store(true, Ordering::Relaxed);
    let received = counter
        .join()
        .map_err(|_| anyhow::anyhow!("the receiver thread panicked"))??;
    let sent = blasted?;
    let in_window = in_window.load(Ordering::Relaxed);
    let rate = in_window as f64 / sent.seconds;

    println!(
        "{size}-byte frames through {}: {rate:.0} frames/s received \
         ({received} of {} sent in {:.2} s, {:.1}% lost; {} EAGAIN, {} other send errors)",
        ctl.display(),
        sent.frames,
        sent.seconds,
        100.0 * sent.frames.saturating_sub(received) as f64 / sent.frames.max(1) as f64,
        sent.eagain,
        sent.errors,
    );
    println!(
        "RESULT frames_per_s={rate:.0} sent={} eagain={} send_errors={} received={received} seconds={:.3}",
        sent.frames, sent.eagain, sent.errors, sent.seconds
    );
    Ok(())
}
