//! Impairments of one direction of a port, with the semantics of VDE's
//! wirefilter and Linux's netem: delay with jitter (never reordering),
//! loss, duplication, corruption and a rate limit.
//!
//! [`Shaper`] is the pure part: given a frame's length and arrival time it
//! says whether the frame is dropped, and when each copy leaves. The async
//! queue that holds frames until then is in [`crate::link`].

use std::time::{Duration, Instant};

use rand::RngExt;

use crate::frame::HEADER_LEN;

/// Default number of frames an impaired direction holds before dropping.
pub const DEFAULT_QUEUE_FRAMES: usize = 1000;

/// The impairments of one direction. `Default` is "none".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Impairment {
    /// Fixed delay.
    pub delay: Duration,
    /// Random extra delay, uniform in [-jitter, +jitter].
    pub jitter: Duration,
    /// Probability of dropping a frame, 0.0–1.0.
    pub loss: f64,
    /// Probability of sending a frame twice, 0.0–1.0.
    pub duplicate: f64,
    /// Probability of flipping one bit of a frame's payload, 0.0–1.0.
    pub corrupt: f64,
    /// Bandwidth limit in bits per second; 0 = none.
    pub rate_bps: u64,
    /// Frames held for delay or rate before further ones drop; 0 = default.
    pub queue_frames: usize,
}

/// An impairment value out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BadImpairment {
    /// A percentage outside 0–100.
    #[error("{what} of {value}% is not a percentage between 0 and 100")]
    Percent {
        /// Which field.
        what: &'static str,
        /// The value given.
        value: f64,
    },
}

impl Impairment {
    /// True when nothing is impaired, so frames can take the fast path.
    pub fn is_none(&self) -> bool {
        self.delay.is_zero()
            && self.jitter.is_zero()
            && self.loss <= 0.0
            && self.duplicate <= 0.0
            && self.corrupt <= 0.0
            && self.rate_bps == 0
    }

    /// The number of frames the queue holds.
    pub fn queue_limit(&self) -> usize {
        if self.queue_frames == 0 {
            DEFAULT_QUEUE_FRAMES
        } else {
            self.queue_frames
        }
    }

    /// Reads the API's message, checking every percentage.
    pub fn from_proto(p: &vbet_proto::vbet::port::v1::Impairment) -> Result<Self, BadImpairment> {
        let percent = |what: &'static str, value: f64| {
            if (0.0..=100.0).contains(&value) {
                Ok(value / 100.0)
            } else {
                Err(BadImpairment::Percent { what, value })
            }
        };
        Ok(Impairment {
            delay: Duration::from_micros(p.delay_us),
            jitter: Duration::from_micros(p.jitter_us),
            loss: percent("loss", p.loss_percent)?,
            duplicate: percent("duplicate", p.duplicate_percent)?,
            corrupt: percent("corrupt", p.corrupt_percent)?,
            rate_bps: p.rate_bps,
            queue_frames: p.queue_frames as usize,
        })
    }

    /// The API's message for these impairments.
    pub fn to_proto(&self) -> vbet_proto::vbet::port::v1::Impairment {
        vbet_proto::vbet::port::v1::Impairment {
            delay_us: self.delay.as_micros() as u64,
            jitter_us: self.jitter.as_micros() as u64,
            loss_percent: self.loss * 100.0,
            duplicate_percent: self.duplicate * 100.0,
            corrupt_percent: self.corrupt * 100.0,
            rate_bps: self.rate_bps,
            queue_frames: self.queue_frames as u32,
        }
    }
}

/// What happens to one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Dropped by the loss impairment.
    Lost,
    /// Sent at `at`; `twice` if duplicated; `flip_bit` names the bit to flip
    /// (counted from the end of the Ethernet header) if corrupted.
    Send {
        /// When the frame (and its duplicate) leaves.
        at: Instant,
        /// Whether a second copy follows.
        twice: bool,
        /// The payload bit to flip, if corrupted.
        flip_bit: Option<usize>,
    },
}

/// The state of one impaired direction: when the link is next free (rate)
/// and when the last frame left (so jitter never reorders).
#[derive(Debug)]
pub struct Shaper {
    impairment: Impairment,
    link_free_at: Option<Instant>,
    last_departure: Option<Instant>,
}

impl Shaper {
    /// A shaper applying `impairment`.
    pub fn new(impairment: Impairment) -> Shaper {
        Shaper {
            impairment,
            link_free_at: None,
            last_departure: None,
        }
    }

    /// The impairment applied.
    pub fn impairment(&self) -> &Impairment {
        &self.impairment
    }

    /// Decides the fate of a frame of `len` bytes arriving at `now`.
    pub fn schedule<R: RngExt>(&mut self, len: usize, now: Instant, rng: &mut R) -> Verdict {
        let imp = &self.impairment;
        if imp.loss > 0.0 && rng.random_bool(imp.loss.min(1.0)) {
            return Verdict::Lost;
        }
        // Serialisation at the rate limit: the frame starts when the link
        // is free and occupies it for len*8/rate seconds.
        let mut at = now;
        let bits = (len as u64) * 8;
        if let Some(nanos) = bits.saturating_mul(1_000_000_000).checked_div(imp.rate_bps) {
            let start = self.link_free_at.map_or(now, |free| free.max(now));
            let busy = Duration::from_nanos(nanos);
            self.link_free_at = Some(start + busy);
            at = start + busy;
        }
        at += imp.delay;
        if !imp.jitter.is_zero() {
            let jitter = imp.jitter.as_nanos() as i64;
            let offset = rng.random_range(-jitter..=jitter);
            at = if offset >= 0 {
                at + Duration::from_nanos(offset as u64)
            } else {
                at.checked_sub(Duration::from_nanos(offset.unsigned_abs()))
                    .unwrap_or(now)
                    .max(now)
            };
        }
        if let Some(last) = self.last_departure {
            at = at.max(last);
        }
        self.last_departure = Some(at);
        let twice = imp.duplicate > 0.0 && rng.random_bool(imp.duplicate.min(1.0));
        let payload_bits = len.saturating_sub(HEADER_LEN) * 8;
        let flip_bit =
            (imp.corrupt > 0.0 && payload_bits > 0 && rng.random_bool(imp.corrupt.min(1.0)))
                .then(|| rng.random_range(0..payload_bits));
        Verdict::Send {
            at,
            twice,
            flip_bit,
        }
    }
}

/// Flips bit `bit` of the payload (after the Ethernet header) of `frame`.
pub fn flip_payload_bit(frame: &mut [u8], bit: usize) {
    let index = HEADER_LEN + bit / 8;
    if let Some(byte) = frame.get_mut(index) {
        *byte ^= 1 << (bit % 8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn rng() -> SmallRng {
        SmallRng::seed_from_u64(7)
    }

    #[test]
    fn no_impairment_sends_now() {
        let now = Instant::now();
        let mut shaper = Shaper::new(Impairment::default());
        assert!(shaper.impairment().is_none());
        assert_eq!(
            shaper.schedule(100, now, &mut rng()),
            Verdict::Send {
                at: now,
                twice: false,
                flip_bit: None
            }
        );
    }

    #[test]
    fn loss_drops_about_the_given_share() {
        let now = Instant::now();
        let mut shaper = Shaper::new(Impairment {
            loss: 0.3,
            ..Default::default()
        });
        let mut rng = rng();
        let lost = (0..10_000)
            .filter(|_| shaper.schedule(100, now, &mut rng) == Verdict::Lost)
            .count();
        assert!((2_700..3_300).contains(&lost), "lost {lost} of 10000");
    }

    #[test]
    fn full_loss_drops_everything() {
        let now = Instant::now();
        let mut shaper = Shaper::new(Impairment {
            loss: 1.0,
            ..Default::default()
        });
        assert!((0..100).all(|_| shaper.schedule(60, now, &mut rng()) == Verdict::Lost));
    }

    #[test]
    fn delay_and_jitter_never_reorder() {
        let t0 = Instant::now();
        let imp = Impairment {
            delay: Duration::from_millis(50),
            jitter: Duration::from_millis(20),
            ..Default::default()
        };
        let mut shaper = Shaper::new(imp);
        let mut rng = rng();
        let mut last = t0;
        for i in 0..1000u64 {
            let now = t0 + Duration::from_micros(i * 100);
            let Verdict::Send { at, .. } = shaper.schedule(100, now, &mut rng) else {
                panic!("no loss configured");
            };
            assert!(at >= last, "frame {i} would overtake");
            assert!(at >= now + Duration::from_millis(30));
            assert!(at <= now + Duration::from_millis(70) || at == last);
            last = at;
        }
    }

    #[test]
    fn rate_limit_spaces_frames_by_their_serialisation_time() {
        let now = Instant::now();
        // 1 Mbit/s: a 1250-byte frame takes 10 ms.
        let mut shaper = Shaper::new(Impairment {
            rate_bps: 1_000_000,
            ..Default::default()
        });
        let mut rng = rng();
        let times: Vec<Instant> = (0..3)
            .map(|_| match shaper.schedule(1250, now, &mut rng) {
                Verdict::Send { at, .. } => at,
                Verdict::Lost => panic!("no loss configured"),
            })
            .collect();
        assert_eq!(times[0], now + Duration::from_millis(10));
        assert_eq!(times[2], now + Duration::from_millis(30));
    }

    #[test]
    fn corruption_and_duplication_happen() {
        let now = Instant::now();
        let imp = Impairment {
            corrupt: 1.0,
            duplicate: 1.0,
            ..Default::default()
        };
        let mut shaper = Shaper::new(imp);
        let Verdict::Send {
            twice, flip_bit, ..
        } = shaper.schedule(60, now, &mut rng())
        else {
            panic!("no loss configured");
        };
        assert!(twice);
        let bit = flip_bit.expect("corrupt = 100%");
        let mut frame = [0u8; 60];
        flip_payload_bit(&mut frame, bit);
        assert_eq!(frame[..HEADER_LEN], [0; HEADER_LEN], "header untouched");
        assert_eq!(frame.iter().map(|b| b.count_ones()).sum::<u32>(), 1);
    }

    #[test]
    fn percentages_are_checked() {
        let p = vbet_proto::vbet::port::v1::Impairment {
            loss_percent: 150.0,
            ..Default::default()
        };
        assert!(Impairment::from_proto(&p).is_err());
        let p = vbet_proto::vbet::port::v1::Impairment {
            loss_percent: 25.0,
            delay_us: 50_000,
            ..Default::default()
        };
        let imp = Impairment::from_proto(&p).unwrap();
        assert_eq!(imp.loss, 0.25);
        assert_eq!(imp.to_proto(), p);
    }
}
