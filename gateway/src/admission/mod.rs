//! Admission on the public port: what a client connection may cost before the connect callback
//! has accepted it, and how much one client address may ask for.
//!
//! Three bounds, checked in this order:
//! 1. per address (an IPv6 /64 counts as one), `limits.address_connections` twice over: at
//!    accept, for connections whose first request line has not arrived (what a silent flood
//!    holds); once that line shows a client request, for open client connections, together
//!    with attempts per second. A peer that is a trusted proxy is not limited itself: the
//!    address it passed on is checked when the connect request has been read. Refused with 429.
//! 2. in total: every connection reserves what it may cost from `limits.handshake_memory`
//!    (a small share at accept, the rest, mostly its head buffer, from its first byte) until it
//!    is upgraded or closed, and waits for room when the budget is spent (503 after
//!    `limits.client_head_timeout`).
//! 3. per connection: the head limit and head timeout of its class (hyper enforces them).
//!
//! The backend's own connections, when the API shares the client listener, are not limited
//! per address (a backend that opens a connection per `/send` would soon be refused): their
//! pending place is given back once their first request line shows they are not for the
//! connect path.

mod address;
mod budget;
mod log;
mod per_address;
mod refusal;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName};
use metrics::Counter;
use oort_common::config::{Config, ConfigError, HANDSHAKE_SILENT_SHARE, TrustedProxies};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

pub(crate) use address::AddressKey;
pub(crate) use budget::Reservation;
pub(crate) use per_address::AddressSlot;
use refusal::answer_unread;
pub(crate) use refusal::{Refusal, RefusalReason};

use crate::metrics::Metrics;
use budget::HandshakeBudget;
use log::RefusalLog;
use per_address::{AddressLimits, AddressRefusal};

/// How long a client should wait after being refused for having too many connections open, or
/// because the node is busy: long enough to matter, short enough for a real user.
const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);
const CROWDED_RETRY_AFTER: Duration = Duration::from_secs(5);
/// Refused connections answered at once at most; beyond, a refused connection is closed
/// without an answer, so a flood of refusals costs no more than this many small tasks.
const MAX_ANSWERING: usize = 1024;

/// The admission state of one gateway.
pub(crate) struct Admission {
    budget: HandshakeBudget,
    shared_api: Arc<Semaphore>,
    addresses: Arc<AddressLimits>,
    trusted: TrustedProxies,
    header: Option<HeaderName>,
    handshake_reservation: usize,
    log: RefusalLog,
    refusals: [Counter; RefusalReason::ALL.len()],
    answering: Arc<Semaphore>,
}

/// A connection accepted from `key` (`None`: a trusted proxy or a unix socket) whose first
/// request line is not known yet, holding its pending place under
/// `limits.address_connections`.
pub(crate) struct Accepted {
    _pending: Option<AddressSlot>,
    key: Option<AddressKey>,
}

/// What the per-address checks decided for one connection. Every request of the connection
/// carries it (a request extension), and an upgraded connection keeps it, so the address's
/// slot is given back when the last of them ends.
pub(crate) struct AdmittedPeer {
    _slot: Option<AddressSlot>,
    /// The connection's own address was checked; when false (a trusted proxy's connection, or a
    /// backend API connection), each connect is checked against its client address instead.
    pub address_checked: bool,
}

/// The request extension holding an [`AdmittedPeer`].
#[derive(Clone)]
pub(crate) struct PeerTicket(pub Arc<AdmittedPeer>);

impl Admission {
    pub(crate) fn new(config: &Config, metrics: &Metrics) -> Result<Self, ConfigError> {
        let limits = &config.limits;
        let header = if config.client_address.header.is_empty() {
            None
        } else {
            let name = &config.client_address.header;
            Some(HeaderName::try_from(name.as_str()).map_err(|err| {
                ConfigError::invalid("client_address.header", name, err.to_string())
            })?)
        };
        Ok(Self {
            budget: HandshakeBudget::new(
                limits.handshake_memory,
                // As many may wait as the budget holds handshakes: a waiting connection costs
                // a few KiB, a sixth of a handshake's reservation, so waiting adds a sixth to
                // the bound at most.
                limits.handshake_memory / limits.handshake_reservation(),
                metrics.handshake_memory.clone(),
                metrics.handshakes.clone(),
            ),
            shared_api: Arc::new(Semaphore::new(
                limits
                    .shared_api_connections
                    .clamp(1, Semaphore::MAX_PERMITS),
            )),
            addresses: Arc::new(AddressLimits::new(
                limits.address_connections,
                limits.address_connect_rate,
                limits.address_connect_burst,
            )),
            trusted: config.client_address.trusted_proxies()?,
            header,
            handshake_reservation: limits.handshake_reservation(),
            log: RefusalLog::new(),
            refusals: metrics.refusals.clone(),
            answering: Arc::new(Semaphore::new(MAX_ANSWERING)),
        })
    }

    /// The accept-time check of a new connection from `peer` (`None`: a unix socket): its
    /// place under `limits.address_connections`.
    pub(crate) fn accept(&self, peer: Option<SocketAddr>) -> Result<Accepted, Refusal> {
        let key = peer
            .map(|peer| peer.ip())
            .filter(|ip| !self.trusted.contains(*ip))
            .map(AddressKey::of);
        let slot = match key {
            Some(key) if !self.addresses.unlimited() => Some(
                self.addresses
                    .hold_pending(key)
                    .map_err(|refusal| self.address_refusal(refusal, key))?,
            ),
            _ => None,
        };
        Ok(Accepted {
            _pending: slot,
            key,
        })
    }

    /// A connection whose first request is a client's: it counts against both per-address
    /// limits, as an attempt and as an open connection.
    pub(crate) fn admit_client(&self, accepted: Accepted) -> Result<PeerTicket, Refusal> {
        let slot = match accepted.key {
            Some(key) if !self.addresses.unlimited() => Some(
                self.addresses
                    .admit(key)
                    .map_err(|refusal| self.address_refusal(refusal, key))?,
            ),
            _ => None,
        };
        Ok(PeerTicket(Arc::new(AdmittedPeer {
            _slot: slot,
            address_checked: accepted.key.is_some(),
        })))
    }

    /// A backend API connection on the shared listener: no longer limited per address.
    pub(crate) fn admit_backend(&self, accepted: Accepted) -> PeerTicket {
        drop(accepted);
        PeerTicket(Arc::new(AdmittedPeer {
            _slot: None,
            address_checked: false,
        }))
    }

    /// The per-address check of a connect on a connection whose own address was not checked,
    /// against its client address: the one in `client_address.header` from a trusted proxy, else
    /// the peer's. The slot must be kept as long as the connection.
    pub(crate) fn admit_forwarded(
        &self,
        peer: Option<SocketAddr>,
        headers: &HeaderMap,
    ) -> Result<Option<AddressSlot>, Refusal> {
        if self.addresses.unlimited() {
            return Ok(None);
        }
        let Some(key) = self.client_address(peer, headers).map(AddressKey::of) else {
            return Ok(None);
        };
        self.addresses
            .admit(key)
            .map(Some)
            .map_err(|refusal| self.address_refusal(refusal, key))
    }

    /// The client's address as far as it can be known: the header's, if the peer is trusted
    /// to set it, else the peer's.
    pub(crate) fn client_address(
        &self,
        peer: Option<SocketAddr>,
        headers: &HeaderMap,
    ) -> Option<IpAddr> {
        let peer_ip = peer.map(|peer| peer.ip().to_canonical());
        let trusted_peer = peer_ip.is_none_or(|ip| self.trusted.contains(ip));
        let forwarded = match &self.header {
            Some(header) if trusted_peer => {
                address::forwarded_client(headers, header, &self.trusted)
            }
            _ => None,
        };
        forwarded.or(peer_ip)
    }

    /// Room in `limits.handshake_memory` for a new client connection that has sent nothing
    /// yet ([`HANDSHAKE_SILENT_SHARE`]).
    pub(crate) async fn reserve_handshake(
        &self,
        deadline: Instant,
        peer: Option<SocketAddr>,
    ) -> Result<Reservation, Refusal> {
        match self
            .budget
            .reserve_handshake(HANDSHAKE_SILENT_SHARE, deadline)
            .await
        {
            Some(reservation) => Ok(reservation),
            None => Err(self.refuse(RefusalReason::HandshakeMemory, BUSY_RETRY_AFTER, peer)),
        }
    }

    /// The rest of a handshake's room, once its first byte arrived: its head buffer and
    /// hyper's state.
    pub(crate) async fn reserve_head(
        &self,
        deadline: Instant,
        peer: Option<SocketAddr>,
    ) -> Result<Reservation, Refusal> {
        self.reserve_body(
            self.handshake_reservation
                .saturating_sub(HANDSHAKE_SILENT_SHARE),
            deadline,
            peer,
        )
        .await
    }

    /// Room in `limits.handshake_memory` for a handshake's request body of up to `bytes`.
    pub(crate) async fn reserve_body(
        &self,
        bytes: usize,
        deadline: Instant,
        peer: Option<SocketAddr>,
    ) -> Result<Reservation, Refusal> {
        match self.budget.reserve(bytes, deadline).await {
            Some(reservation) => Ok(reservation),
            None => Err(self.refuse(RefusalReason::HandshakeMemory, BUSY_RETRY_AFTER, peer)),
        }
    }

    /// A turn under `limits.shared_api_connections`, for a connection's whole life.
    pub(crate) async fn shared_api_turn(
        &self,
        deadline: Instant,
        peer: Option<SocketAddr>,
    ) -> Result<OwnedSemaphorePermit, Refusal> {
        let acquire = self.shared_api.clone().acquire_owned();
        match tokio::time::timeout_at(deadline, acquire).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(self.refuse(RefusalReason::SharedApiConnections, BUSY_RETRY_AFTER, peer)),
        }
    }

    /// Answers a refused connection, unless [`MAX_ANSWERING`] are being answered already; then
    /// it is closed at once.
    pub(crate) async fn answer<I>(&self, io: I, refusal: Refusal)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        if let Ok(_turn) = self.answering.clone().try_acquire_owned() {
            answer_unread(io, refusal).await;
        }
    }

    /// Counts and logs a refusal that concerns `peer` (if known).
    pub(crate) fn refuse(
        &self,
        reason: RefusalReason,
        retry_after: Duration,
        peer: Option<SocketAddr>,
    ) -> Refusal {
        let address = peer.map(|peer| AddressKey::of(peer.ip()));
        self.count(reason, address.as_ref());
        Refusal {
            reason,
            retry_after,
        }
    }

    /// Counts and logs (at a bounded rate) a refusal.
    pub(crate) fn count(&self, reason: RefusalReason, address: Option<&AddressKey>) {
        if let Some(index) = RefusalReason::ALL.iter().position(|r| *r == reason) {
            self.refusals[index].increment(1);
        }
        self.log
            .refused(reason, address.map(|key| key as &dyn std::fmt::Display));
    }

    fn address_refusal(&self, refusal: AddressRefusal, key: AddressKey) -> Refusal {
        let (reason, retry_after) = match refusal {
            AddressRefusal::TooManyConnections => {
                (RefusalReason::AddressConnections, CROWDED_RETRY_AFTER)
            }
            AddressRefusal::TooFast(wait) => (RefusalReason::AddressRate, wait),
        };
        self.count(reason, Some(&key));
        Refusal {
            reason,
            retry_after,
        }
    }
}
