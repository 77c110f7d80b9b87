//! Listener addresses: `host:port`, `:port` (every interface, as kuiperbelt's `port`) or
//! `unix:/path`.

use std::fmt;
use std::path::PathBuf;

/// Where a listener binds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP port; no host means every interface, IPv6 and IPv4.
    Tcp {
        /// Host name or IP literal (without brackets), if any.
        host: Option<String>,
        /// The port (0 picks a free one).
        port: u16,
    },
    /// A unix socket path.
    Unix(PathBuf),
}

impl ListenAddr {
    /// Parses `host:port`, `[v6]:port`, `:port`, a bare port, `unix:/path` or an absolute path.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("a unix socket address needs a path, e.g. unix:/run/oort.sock".into());
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if text.starts_with('/') {
            return Ok(Self::Unix(PathBuf::from(text)));
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (host, port),
            None => ("", text),
        };
        let port: u16 = port.parse().map_err(|_| {
            format!("expected host:port, :port or unix:/path, and {port:?} is not a port number")
        })?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = (!host.is_empty()).then(|| host.to_owned());
        Ok(Self::Tcp { host, port })
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp { host: None, port } => write!(f, ":{port}"),
            Self::Tcp {
                host: Some(host),
                port,
            } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Self::Tcp {
                host: Some(host),
                port,
            } => write!(f, "{host}:{port}"),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let tcp = |host: Option<&str>, port| ListenAddr::Tcp {
            host: host.map(str::to_owned),
            port,
        };
        assert_eq!(ListenAddr::parse(":9180"), Ok(tcp(None, 9180)));
        assert_eq!(ListenAddr::parse("9180"), Ok(tcp(None, 9180)));
        assert_eq!(
            ListenAddr::parse("127.0.0.1:0"),
            Ok(tcp(Some("127.0.0.1"), 0))
        );
        assert_eq!(ListenAddr::parse("[::1]:80"), Ok(tcp(Some("::1"), 80)));
        assert_eq!(
            ListenAddr::parse("unix:/tmp/a.sock"),
            Ok(ListenAddr::Unix("/tmp/a.sock".into()))
        );
        assert_eq!(
            ListenAddr::parse("/tmp/a.sock"),
            Ok(ListenAddr::Unix("/tmp/a.sock".into()))
        );
        assert!(ListenAddr::parse("localhost:http").is_err());
        assert!(ListenAddr::parse(":70000").is_err());
        assert!(ListenAddr::parse("unix:").is_err());
    }

    #[test]
    fn displays_what_it_parses() {
        for text in [":9180", "127.0.0.1:1", "[::1]:80", "unix:/tmp/a.sock"] {
            assert_eq!(ListenAddr::parse(text).unwrap().to_string(), text);
        }
    }
}
