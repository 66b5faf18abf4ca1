//! Per-request values put into the GraphQL context: the request id, the viewer (who is calling,
//! as established by [`crate::viewer`] before execution) and the client's address.

use accounts::Principal;
use shared::client_addr::Cidr;
use std::fmt;
use std::net::IpAddr;

/// The id of one HTTP request, from the `X-Request-Id` header or generated. It is logged with
/// every line of the request, returned in the response header, and attached to Sentry events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    /// Accepts a caller's id only when it is short and plain; otherwise makes a new one.
    pub fn from_header(value: Option<&str>) -> Self {
        match value {
            Some(v)
                if !v.is_empty()
                    && v.len() <= 64
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
            {
                RequestId(v.to_owned())
            }
            _ => RequestId(uuid::Uuid::new_v4().to_string()),
        }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who is calling. Every request has exactly one viewer, authenticated before execution: a
/// request whose credential is refused never reaches a resolver.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Viewer(pub Principal);

impl Viewer {
    /// The viewer of a request without credentials.
    pub const ANONYMOUS: Viewer = Viewer(Principal::Anonymous);

    /// Who the viewer is.
    pub fn principal(&self) -> &Principal {
        &self.0
    }

    /// True when no credential was presented.
    pub fn is_anonymous(&self) -> bool {
        matches!(self.0, Principal::Anonymous)
    }
}

/// The address of the client: the TCP peer, or behind a trusted proxy (`http.trusted_proxies`)
/// the address that proxy vouches for; never a header an untrusted peer sent. Made by
/// [`ClientAddr::of`] for every HTTP and WebSocket request, and what every per-client limit
/// counts under. `None` only when the transport has no address (in-process tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientAddr(pub Option<IpAddr>);

impl ClientAddr {
    /// The client of `req`, given the trusted proxies ([`shared::client_addr::client_addr`]).
    pub fn of(req: &actix_web::HttpRequest, trusted_proxies: &[Cidr]) -> Self {
        let headers = req.headers();
        let forwarded_for = headers
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok());
        let real_ip = headers.get("x-real-ip").and_then(|v| v.to_str().ok());
        ClientAddr(shared::client_addr::client_addr(
            req.peer_addr().map(|a| a.ip()),
            forwarded_for,
            real_ip,
            trusted_proxies,
        ))
    }

    /// The subject rate limits count this client under: the IPv4 address, or the /64 network of
    /// an IPv6 address (one subscriber usually holds a whole /64, so single addresses are free).
    pub fn rate_limit_subject(&self) -> String {
        match self.0 {
            None => "unknown".to_owned(),
            Some(IpAddr::V4(v4)) => v4.to_string(),
            Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let s = v6.segments();
                    format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_from_callers_are_checked() {
        assert_eq!(RequestId::from_header(Some("abc-123")).0, "abc-123");
        let made = RequestId::from_header(Some("bad id\nwith newline"));
        assert_ne!(made.0, "bad id\nwith newline");
        assert_eq!(made.0.len(), 36);
        assert_eq!(RequestId::from_header(Some(&"x".repeat(65))).0.len(), 36);
    }

    #[test]
    fn clients_are_counted_per_ipv4_address_and_per_ipv6_network() {
        let v4 = ClientAddr(Some("203.0.113.7".parse().unwrap()));
        assert_eq!(v4.rate_limit_subject(), "203.0.113.7");
        let a = ClientAddr(Some("2001:db8:1:2::1".parse().unwrap()));
        let b = ClientAddr(Some("2001:db8:1:2:ffff::9".parse().unwrap()));
        assert_eq!(a.rate_limit_subject(), b.rate_limit_subject());
        assert_eq!(a.rate_limit_subject(), "2001:db8:1:2::/64");
        let mapped = ClientAddr(Some("::ffff:203.0.113.7".parse().unwrap()));
        assert_eq!(mapped.rate_limit_subject(), "203.0.113.7");
        assert_eq!(ClientAddr(None).rate_limit_subject(), "unknown");
        assert!(Viewer::default().is_anonymous());
    }
}
