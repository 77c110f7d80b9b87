//! Client addresses: the key that per-address limits count by, and the address a trusted proxy
//! passed on in a header.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use http::{HeaderMap, HeaderName};
use oort_common::config::TrustedProxies;

/// What per-address limits count by: an IPv4 address, or an IPv6 /64 (one subscriber usually
/// holds a whole /64, so counting single IPv6 addresses would count nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum AddressKey {
    V4(Ipv4Addr),
    V6Prefix(u64),
}

impl AddressKey {
    pub(crate) fn of(addr: IpAddr) -> Self {
        match addr.to_canonical() {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => Self::V6Prefix((u128::from(v6) >> 64) as u64),
        }
    }
}

impl fmt::Display for AddressKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(v4) => v4.fmt(f),
            Self::V6Prefix(prefix) => write!(f, "{}/64", Ipv6Addr::from(u128::from(*prefix) << 64)),
        }
    }
}

/// The client's address from the values of `header`, which each proxy extends with the address
/// it saw (`X-Forwarded-For: client, proxy1, proxy2`). Only the entries added by trusted proxies
/// can be believed, so the walk starts at the right and returns the first entry that is not a
/// trusted proxy; if every entry is one, the leftmost. `None` when the header is missing or the
/// entry that decides is not an address.
pub(crate) fn forwarded_client(
    headers: &HeaderMap,
    header: &HeaderName,
    trusted: &TrustedProxies,
) -> Option<IpAddr> {
    let entries: Vec<&str> = headers
        .get_all(header)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .collect();
    let mut leftmost = None;
    for entry in entries.iter().rev() {
        let addr = parse_entry(entry)?;
        if !trusted.contains(addr) {
            return Some(addr.to_canonical());
        }
        leftmost = Some(addr.to_canonical());
    }
    leftmost
}

/// `203.0.113.7`, `203.0.113.7:4711`, `2001:db8::1` or `[2001:db8::1]:4711`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oort_common::config::ClientAddressConfig;

    fn trusted(proxies: &[&str]) -> TrustedProxies {
        ClientAddressConfig {
            header: String::new(),
            trusted_proxies: proxies.iter().map(|p| p.to_string()).collect(),
        }
        .trusted_proxies()
        .unwrap()
    }

    fn client_of(values: &[&str], proxies: &[&str]) -> Option<IpAddr> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        forwarded_client(
            &headers,
            &HeaderName::from_static("x-forwarded-for"),
            &trusted(proxies),
        )
    }

    #[test]
    fn the_nearest_untrusted_entry_is_the_client() {
        let proxies = ["10.0.0.0/8"];
        // A client cannot pose as another by writing the header itself: its own entry is the
        // one the trusted proxy appended.
        let client = client_of(&["198.51.100.9, 203.0.113.7, 10.0.0.2"], &proxies);
        assert_eq!(client, "203.0.113.7".parse().ok());
        // Repeated header lines are one list, in order.
        let client = client_of(&["198.51.100.9", "203.0.113.7:4711", "10.0.0.2"], &proxies);
        assert_eq!(client, "203.0.113.7".parse().ok());
        let client = client_of(&["[2001:db8::1]:80"], &proxies);
        assert_eq!(client, "2001:db8::1".parse().ok());
        // Every entry a trusted proxy: the leftmost one.
        assert_eq!(
            client_of(&["10.1.1.1, 10.0.0.2"], &proxies),
            "10.1.1.1".parse().ok()
        );
    }

    #[test]
    fn a_missing_or_garbled_header_gives_no_address() {
        assert_eq!(client_of(&[], &["10.0.0.0/8"]), None);
        assert_eq!(client_of(&["unknown, 10.0.0.2"], &["10.0.0.0/8"]), None);
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        let one = AddressKey::of("2001:db8:1:2::1".parse().unwrap());
        let two = AddressKey::of("2001:db8:1:2:ffff::9".parse().unwrap());
        let other = AddressKey::of("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(one, two);
        assert_ne!(one, other);
        assert_eq!(one.to_string(), "2001:db8:1:2::/64");
        assert_eq!(
            AddressKey::of("::ffff:192.0.2.1".parse().unwrap()),
            AddressKey::of("192.0.2.1".parse().unwrap())
        );
    }
}
