//! `Cidr`, the pod address range of `--pod-cidr`: a value type the flags parse into and the
//! lease store allocates from.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 or IPv6 prefix such as `10.244.0.0/16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn bits(&self) -> u32 {
        if self.addr.is_ipv4() { 32 } else { 128 }
    }

    fn as_u128(ip: IpAddr) -> u128 {
        match ip {
            IpAddr::V4(v4) => u32::from(v4) as u128,
            IpAddr::V6(v6) => u128::from(v6),
        }
    }

    fn ip_of(&self, n: u128) -> IpAddr {
        if self.addr.is_ipv4() {
            IpAddr::V4(Ipv4Addr::from(n as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(n))
        }
    }

    fn host_bits(&self) -> u32 {
        self.bits() - self.prefix as u32
    }

    fn network(&self) -> u128 {
        let hb = self.host_bits();
        if hb >= 128 {
            0
        } else {
            (Self::as_u128(self.addr) >> hb) << hb
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && {
            let hb = self.host_bits();
            hb >= 128 || (Self::as_u128(ip) >> hb) == (self.network() >> hb)
        }
    }

    /// The first and last host offsets: without the network address, and for IPv4 prefixes
    /// shorter than /31 without the broadcast address.
    fn host_range(&self) -> (u128, u128) {
        let hb = self.host_bits();
        let size: u128 = if hb >= 128 { u128::MAX } else { 1u128 << hb };
        if size <= 2 {
            (0, size - 1)
        } else if self.addr.is_ipv4() {
            (1, size - 2)
        } else {
            (1, size - 1)
        }
    }

    /// Usable host addresses in ascending order (see [`Cidr::host`]).
    pub fn hosts(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let (first, last) = self.host_range();
        let net = self.network();
        (first..=last).map(move |i| self.ip_of(net + i))
    }

    /// Which usable host `ip` is (the inverse of [`Cidr::host`]); `None` outside the prefix
    /// and for its network and broadcast addresses.
    pub fn host_index(&self, ip: IpAddr) -> Option<u128> {
        if !self.contains(ip) {
            return None;
        }
        let (first, last) = self.host_range();
        let offset = Self::as_u128(ip) - self.network();
        (first..=last).contains(&offset).then(|| offset - first)
    }

    /// The `i`-th usable host address (from 0), if there are that many.
    pub fn host(&self, i: u128) -> Option<IpAddr> {
        let (first, last) = self.host_range();
        let offset = first.checked_add(i).filter(|o| *o <= last)?;
        Some(self.ip_of(self.network() + offset))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ip_of(self.network()), self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR such as 10.244.0.0/16"))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| format!("{prefix:?} is not a prefix length"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(format!("prefix /{prefix} is longer than /{max}"));
        }
        Ok(Cidr { addr, prefix })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_hosts_skip_network_and_broadcast() {
        let c: Cidr = "192.0.2.0/30".parse().unwrap();
        let hosts: Vec<String> = c.hosts().map(|h| h.to_string()).collect();
        assert_eq!(hosts, ["192.0.2.1", "192.0.2.2"]);
        assert!(c.contains("192.0.2.3".parse().unwrap()));
        assert!(!c.contains("192.0.2.4".parse().unwrap()));
        let v6: Cidr = "2001:db8::/64".parse().unwrap();
        assert_eq!(v6.hosts().next().unwrap().to_string(), "2001:db8::1");
        assert_eq!(c.host(1).unwrap().to_string(), "192.0.2.2");
        assert_eq!(c.host(2), None);
        assert_eq!(c.host_index("192.0.2.2".parse().unwrap()), Some(1));
        assert_eq!(c.host_index("192.0.2.0".parse().unwrap()), None);
        assert_eq!(c.host_index("192.0.2.3".parse().unwrap()), None);
        assert_eq!(c.host_index("192.0.2.4".parse().unwrap()), None);
        assert_eq!(v6.host_index("2001:db8::11".parse().unwrap()), Some(0x10));
        assert_eq!(v6.host(0x10).unwrap().to_string(), "2001:db8::11");
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert_eq!(
            "10.244.1.7/16".parse::<Cidr>().unwrap().to_string(),
            "10.244.0.0/16"
        );
    }
}
