//! Network values of the model: interface addresses (`10.0.1.1/24`,
//! `fd00::1/64`), route prefixes (`10.0.0.0/8`, `default`) and MAC addresses.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::units::string_serde;

fn max_prefix(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

fn to_bits(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(*a) as u128,
        IpAddr::V6(a) => u128::from(*a),
    }
}

fn mask(ip: &IpAddr, prefix: u8) -> u128 {
    let width = max_prefix(ip) as u32;
    let p = prefix as u32;
    if p == 0 {
        0
    } else {
        let ones = if width == 128 {
            u128::MAX
        } else {
            (1u128 << width) - 1
        };
        ones & (ones << (width - p))
    }
}

fn parse_ip_prefix(s: &str, what: &str) -> Result<(IpAddr, u8), String> {
    let (ip, prefix) = s
        .trim()
        .split_once('/')
        .ok_or_else(|| format!("`{s}` has no prefix length; write e.g. {what}"))?;
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("`{ip}` is not an IPv4 or IPv6 address"))?;
    let prefix: u8 = prefix
        .parse()
        .map_err(|_| format!("`{prefix}` is not a prefix length"))?;
    if prefix > max_prefix(&ip) {
        return Err(format!(
            "prefix length /{prefix} is too long for {ip} (at most /{})",
            max_prefix(&ip)
        ));
    }
    Ok((ip, prefix))
}

/// An address on an interface with its prefix length, as `ip addr add`
/// takes it: `192.168.1.1/24`, `fd00:1::1/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IfAddr {
    /// The address itself.
    pub ip: IpAddr,
    /// The prefix length of the attached subnet.
    pub prefix: u8,
}

impl IfAddr {
    /// The subnet this address sits on.
    pub fn network(&self) -> Prefix {
        Prefix::masked(self.ip, self.prefix)
    }

    /// Whether `ip` lies on this address's subnet.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.network().contains(ip)
    }
}

impl FromStr for IfAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, prefix) = parse_ip_prefix(s, "10.0.1.1/24")?;
        let a = IfAddr { ip, prefix };
        if ip.is_ipv4() && prefix < 31 {
            let host = to_bits(&ip) & !mask(&ip, prefix) & 0xffff_ffff;
            let all = !mask(&ip, prefix) & 0xffff_ffff;
            if host == 0 {
                return Err(format!("{s} is the subnet's network address, not a host's"));
            }
            if host == all {
                return Err(format!(
                    "{s} is the subnet's broadcast address, not a host's"
                ));
            }
        }
        Ok(a)
    }
}

impl fmt::Display for IfAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}

/// A destination prefix of a route: `10.0.0.0/8`, `fd00::/16`, or
/// `default` (printed `0.0.0.0/0` or `::/0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Prefix {
    /// The network address (no host bits set).
    pub ip: IpAddr,
    /// The prefix length.
    pub len: u8,
}

impl Prefix {
    /// The prefix of length `len` that holds `ip`.
    pub fn masked(ip: IpAddr, len: u8) -> Prefix {
        let bits = to_bits(&ip) & mask(&ip, len);
        let ip = match ip {
            IpAddr::V4(_) => IpAddr::V4((bits as u32).into()),
            IpAddr::V6(_) => IpAddr::V6(bits.into()),
        };
        Prefix { ip, len }
    }

    /// Whether `ip` lies inside this prefix.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        ip.is_ipv4() == self.ip.is_ipv4() && to_bits(ip) & mask(ip, self.len) == to_bits(&self.ip)
    }

    /// Whether two prefixes share any address.
    pub fn overlaps(&self, other: &Prefix) -> bool {
        let shorter = if self.len <= other.len { self } else { other };
        let longer = if self.len <= other.len { other } else { self };
        shorter.contains(&longer.ip)
    }
}

impl FromStr for Prefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "default" | "default4" => return Ok(Prefix::masked([0, 0, 0, 0].into(), 0)),
            "default6" => return Ok(Prefix::masked(std::net::Ipv6Addr::UNSPECIFIED.into(), 0)),
            _ => {}
        }
        let (ip, len) = parse_ip_prefix(s, "10.0.0.0/8")?;
        let p = Prefix::masked(ip, len);
        if p.ip != ip {
            return Err(format!("{s} has host bits set; did you mean {p}?"));
        }
        Ok(p)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ip, self.len)
    }
}

/// An Ethernet MAC address, written `02:00:00:00:00:01`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Mac(pub [u8; 6]);

impl FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a MAC address; write e.g. 02:00:00:00:00:01");
        let mut out = [0u8; 6];
        let mut parts = s.trim().split([':', '-']);
        for b in out.iter_mut() {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 {
                return Err(bad());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        if out[0] & 1 == 1 {
            return Err(format!("{s} is a multicast MAC; a NIC needs a unicast one"));
        }
        Ok(Mac(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

string_serde!(IfAddr, Prefix, Mac);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_addrs() {
        let a: IfAddr = "192.168.1.1/24".parse().unwrap();
        assert_eq!(a.network().to_string(), "192.168.1.0/24");
        assert!(a.contains(&"192.168.1.200".parse().unwrap()));
        assert!("192.168.1.0/24".parse::<IfAddr>().is_err());
        assert!("192.168.1.255/24".parse::<IfAddr>().is_err());
        assert!("192.168.1.300/24".parse::<IfAddr>().is_err());
        assert!("192.168.1.1".parse::<IfAddr>().is_err());
        assert!("10.0.0.1/33".parse::<IfAddr>().is_err());
        assert!("10.0.0.1/32".parse::<IfAddr>().is_ok());
        let b: IfAddr = "fd00:1::1/64".parse().unwrap();
        assert_eq!(b.network().to_string(), "fd00:1::/64");
    }

    #[test]
    fn prefixes() {
        let p: Prefix = "10.0.0.0/8".parse().unwrap();
        let q: Prefix = "10.1.0.0/16".parse().unwrap();
        let r: Prefix = "11.0.0.0/8".parse().unwrap();
        assert!(p.overlaps(&q) && q.overlaps(&p) && !p.overlaps(&r));
        assert!("10.0.0.1/8".parse::<Prefix>().is_err());
        assert_eq!(
            "default".parse::<Prefix>().unwrap().to_string(),
            "0.0.0.0/0"
        );
        assert_eq!("default6".parse::<Prefix>().unwrap().to_string(), "::/0");
        let all: Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(&"1.2.3.4".parse().unwrap()));
    }

    #[test]
    fn macs() {
        let m: Mac = "02:00:00:aa:BB:01".parse().unwrap();
        assert_eq!(m.to_string(), "02:00:00:aa:bb:01");
        assert!("01:00:00:00:00:00".parse::<Mac>().is_err());
        assert!("02:00:00".parse::<Mac>().is_err());
    }
}
