//! Quantities written by people: sizes (`256M`), durations (`10ms`), rates
//! (`10mbit`) and percentages (`1.5%`). Each parses from and prints to one
//! canonical string, which is also its serde form.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Splits `"10.5ms"` into `(10.5, "ms")`.
fn split_number(s: &str) -> Option<(f64, &str)> {
    let s = s.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(end);
    if num.is_empty() {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    n.is_finite().then_some((n, unit.trim()))
}

/// A memory size in bytes, written `64M`, `1G`, `512MiB` (binary units).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a size; write e.g. 256M or 1G");
        let (n, unit) = split_number(s).ok_or_else(bad)?;
        let unit = unit.to_ascii_lowercase();
        let unit = unit.trim_end_matches('b').trim_end_matches('i');
        let mult: u64 = match unit {
            "" => 1,
            "k" => 1 << 10,
            "m" => 1 << 20,
            "g" => 1 << 30,
            "t" => 1 << 40,
            _ => return Err(bad()),
        };
        let v = n * mult as f64;
        if v < 1.0 || v > u64::MAX as f64 {
            return Err(format!("size `{s}` is out of range"));
        }
        Ok(ByteSize(v as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (mult, unit) in [
            (1u64 << 40, "T"),
            (1 << 30, "G"),
            (1 << 20, "M"),
            (1 << 10, "K"),
        ] {
            if self.0 >= mult && self.0 % mult == 0 {
                return write!(f, "{}{unit}", self.0 / mult);
            }
        }
        write!(f, "{}", self.0)
    }
}

/// A time span in microseconds, written `250us`, `10ms`, `1.5s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Micros(pub u64);

impl FromStr for Micros {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a duration; write e.g. 10ms, 250us or 2s");
        let (n, unit) = split_number(s).ok_or_else(bad)?;
        let mult = match unit {
            "us" | "µs" => 1.0,
            "ms" => 1e3,
            "s" => 1e6,
            "m" | "min" => 60e6,
            _ => return Err(bad()),
        };
        let v = n * mult;
        if v > u64::MAX as f64 {
            return Err(format!("duration `{s}` is out of range"));
        }
        Ok(Micros(v.round() as u64))
    }
}

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => write!(f, "0ms"),
            v if v % 1_000_000 == 0 => write!(f, "{}s", v / 1_000_000),
            v if v % 1_000 == 0 => write!(f, "{}ms", v / 1_000),
            v => write!(f, "{v}us"),
        }
    }
}

/// A bit rate in bits per second, written `10mbit`, `1gbit`, `512kbit`
/// (`bps`, `kbps`, `mbps`, `gbps` are accepted as bits per second too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Rate(pub u64);

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a rate; write e.g. 10mbit or 1gbit");
        let (n, unit) = split_number(s).ok_or_else(bad)?;
        let mult = match unit.to_ascii_lowercase().as_str() {
            "bit" | "bps" => 1.0,
            "kbit" | "kbps" => 1e3,
            "mbit" | "mbps" => 1e6,
            "gbit" | "gbps" => 1e9,
            _ => return Err(bad()),
        };
        let v = n * mult;
        if !(1.0..=u64::MAX as f64).contains(&v) {
            return Err(format!("rate `{s}` is out of range"));
        }
        Ok(Rate(v.round() as u64))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (mult, unit) in [
            (1_000_000_000u64, "gbit"),
            (1_000_000, "mbit"),
            (1_000, "kbit"),
        ] {
            if self.0 >= mult && self.0 % mult == 0 {
                return write!(f, "{}{unit}", self.0 / mult);
            }
        }
        write!(f, "{}bit", self.0)
    }
}

/// A probability in percent, 0 to 100, written `1.5` or `"1.5%"`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "PercentRepr", into = "f64")]
pub struct Percent(pub f64);

/// The forms a percentage may take in TOML or YAML.
#[derive(Deserialize)]
#[serde(untagged)]
enum PercentRepr {
    Num(f64),
    Text(String),
}

impl TryFrom<PercentRepr> for Percent {
    type Error = String;
    fn try_from(r: PercentRepr) -> Result<Self, String> {
        match r {
            PercentRepr::Num(n) => Percent::from_f64(n),
            PercentRepr::Text(s) => s.parse(),
        }
    }
}

impl From<Percent> for f64 {
    fn from(p: Percent) -> f64 {
        p.0
    }
}

impl Percent {
    /// A percentage from a number, checked to lie in 0..=100.
    pub fn from_f64(n: f64) -> Result<Self, String> {
        if (0.0..=100.0).contains(&n) {
            Ok(Percent(n))
        } else {
            Err(format!("{n} is not a percentage between 0 and 100"))
        }
    }
}

impl FromStr for Percent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim().trim_end_matches('%');
        let n: f64 = t
            .parse()
            .map_err(|_| format!("`{s}` is not a percentage; write e.g. 1.5%"))?;
        Percent::from_f64(n)
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

macro_rules! string_serde {
    ($($t:ty),*) => {$(
        impl TryFrom<String> for $t {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                s.parse()
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.to_string()
            }
        }
    )*};
}
pub(crate) use string_serde;

string_serde!(ByteSize, Micros, Rate);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!("256M".parse::<ByteSize>().unwrap().0, 256 << 20);
        assert_eq!("1GiB".parse::<ByteSize>().unwrap().to_string(), "1G");
        assert_eq!("1536K".parse::<ByteSize>().unwrap().to_string(), "1536K");
        assert!("lots".parse::<ByteSize>().is_err());
    }

    #[test]
    fn durations_rates_percents() {
        assert_eq!("10ms".parse::<Micros>().unwrap().0, 10_000);
        assert_eq!("1.5ms".parse::<Micros>().unwrap().to_string(), "1500us");
        assert_eq!("2s".parse::<Micros>().unwrap().to_string(), "2s");
        assert!("10 parsecs".parse::<Micros>().is_err());
        assert_eq!("10mbit".parse::<Rate>().unwrap().0, 10_000_000);
        assert_eq!("1500kbit".parse::<Rate>().unwrap().to_string(), "1500kbit");
        assert_eq!("1.5%".parse::<Percent>().unwrap().0, 1.5);
        assert!("150%".parse::<Percent>().is_err());
    }
}
