//! Clients of the RPC API (`oort.v1.GatewayService`) for the tests: connectrpc's generated
//! client over h2c (gRPC, or Connect), with the token when the gateway has one.

use std::time::Duration;

use connectrpc::Protocol;
use connectrpc::client::{ClientConfig, Http2Connection, ServerStream, SharedHttp2Connection};
use oort_common::rpc::__buffa::oneof::event::Kind;
use oort_common::rpc::__buffa::oneof::payload::Data;
use oort_common::rpc::__buffa::view::WatchEventsResponseView;
pub use oort_common::rpc::WatchEventsResponse;
use oort_common::rpc::{Event, GatewayServiceClient, WatchEventsRequest};

pub use connectrpc::ErrorCode;

pub type Client = GatewayServiceClient<SharedHttp2Connection>;
pub type Events = ServerStream<
    <SharedHttp2Connection as connectrpc::client::ClientTransport>::ResponseBody,
    WatchEventsResponseView<'static>,
>;

/// A client of the gateway at `api_url` (`http://host:port`) speaking `protocol` over h2c,
/// whose HTTP/2 stream window is `window` bytes (a small one makes a slow reader show soon).
pub async fn client(api_url: &str, protocol: Protocol, token: Option<&str>, window: u32) -> Client {
    let uri: http::Uri = api_url.parse().expect("an API URL");
    let connection = Http2Connection::builder()
        .initial_stream_window_size(window)
        .initial_connection_window_size(window)
        .connect_plaintext(uri.clone())
        .await
        .expect("an h2c connection to the API")
        .shared(64);
    let mut config = ClientConfig::new(uri).with_protocol(protocol);
    if let Some(token) = token {
        config = config.with_default_header("authorization", format!("Bearer {token}"));
    }
    GatewayServiceClient::new(connection, config)
}

/// Starts a `WatchEvents` consumer (`group` empty: every event).
pub async fn watch(client: &Client, group: &str) -> Result<Events, connectrpc::ConnectError> {
    client
        .watch_events(WatchEventsRequest {
            group: group.to_owned(),
            ..Default::default()
        })
        .await
}

/// The text of a client-message event (`None` for other events and binary messages).
pub fn text_of(event: &Event) -> Option<String> {
    match &event.kind {
        Some(Kind::Message(message)) => match message.payload.as_option()?.data.as_ref()? {
            Data::Text(text) => Some(text.clone()),
            Data::Binary(_) => None,
        },
        _ => None,
    }
}

/// The next event, within `timeout`; panics on an error or the end of the stream.
pub async fn next_event(events: &mut Events, timeout: Duration) -> Event {
    match tokio::time::timeout(timeout, events.message::<WatchEventsResponse>()).await {
        Ok(Ok(Some(message))) => message
            .to_owned_message()
            .event
            .into_option()
            .expect("a WatchEvents response carries an event"),
        Ok(Ok(None)) => panic!("the event stream ended"),
        Ok(Err(err)) => panic!("the event stream failed: {err:?}"),
        Err(_) => panic!("no event within {timeout:?}"),
    }
}
