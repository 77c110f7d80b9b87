//! `client_address.*`: where a client's address comes from. Behind a load balancer or an
//! Ingress every connection comes from the proxy, so per-address limits need the address the
//! proxy saw; a header carrying it is believed only from the proxies named here.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};

use super::{ConfigError, lenient};

/// Client address settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientAddressConfig {
    /// A header in which trusted proxies pass on the client's address (`X-Forwarded-For`,
    /// `X-Real-IP`: comma-separated addresses, the proxy's own peer last). Empty: the TCP
    /// peer's address is the client's.
    #[serde(deserialize_with = "lenient::string")]
    pub header: String,
    /// Proxies whose `header` is believed, as addresses or CIDR blocks (`10.0.0.0/8`); their own
    /// connections are not limited per address. A list, or one comma-separated string.
    #[serde(deserialize_with = "text_list")]
    pub trusted_proxies: Vec<String>,
}

/// `client_address.trusted_proxies`, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// True when `addr` is one of the trusted proxies.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        self.0.iter().any(|net| net.contains(&addr))
    }

    /// True when no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl ClientAddressConfig {
    /// The trusted proxies, parsed; the error names the entry that is not an address or block.
    pub fn trusted_proxies(&self) -> Result<TrustedProxies, ConfigError> {
        self.trusted_proxies
            .iter()
            .map(|text| parse_net(text))
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }
}

fn parse_net(text: &str) -> Result<IpNet, ConfigError> {
    let parsed = text
        .parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from));
    // An IPv4 block written in IPv6 form (::ffff:10.0.0.0/104) would never match: peers are
    // compared in their canonical form.
    match parsed {
        Ok(IpNet::V6(net)) if net.addr().to_ipv4_mapped().is_some() => Err(ConfigError::invalid(
            "client_address.trusted_proxies",
            text,
            "write IPv4 addresses in IPv4 form",
        )),
        Ok(net) => Ok(net.trunc()),
        Err(_) => Err(ConfigError::invalid(
            "client_address.trusted_proxies",
            text,
            "expected an IP address or a CIDR block such as 10.0.0.0/8",
        )),
    }
}

/// A list, or one string of comma-separated entries (what an environment variable gives).
fn text_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<String>),
        One(String),
    }
    let entries = match Option::<OneOrMany>::deserialize(deserializer)? {
        None => Vec::new(),
        Some(OneOrMany::Many(entries)) => entries,
        Some(OneOrMany::One(text)) => text.split(',').map(str::to_owned).collect(),
    };
    Ok(entries
        .into_iter()
        .map(|entry| entry.trim().to_owned())
        .filter(|entry| !entry.is_empty())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(proxies: &[&str]) -> ClientAddressConfig {
        ClientAddressConfig {
            header: "X-Forwarded-For".into(),
            trusted_proxies: proxies.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn blocks_and_single_addresses_match_in_canonical_form() {
        let trusted = config(&["10.0.0.0/8", "192.168.1.7", "fd00::/8"])
            .trusted_proxies()
            .unwrap();
        assert!(trusted.contains("10.1.2.3".parse().unwrap()));
        assert!(trusted.contains("192.168.1.7".parse().unwrap()));
        assert!(!trusted.contains("192.168.1.8".parse().unwrap()));
        assert!(trusted.contains("fd12::1".parse().unwrap()));
        // A dual-stack listener reports IPv4 peers as IPv4-mapped IPv6 addresses.
        assert!(trusted.contains("::ffff:10.9.9.9".parse().unwrap()));
        assert!(!trusted.contains("11.0.0.1".parse().unwrap()));
    }

    #[test]
    fn a_bad_entry_is_named() {
        let error = config(&["10.0.0.0/8", "not-an-address"])
            .trusted_proxies()
            .unwrap_err()
            .to_string();
        assert!(error.contains("client_address.trusted_proxies"), "{error}");
        assert!(error.contains("not-an-address"), "{error}");
        let error = config(&["::ffff:10.0.0.0/104"])
            .trusted_proxies()
            .unwrap_err()
            .to_string();
        assert!(error.contains("IPv4 form"), "{error}");
    }

    #[test]
    fn a_comma_separated_string_is_a_list() {
        let parsed: ClientAddressConfig =
            serde_json::from_str(r#"{"trusted_proxies": "10.0.0.0/8, 127.0.0.1"}"#).unwrap();
        assert_eq!(parsed.trusted_proxies, ["10.0.0.0/8", "127.0.0.1"]);
    }
}
