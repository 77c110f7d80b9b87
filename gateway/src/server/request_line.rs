//! The first request line of a client connection, read before hyper takes the connection. On a
//! listener shared with the backend API it decides which head limit applies (the path is known
//! once the line is in); and a connection that sends nothing holds no HTTP buffer meanwhile.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The first read's size: a request line with a long query fits, a whole browser handshake
/// usually does.
const FIRST_READ: usize = 2048;

/// Reads until the first line feed or until `limit` bytes, and returns what was read (which
/// may go past the line: hyper reads it again). `None` when the peer closed first.
pub(crate) async fn read_first_line<I>(io: &mut I, limit: usize) -> std::io::Result<Option<Bytes>>
where
    I: AsyncRead + Unpin,
{
    let mut buf = BytesMut::with_capacity(FIRST_READ.min(limit));
    let mut searched = 0;
    loop {
        if buf[searched..].contains(&b'\n') || buf.len() >= limit {
            return Ok(Some(buf.freeze()));
        }
        searched = buf.len();
        if buf.capacity() == buf.len() {
            // Double, but never past the limit: the head limit bounds this buffer too.
            buf.reserve(buf.len().min(limit - buf.len()));
        }
        if io.read_buf(&mut buf).await? == 0 {
            return Ok(None);
        }
    }
}

/// True when `first` starts a request of the HTTP transports: the Comet connect at
/// `stream_path`, a session stream below it, or the browser client script.
pub(crate) fn is_stream_request(first: &[u8], stream_path: &str) -> bool {
    let Some(path) = request_path(first) else {
        return false;
    };
    (!stream_path.is_empty()
        && (path == stream_path
            || path
                .strip_prefix(stream_path)
                .is_some_and(|rest| rest.starts_with('/'))))
        || path == "/oort.js"
        || path == "/oort.d.ts"
}

fn request_path(first: &[u8]) -> Option<String> {
    let line = first.split(|b| *b == b'\n').next().unwrap_or_default();
    let target = line.split(|b| *b == b' ').nth(1)?;
    let target = std::str::from_utf8(target).ok()?;
    http::Uri::try_from(target)
        .ok()
        .map(|uri| uri.path().to_owned())
}

/// True when `first` starts a request for the connect path (`connect_path`, or anything below
/// it when it ends in `/`).
pub(crate) fn is_connect_request(first: &[u8], connect_path: &str) -> bool {
    let line = first.split(|b| *b == b'\n').next().unwrap_or_default();
    let mut words = line.split(|b| *b == b' ');
    let Some(target) = words.nth(1) else {
        return false;
    };
    let Ok(target) = std::str::from_utf8(target) else {
        return false;
    };
    let path = match http::Uri::try_from(target) {
        Ok(uri) => uri.path().to_owned(),
        Err(_) => return false,
    };
    path == connect_path || (connect_path.ends_with('/') && path.starts_with(connect_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_requests_are_told_apart() {
        let yes: [&[u8]; 4] = [
            b"GET /stream/abc?offset=-1&live=sse HTTP/1.1\r\n",
            b"POST /stream HTTP/1.1\r\n",
            b"GET /oort.js HTTP/1.1\r\n",
            b"DELETE /stream/k%20y HTTP/1.1\r\n",
        ];
        for first in yes {
            assert!(is_stream_request(first, "/stream"), "{first:?}");
        }
        let no: [&[u8]; 3] = [
            b"GET /streams HTTP/1.1\r\n",
            b"POST /send HTTP/1.1\r\n",
            b"GET /connect HTTP/1.1\r\n",
        ];
        for first in no {
            assert!(!is_stream_request(first, "/stream"), "{first:?}");
        }
        assert!(!is_stream_request(b"GET /stream/a HTTP/1.1\r\n", ""));
    }

    #[tokio::test]
    async fn reads_to_the_first_line_feed_or_the_limit() {
        let (mut near, mut far) = tokio::io::duplex(64 << 10);
        tokio::io::AsyncWriteExt::write_all(&mut far, b"GET /connect?key=a HTTP/1.1\r\nHost: x")
            .await
            .unwrap();
        let first = read_first_line(&mut near, 16 << 10).await.unwrap().unwrap();
        assert!(first.starts_with(b"GET /connect?key=a HTTP/1.1\r\n"));

        let (mut near, mut far) = tokio::io::duplex(64 << 10);
        tokio::io::AsyncWriteExt::write_all(&mut far, &[b'a'; 10_000])
            .await
            .unwrap();
        let first = read_first_line(&mut near, 4096).await.unwrap().unwrap();
        assert_eq!(first.len(), 4096, "never more than the limit");

        let (mut near, far) = tokio::io::duplex(64);
        drop(far);
        assert_eq!(read_first_line(&mut near, 4096).await.unwrap(), None);
    }

    #[test]
    fn connect_requests_are_told_from_the_rest() {
        let line = |text: &str| format!("{text}\r\nHost: x\r\n\r\n").into_bytes();
        assert!(is_connect_request(
            &line("GET /connect?key=a HTTP/1.1"),
            "/connect"
        ));
        assert!(is_connect_request(
            &line("GET /connect HTTP/1.1"),
            "/connect"
        ));
        assert!(!is_connect_request(
            &line("GET /connect/x HTTP/1.1"),
            "/connect"
        ));
        assert!(is_connect_request(
            &line("GET /socket.io/?EIO=4 HTTP/1.1"),
            "/socket.io/"
        ));
        assert!(is_connect_request(
            &line("GET http://h/connect HTTP/1.1"),
            "/connect"
        ));
        assert!(!is_connect_request(
            &line("POST /send HTTP/1.1"),
            "/connect"
        ));
        assert!(!is_connect_request(b"GET /conn", "/connect"));
        assert!(!is_connect_request(b"garbage", "/connect"));
    }
}
