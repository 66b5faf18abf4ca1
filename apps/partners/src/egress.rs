//! Where partner webhooks may go: public addresses only, checked when an endpoint is registered
//! and again for the address each attempt actually dials.
//!
//! Invariants:
//! - an address is dialled only when [`is_allowed`] says so: public unicast, or loopback when
//!   the `partner_webhooks.allow_loopback` setting is on (development and tests); private,
//!   link-local (cloud metadata at `169.254.169.254`), CGNAT, unspecified, multicast,
//!   documentation, benchmarking and reserved ranges never are, nor IPv6 forms that embed one
//!   of them (IPv4-mapped, NAT64, 6to4);
//! - an IP written in the URL is read the way the HTTP client reads it (the URL standard's
//!   parser turns `2130706433`, `0x7f000001`, `0177.0.0.1` and `127.1` into `127.0.0.1`), so no
//!   spelling slips past;
//! - a name is resolved by the delivery client's own resolver ([`FilteringResolver`]), which
//!   drops every address that is not allowed: a name that pointed at a public address when it
//!   was registered and at an internal one later (DNS rebinding) reaches nothing;
//! - the client follows no redirect and uses no proxy (a proxy would dial for us, past the
//!   filter).

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// How long registration waits for a name to resolve.
const REGISTRATION_LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// Whether an address is public unicast: reachable on the internet and not a way back inside.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

/// Whether an address is loopback, in any form (`127.0.0.0/8`, `::1`, `::ffff:127.x.y.z`).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Whether a webhook may be sent to `ip`: public, or loopback when `allow_loopback`.
pub fn is_allowed(ip: IpAddr, allow_loopback: bool) -> bool {
    is_public(ip) || (allow_loopback && is_loopback(ip))
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    const NOT_PUBLIC: [([u8; 4], u32); 16] = [
        ([0, 0, 0, 0], 8),       // "this network", unspecified
        ([10, 0, 0, 0], 8),      // private
        ([100, 64, 0, 0], 10),   // carrier-grade NAT
        ([127, 0, 0, 0], 8),     // loopback
        ([169, 254, 0, 0], 16),  // link-local, cloud metadata
        ([172, 16, 0, 0], 12),   // private
        ([192, 0, 0, 0], 24),    // IETF protocol assignments
        ([192, 0, 2, 0], 24),    // documentation
        ([192, 88, 99, 0], 24),  // 6to4 relay anycast
        ([192, 168, 0, 0], 16),  // private
        ([198, 18, 0, 0], 15),   // benchmarking
        ([198, 51, 100, 0], 24), // documentation
        ([203, 0, 113, 0], 24),  // documentation
        ([224, 0, 0, 0], 4),     // multicast
        ([240, 0, 0, 0], 4),     // reserved, broadcast
        ([255, 255, 255, 255], 32),
    ];
    !NOT_PUBLIC
        .iter()
        .any(|(net, prefix)| in_v4(ip, *net, *prefix))
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

/// The IPv4 address inside a form that carries one to an IPv4 host: mapped (`::ffff:0:0/96`),
/// NAT64 (`64:ff9b::/96`) and 6to4 (`2002::/16`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let bits = u128::from(ip);
    if in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        return Some(Ipv4Addr::from(u32::try_from(bits & 0xffff_ffff).ok()?));
    }
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        return Some(Ipv4Addr::from(
            u32::try_from((bits >> 80) & 0xffff_ffff).ok()?,
        ));
    }
    None
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return is_public_v4(v4);
    }
    // Only global unicast (2000::/3) is public; inside it, these are not.
    const NOT_PUBLIC: [([u16; 8], u32); 4] = [
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23), // IETF protocol assignments, Teredo
        ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), // documentation
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), // documentation
        ([0x2002, 0, 0, 0, 0, 0, 0, 0], 16), // 6to4 (handled above; kept for clarity)
    ];
    in_v6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3)
        && !NOT_PUBLIC
            .iter()
            .any(|(net, prefix)| in_v6(ip, *net, *prefix))
}

/// Why a webhook URL may not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a URL, not http(s), credentials in it, or http for a live endpoint.
    Invalid,
    /// Its host is, or resolves to, an address that is not public.
    NotPublic,
}

/// A URL's host: an address, or a name to resolve.
enum Host<'a> {
    Ip(IpAddr),
    Name(&'a str),
}

/// The host as the URL parser normalised it: IPv4 in any spelling comes out dotted-decimal, IPv6
/// in brackets.
fn host_of(url: &Url) -> Option<Host<'_>> {
    let host = url.host_str().filter(|h| !h.is_empty())?;
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Some(match bare.parse::<IpAddr>() {
        Ok(ip) => Host::Ip(ip),
        Err(_) => Host::Name(host),
    })
}

/// Whether a host name is a local one by definition (RFC 6761: `localhost` and under it).
fn is_localhost_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// Checks a webhook URL before it is stored: `https` (plain `http` only for a test-mode
/// endpoint, or for loopback when `allow_loopback`), no credentials, and a host that is, and
/// resolves to, only allowed addresses. A name that does not resolve now is accepted: it can be
/// dialled only once it does, and then the delivery client checks what it resolves to.
pub async fn check_endpoint_url(
    url: &Url,
    live: bool,
    allow_loopback: bool,
) -> Result<(), Refusal> {
    let https = match url.scheme() {
        "https" => true,
        "http" => false,
        _ => return Err(Refusal::Invalid),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refusal::Invalid);
    }
    let addresses: Vec<IpAddr> = match host_of(url) {
        None => return Err(Refusal::Invalid),
        Some(Host::Ip(ip)) => vec![ip],
        Some(Host::Name(name)) => {
            if is_localhost_name(name) {
                vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]
            } else {
                resolve_for_registration(name, url.port_or_known_default().unwrap_or(443)).await
            }
        }
    };
    if addresses.iter().any(|ip| !is_allowed(*ip, allow_loopback)) {
        return Err(Refusal::NotPublic);
    }
    let local = !addresses.is_empty() && addresses.iter().all(|ip| is_loopback(*ip));
    if live && !https && !(allow_loopback && local) {
        return Err(Refusal::Invalid);
    }
    Ok(())
}

async fn resolve_for_registration(name: &str, port: u16) -> Vec<IpAddr> {
    match tokio::time::timeout(
        REGISTRATION_LOOKUP_TIMEOUT,
        tokio::net::lookup_host((name, port)),
    )
    .await
    {
        Ok(Ok(found)) => found.map(|a| a.ip()).collect(),
        _ => Vec::new(),
    }
}

/// Checks the host of a URL written as an IP before it is dialled (the client's resolver sees
/// only names). `None` when the URL may be dialled.
pub fn refuse_literal_host(url: &Url, allow_loopback: bool) -> Option<RefusedAddress> {
    let ip = match host_of(url) {
        Some(Host::Ip(ip)) => ip,
        Some(Host::Name(name)) if !allow_loopback && is_localhost_name(name) => {
            return Some(RefusedAddress {
                host: name.to_owned(),
            });
        }
        _ => return None,
    };
    (!is_allowed(ip, allow_loopback)).then(|| RefusedAddress {
        host: ip.to_string(),
    })
}

/// A host that is, or resolved only to, addresses webhooks may not reach.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{host} is not a public address")]
pub struct RefusedAddress {
    /// The host as written or looked up.
    pub host: String,
}

/// The operating system's resolver (`getaddrinfo`, through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

/// A resolver that asks another, then keeps only the addresses a webhook may reach; when none
/// is left the lookup fails with [`RefusedAddress`], and nothing is dialled.
#[derive(Clone)]
pub struct FilteringResolver {
    inner: Arc<dyn Resolve>,
    allow_loopback: bool,
}

impl FilteringResolver {
    /// Filters what `inner` answers.
    pub fn new(inner: Arc<dyn Resolve>, allow_loopback: bool) -> Self {
        Self {
            inner,
            allow_loopback,
        }
    }
}

impl Resolve for FilteringResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let allow_loopback = self.allow_loopback;
        let local_name = is_localhost_name(&host);
        let lookup = self.inner.resolve(name);
        Box::pin(async move {
            if local_name && !allow_loopback {
                return Err(Box::new(RefusedAddress { host }) as _);
            }
            let kept: Vec<SocketAddr> = lookup
                .await?
                .filter(|a| is_allowed(a.ip(), allow_loopback))
                .collect();
            if kept.is_empty() {
                return Err(Box::new(RefusedAddress { host }) as _);
            }
            let addrs: Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP client for webhook deliveries, resolving names with `inner` through a
/// [`FilteringResolver`]: no redirects, no proxy, a short connect timeout.
pub fn build_client(
    inner: Arc<dyn Resolve>,
    allow_loopback: bool,
) -> reqwest::Result<reqwest::Client> {
    // The binary installs the ring provider at start; do it here too (a no-op when done).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .dns_resolver(Arc::new(FilteringResolver::new(inner, allow_loopback)))
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("shiftcover-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The refusal inside a failed request, if the request failed because of one.
pub fn refusal_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a RefusedAddress> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(refused) = e.downcast_ref::<RefusedAddress>() {
            return Some(refused);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_public_unicast_is_public() {
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "2606:4700:4700::1111",
            "2a00:1450:4009:81d::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(ip(public)), "{public}");
        }
        for internal in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:a00:1::1",
            "2001:db8::1",
            "2001::1",
            "3fff::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "100::1",
        ] {
            assert!(!is_public(ip(internal)), "{internal}");
        }
    }

    #[test]
    fn loopback_is_allowed_only_by_the_setting() {
        for lo in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            assert!(!is_allowed(ip(lo), false), "{lo}");
            assert!(is_allowed(ip(lo), true), "{lo}");
        }
        assert!(!is_allowed(ip("10.0.0.1"), true));
        assert!(!is_allowed(ip("169.254.169.254"), true));
    }

    /// Every way of writing an internal address in a URL, as the HTTP client would read it.
    pub(crate) const INTERNAL_SPELLINGS: [&str; 20] = [
        "https://127.0.0.1/hook",
        "https://2130706433/hook",
        "https://0x7f000001/hook",
        "https://0x7F.0.0.1/hook",
        "https://0177.0.0.1/hook",
        "https://017700000001/hook",
        "https://127.1/hook",
        "https://127.0.1/hook",
        "https://127.0.0.1./hook",
        "https://[::1]/hook",
        "https://[0:0:0:0:0:0:0:1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://[::ffff:7f00:1]/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://2852039166/latest/meta-data/",
        "https://[::ffff:a9fe:a9fe]/latest/meta-data/",
        "https://10.0.0.1/hook",
        "https://0/hook",
        "https://[fd00::1]/hook",
        "https://localhost/hook",
    ];

    #[tokio::test]
    async fn every_spelling_of_an_internal_address_is_refused() {
        for spelling in INTERNAL_SPELLINGS {
            let url = Url::parse(spelling).unwrap();
            assert_eq!(
                check_endpoint_url(&url, true, false).await,
                Err(Refusal::NotPublic),
                "{spelling} -> {url}"
            );
            assert_eq!(
                check_endpoint_url(&url, false, false).await,
                Err(Refusal::NotPublic),
                "{spelling} (test mode)"
            );
            assert!(
                refuse_literal_host(&url, false).is_some(),
                "{spelling} at connect time"
            );
        }
    }

    #[tokio::test]
    async fn live_endpoints_need_https_and_no_credentials() {
        let check = async |u: &str, live: bool, lo: bool| {
            check_endpoint_url(&Url::parse(u).unwrap(), live, lo).await
        };
        assert_eq!(check("https://8.8.8.8/x", true, false).await, Ok(()));
        assert_eq!(
            check("http://8.8.8.8/x", true, false).await,
            Err(Refusal::Invalid)
        );
        assert_eq!(check("http://8.8.8.8/x", false, false).await, Ok(()));
        assert_eq!(
            check("https://user:pw@8.8.8.8/x", true, false).await,
            Err(Refusal::Invalid)
        );
        assert_eq!(
            check("ftp://8.8.8.8/x", false, false).await,
            Err(Refusal::Invalid)
        );
        // The development and test receivers, with the setting on.
        assert_eq!(check("http://127.0.0.1:9/x", true, true).await, Ok(()));
        assert_eq!(check("http://localhost:9/x", true, true).await, Ok(()));
        assert_eq!(
            check("http://10.0.0.1/x", true, true).await,
            Err(Refusal::NotPublic)
        );
    }
}
