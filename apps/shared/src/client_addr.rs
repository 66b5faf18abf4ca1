//! The real client address of a request, for every per-client limit.
//!
//! Invariants:
//! - a header is believed only when the TCP peer is a trusted proxy (`http.trusted_proxies`);
//!   from any other peer the peer itself is the client, whatever `X-Forwarded-For` says;
//! - behind trusted proxies the client is the right-most `X-Forwarded-For` hop that is not a
//!   trusted proxy: each proxy appends the address it was reached from, so hops to the right
//!   of the first untrusted one were written by our proxies and hops to its left by whoever
//!   sent the request, who can write anything there;
//! - without `X-Forwarded-For`, a trusted proxy's `X-Real-IP` names the client;
//! - a hop that is not an address ends the walk: the last address known to be written by our
//!   proxies is used, never anything to its left.

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`); a bare address is a network of
/// one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// A string that is not a CIDR network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an address or a CIDR network (e.g. 10.0.0.0/8)")]
pub struct InvalidCidr(String);

impl FromStr for Cidr {
    type Err = InvalidCidr;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidCidr(s.to_owned());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s.trim(), None),
        };
        let network = normalise(addr.parse::<IpAddr>().map_err(|_| bad())?);
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Cidr {
    /// Whether `ip` is inside the network (an IPv4-mapped IPv6 address counts as its IPv4 one).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, normalise(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Reads a list of networks from settings: a list (TOML), or one comma-separated string (an
/// environment variable such as `SHIFTCOVER__HTTP__TRUSTED_PROXIES=10.0.0.0/8,192.168.0.0/16`).
pub fn deserialize_cidrs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Cidr>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<String>),
        Text(String),
    }
    let items: Vec<String> = match Form::deserialize(d)? {
        Form::List(list) => list,
        Form::Text(text) => text.split(',').map(str::to_owned).collect(),
    };
    items
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<Cidr>().map_err(serde::de::Error::custom))
        .collect()
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is; others unchanged.
fn normalise(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One `X-Forwarded-For` hop as an address: `203.0.113.7`, `203.0.113.7:4711`, `2001:db8::1`
/// or `[2001:db8::1]:4711`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(normalise(ip));
    }
    if let Ok(sock) = hop.parse::<std::net::SocketAddr>() {
        return Some(normalise(sock.ip()));
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse::<IpAddr>().ok())
        .map(normalise)
}

/// The client of a request that arrived from `peer` with these `X-Forwarded-For` header values
/// (in the order received) and `X-Real-IP` value, given the trusted proxies (see the module
/// docs). `None` only when there is no peer (an in-process request).
pub fn client_addr<'a>(
    peer: Option<IpAddr>,
    forwarded_for: impl IntoIterator<Item = &'a str>,
    real_ip: Option<&str>,
    trusted: &[Cidr],
) -> Option<IpAddr> {
    let peer = normalise(peer?);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let hops: Vec<&str> = forwarded_for
        .into_iter()
        .flat_map(|value| value.split(','))
        .filter(|hop| !hop.trim().is_empty())
        .collect();
    if hops.is_empty() {
        return Some(real_ip.and_then(parse_hop).unwrap_or(peer));
    }
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            return Some(client);
        };
        client = ip;
        if !is_trusted(ip) {
            return Some(ip);
        }
    }
    // Every hop is one of ours: the left-most is as far as the chain goes.
    Some(client)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn networks_parse_and_contain() {
        let n: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains(ip("10.255.0.1")));
        assert!(n.contains(ip("::ffff:10.1.2.3")));
        assert!(!n.contains(ip("11.0.0.1")));
        let one: Cidr = "192.0.2.7".parse().unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "nope", "10.0.0/8", "::/129", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let trusted = nets(&["10.0.0.0/8"]);
        let got = client_addr(
            Some(ip("203.0.113.7")),
            ["198.51.100.1"],
            Some("198.51.100.2"),
            &trusted,
        );
        assert_eq!(got, Some(ip("203.0.113.7")));
        // Nothing is trusted by default.
        let got = client_addr(Some(ip("10.0.0.1")), ["198.51.100.1"], None, &[]);
        assert_eq!(got, Some(ip("10.0.0.1")));
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_hop_is_the_client() {
        let trusted = nets(&["10.0.0.0/8", "2001:db8:aaaa::/48"]);
        // The client forged a first hop; our two proxies appended the real ones.
        let got = client_addr(
            Some(ip("10.0.0.2")),
            ["1.1.1.1, 203.0.113.7", "10.0.0.1"],
            None,
            &trusted,
        );
        assert_eq!(got, Some(ip("203.0.113.7")));
        // Ports, brackets and mapped addresses.
        let got = client_addr(
            Some(ip("::ffff:10.0.0.2")),
            ["[2001:db8:1::5]:4711, 2001:db8:aaaa::1"],
            None,
            &trusted,
        );
        assert_eq!(got, Some(ip("2001:db8:1::5")));
        let got = client_addr(Some(ip("10.0.0.2")), ["203.0.113.7:55000"], None, &trusted);
        assert_eq!(got, Some(ip("203.0.113.7")));
        // Garbage ends the walk at the last hop our proxies wrote.
        let got = client_addr(
            Some(ip("10.0.0.2")),
            ["203.0.113.7, unknown, 10.0.0.9"],
            None,
            &trusted,
        );
        assert_eq!(got, Some(ip("10.0.0.9")));
        // Only our proxies: the left-most.
        let got = client_addr(Some(ip("10.0.0.2")), ["10.0.0.5, 10.0.0.1"], None, &trusted);
        assert_eq!(got, Some(ip("10.0.0.5")));
    }

    #[test]
    fn x_real_ip_counts_only_from_a_trusted_proxy_without_x_forwarded_for() {
        let trusted = nets(&["10.0.0.0/8"]);
        let got = client_addr(Some(ip("10.0.0.2")), [], Some("203.0.113.9"), &trusted);
        assert_eq!(got, Some(ip("203.0.113.9")));
        let got = client_addr(Some(ip("10.0.0.2")), [], Some("junk"), &trusted);
        assert_eq!(got, Some(ip("10.0.0.2")));
        let got = client_addr(Some(ip("8.8.8.8")), [], Some("203.0.113.9"), &trusted);
        assert_eq!(got, Some(ip("8.8.8.8")));
        assert_eq!(client_addr(None, [], Some("203.0.113.9"), &trusted), None);
    }
}
