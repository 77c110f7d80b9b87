//! kuiperbelt's `origin_policy`, checked exactly as kuiperbelt (gorilla/websocket) checks it, but
//! before the connect callback rather than after, so a refused origin never reaches the backend.

use http::HeaderMap;
use http::header::{HOST, ORIGIN};
use oort_common::config::OriginPolicy;

/// Whether a connect request's `Origin` is acceptable under `policy`.
pub(crate) fn allowed(policy: OriginPolicy, headers: &HeaderMap) -> bool {
    let host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin = headers.get(ORIGIN).map(|v| v.to_str().unwrap_or("\u{0}"));
    match policy {
        OriginPolicy::None => true,
        // gorilla's checkSameOrigin: no Origin passes; otherwise the Origin's host[:port] must
        // equal the Host header, ignoring ASCII case.
        OriginPolicy::SameOrigin => match origin {
            None => true,
            Some(origin) => {
                url_host(origin).is_some_and(|origin_host| origin_host.eq_ignore_ascii_case(host))
            }
        },
        // An Origin is required, and its hostname must equal the Host's hostname, ports
        // ignored. A Host without a port is refused, as kuiperbelt refuses it.
        OriginPolicy::SameHostname => {
            let Some(host_name) = split_host_port(host) else {
                return false;
            };
            let origin_name = origin.and_then(url_host).map(hostname).unwrap_or_default();
            !host_name.is_empty() && host_name == origin_name
        }
    }
}

/// The `host[:port]` part of an absolute URL, as Go's `url.URL.Host` (no normalisation).
fn url_host(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    Some(
        authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host),
    )
}

/// Go's `url.URL.Hostname`: the host without port and brackets.
fn hostname(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    host.split(':').next().unwrap_or_default()
}

/// Go's `net.SplitHostPort`, keeping only the host; `None` when there is no port.
fn split_host_port(host: &str) -> Option<&str> {
    if let Some(rest) = host.strip_prefix('[') {
        let (name, after) = rest.split_once(']')?;
        return after.starts_with(':').then_some(name);
    }
    let (name, _port) = host.rsplit_once(':')?;
    (!name.contains(':')).then_some(name)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(host: &str, origin: Option<&str>) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(HOST, HeaderValue::from_str(host).unwrap());
        if let Some(origin) = origin {
            map.insert(ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        map
    }

    /// The cases observed against kuiperbelt (reference, section 9).
    #[test]
    fn same_hostname_as_observed() {
        let p = OriginPolicy::SameHostname;
        assert!(allowed(
            p,
            &headers("127.0.0.1:12345", Some("http://127.0.0.1:9999"))
        ));
        assert!(!allowed(
            p,
            &headers("127.0.0.1:12345", Some("http://localhost:12345"))
        ));
        assert!(!allowed(p, &headers("127.0.0.1:12345", Some("null"))));
        assert!(!allowed(p, &headers("127.0.0.1:12345", None)));
        assert!(
            !allowed(p, &headers("127.0.0.1", Some("http://127.0.0.1"))),
            "a Host without a port is refused"
        );
        assert!(allowed(p, &headers("[::1]:80", Some("http://[::1]:8080"))));
    }

    #[test]
    fn same_origin_as_observed() {
        let p = OriginPolicy::SameOrigin;
        assert!(allowed(
            p,
            &headers("127.0.0.1:12345", Some("http://127.0.0.1:12345"))
        ));
        assert!(allowed(p, &headers("127.0.0.1:12345", None)));
        assert!(!allowed(
            p,
            &headers("127.0.0.1:12345", Some("http://127.0.0.1:9999"))
        ));
        assert!(!allowed(
            p,
            &headers("127.0.0.1:12345", Some("http://localhost:12345"))
        ));
        assert!(!allowed(p, &headers("127.0.0.1:12345", Some("null"))));
        assert!(allowed(
            p,
            &headers("Example.COM:80", Some("https://example.com:80/path"))
        ));
    }

    #[test]
    fn none_accepts_everything() {
        assert!(allowed(
            OriginPolicy::None,
            &headers("a:1", Some("http://evil.example"))
        ));
        assert!(allowed(OriginPolicy::None, &HeaderMap::new()));
    }
}
