//! Raw sockets, for what a well-behaved client library will not do: exact HTTP exchanges,
//! hand-made handshakes, bad frames, a peer that never reads or never answers. Also a look at
//! the kernel's socket queues.

use std::net::SocketAddr;

use oort_e2e::{TIMEOUT, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// RFC 6455's sample `Sec-WebSocket-Key`, sent by [`handshake_request`].
pub const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// The `Sec-WebSocket-Accept` that [`SAMPLE_KEY`] calls for.
pub const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A response read from a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// Header lines in wire order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body, when one was read (never for a `101`).
    pub body: Vec<u8>,
    /// The open socket after a `101` answer to [`http`], for a test that keeps the connection.
    pub stream: Option<TcpStream>,
}

impl RawResponse {
    /// The first value of `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics if it is not.
    pub fn json(&self) -> serde_json::Value {
        crate::api::parse_json(&self.text())
    }
}

/// Reads a response head byte by byte (so nothing after it is consumed).
pub async fn read_head(stream: &mut TcpStream) -> RawResponse {
    let mut head = Vec::new();
    let read = async {
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            if stream.read(&mut byte).await.expect("read response head") == 0 {
                panic!(
                    "connection closed inside a response head: {:?}",
                    String::from_utf8_lossy(&head)
                );
            }
            head.push(byte[0]);
        }
    };
    tokio::time::timeout(TIMEOUT, read)
        .await
        .expect("response head in time");
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter(|line| !line.is_empty())
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    RawResponse {
        status,
        headers,
        body: Vec::new(),
        stream: None,
    }
}

/// Reads a whole response: the head, then `Content-Length` bytes or everything until EOF.
pub async fn read_response(stream: &mut TcpStream) -> RawResponse {
    let mut response = read_head(stream).await;
    let length = response
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok());
    let read = async {
        match length {
            Some(length) => {
                response.body.resize(length, 0);
                stream
                    .read_exact(&mut response.body)
                    .await
                    .expect("response body");
            }
            None if response.status == 101 => {}
            None => {
                stream
                    .read_to_end(&mut response.body)
                    .await
                    .expect("response body");
            }
        }
    };
    tokio::time::timeout(TIMEOUT, read)
        .await
        .expect("response body in time");
    response
}

/// Sends `request` (a whole HTTP/1.1 request; say `Connection: close` unless it upgrades) as
/// is on a fresh connection and reads one response. A `101` keeps the open socket in `stream`.
pub async fn http(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request).await.expect("write request");
        let mut response = read_response(&mut stream).await;
        if response.status == 101 {
            response.stream = Some(stream);
        }
        response
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .expect("raw HTTP exchange finished in time")
}

/// A WebSocket handshake request for `target` (path and query) with extra header lines
/// (`"Name: value"`), using [`SAMPLE_KEY`].
pub fn handshake_request(addr: SocketAddr, target: &str, extra: &[&str]) -> String {
    let mut request = format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {SAMPLE_KEY}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for line in extra {
        request.push_str(line);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request
}

/// A connection upgraded by hand. The caller decides whether it ever reads.
pub struct RawWs {
    /// The upgraded socket.
    pub stream: TcpStream,
    /// The handshake answer (its head only).
    pub response: RawResponse,
}

impl RawWs {
    /// Writes `bytes` to the upgraded socket as is.
    pub async fn write(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .await
            .expect("write to the upgraded socket");
    }
}

/// Connects with a hand-made handshake; `recv_buffer` shrinks the socket's receive buffer
/// (before connecting, so the advertised window stays small) for peers that never read.
pub async fn ws_connect(
    addr: SocketAddr,
    target: &str,
    extra: &[&str],
    recv_buffer: Option<u32>,
) -> RawWs {
    let socket = TcpSocket::new_v4().expect("socket");
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
    }
    let mut stream = tokio::time::timeout(TIMEOUT, socket.connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let request = handshake_request(addr, target, extra);
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write handshake");
    let response = read_head(&mut stream).await;
    RawWs { stream, response }
}

/// [`ws_connect`] to `/connect?key={key}` with no extra header and the default receive buffer,
/// asserting the `101`.
pub async fn upgraded(addr: SocketAddr, key: &str) -> RawWs {
    let client = ws_connect(addr, &format!("/connect?key={key}"), &[], None).await;
    assert_eq!(client.response.status, 101, "upgrade of {key}");
    client
}

/// A masked client frame (the all-zero mask key leaves the payload as is, which RFC 6455
/// allows).
pub fn client_frame(opcode: u8, payload: &[u8], fin: bool) -> Vec<u8> {
    let mut frame = vec![if fin { 0x80 } else { 0 } | opcode];
    let len = payload.len();
    if len < 126 {
        frame.push(0x80 | len as u8);
    } else if len <= usize::from(u16::MAX) {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        frame.push(0x80 | 127);
        frame.extend_from_slice(&(len as u64).to_be_bytes());
    }
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(payload);
    frame
}

/// One frame from the server (which never masks).
#[derive(Debug)]
pub struct ServerFrame {
    /// The opcode (`0x1` text, `0x8` close, `0x9` ping, ...).
    pub opcode: u8,
    /// The unmasked payload.
    pub payload: Vec<u8>,
}

impl ServerFrame {
    /// The code and reason of a close frame.
    pub fn close(&self) -> Option<(u16, String)> {
        (self.opcode == 8 && self.payload.len() >= 2).then(|| {
            (
                u16::from_be_bytes([self.payload[0], self.payload[1]]),
                String::from_utf8_lossy(&self.payload[2..]).into_owned(),
            )
        })
    }
}

/// The next frame, or `None` at EOF or on a reset.
pub async fn read_frame(stream: &mut TcpStream) -> Option<ServerFrame> {
    let read = async {
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).await.ok()?;
        let opcode = head[0] & 0x0f;
        let len = match head[1] & 0x7f {
            126 => {
                let mut ext = [0u8; 2];
                stream.read_exact(&mut ext).await.ok()?;
                usize::from(u16::from_be_bytes(ext))
            }
            127 => {
                let mut ext = [0u8; 8];
                stream.read_exact(&mut ext).await.ok()?;
                usize::try_from(u64::from_be_bytes(ext)).ok()?
            }
            short => usize::from(short),
        };
        let mut payload = vec![0u8; len];
        stream.read_exact(&mut payload).await.ok()?;
        Some(ServerFrame { opcode, payload })
    };
    tokio::time::timeout(TIMEOUT, read)
        .await
        .expect("a frame or EOF in time")
}

/// Reads frames until a close frame, returning its code and reason (`None` if the connection
/// ended without one). Data frames and pings before it are skipped.
pub async fn read_close(stream: &mut TcpStream) -> Option<(u16, String)> {
    while let Some(frame) = read_frame(stream).await {
        if frame.opcode == 8 {
            return frame.close();
        }
    }
    None
}

/// True once the peer has closed the connection (EOF or reset), reading and discarding
/// anything before that.
pub async fn wait_for_eof(stream: &mut TcpStream) {
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(TIMEOUT, read)
        .await
        .expect("the server closed the connection in time");
}

/// The `(tx_queue, rx_queue)` of the kernel socket whose local end is `local` and remote end is
/// `remote`, from `/proc/net/tcp` (IPv4 only).
pub fn socket_queues(local: SocketAddr, remote: SocketAddr) -> Option<(u64, u64)> {
    fn hex(addr: SocketAddr) -> Option<String> {
        let SocketAddr::V4(v4) = addr else {
            return None;
        };
        Some(format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        ))
    }
    let (local, remote) = (hex(local)?, hex(remote)?);
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 5 || fields[1] != local || fields[2] != remote {
            return None;
        }
        let (tx, rx) = fields[4].split_once(':')?;
        Some((
            u64::from_str_radix(tx, 16).ok()?,
            u64::from_str_radix(rx, 16).ok()?,
        ))
    })
}

/// Waits until the server has read every byte this client sent (its socket's receive queue is
/// empty), so a partial request is known to sit in the server's own buffer.
pub async fn wait_until_server_read(stream: &TcpStream) {
    let local = stream.local_addr().expect("local address");
    let server = stream.peer_addr().expect("peer address");
    eventually(TIMEOUT, "the server to read what was sent", || async {
        socket_queues(server, local)
            .is_some_and(|(_, rx)| rx == 0)
            .then_some(())
    })
    .await;
}

/// Plain text on an upgraded socket: read as frames, its first bytes claim reserved bits, a
/// reserved opcode and an unmasked 104-byte payload, all protocol errors.
pub fn garbage() -> Vec<u8> {
    "this is not a WebSocket frame. ".repeat(8).into_bytes()
}

/// A TCP connection to `addr` from the local address `local` (any of 127.0.0.0/8 works on
/// loopback), so that tests can be several clients with addresses of their own.
pub async fn connect_from(local: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    let local: std::net::IpAddr = local.parse().expect("a local IPv4 address");
    socket
        .bind((local, 0).into())
        .expect("bind the local address");
    tokio::time::timeout(TIMEOUT, socket.connect(addr))
        .await
        .expect("connect in time")
        .expect("connect")
}

/// [`http`] from the local address `local`.
pub async fn http_from(local: &str, addr: SocketAddr, request: &[u8]) -> RawResponse {
    let exchange = async {
        let mut stream = connect_from(local, addr).await;
        stream.write_all(request).await.expect("write request");
        let mut response = read_response(&mut stream).await;
        if response.status == 101 {
            response.stream = Some(stream);
        }
        response
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .expect("raw HTTP exchange finished in time")
}

/// Reads until the peer closes the connection, within `timeout`; the bytes read.
pub async fn read_until_closed(stream: &mut TcpStream, timeout: std::time::Duration) -> Vec<u8> {
    let mut bytes = Vec::new();
    tokio::time::timeout(timeout, stream.read_to_end(&mut bytes))
        .await
        .expect("the peer closed the connection in time")
        .ok();
    bytes
}
