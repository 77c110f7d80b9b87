//! The demo's chat backend: a plain HTTP application, exactly what a real backend would be.
//! It authenticates nobody (any name is welcome). Its connect callback puts each session in its
//! room's channel (`room.<room>`, from `?room=`, default `lobby`) and names its user; every
//! message, join and leave is published to that room alone with `/v1/publish`, and
//! `GET /rooms/{room}` answers who is in a room (`GET /v1/channels/room.<room>`, with names), so
//! the page shows it without holding API access. One backend serves every node of
//! `oort demo --nodes N`: it calls the API of the node that made the callback, else the first
//! other node that answers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::json;
use tracing::warn;

const SESSION_HEADER: &str = "X-Kuiperbelt-Session";
const ENDPOINT_HEADER: &str = "X-Kuiperbelt-Endpoint";

/// The room a session joins when its `?room=` names none (or an invalid one).
const DEFAULT_ROOM: &str = "lobby";
/// The longest room name: well within a channel name's 128 bytes.
const MAX_ROOM_CHARS: usize = 32;
/// The most members `GET /rooms/{room}` lists (one presence page).
const MAX_LISTED: usize = 100;

/// Someone in the chat: their name and room.
#[derive(Clone)]
struct Person {
    name: String,
    room: String,
}

/// `room`, if it is a room name: 1 to 32 ASCII letters, digits, `_` or `-` (so that
/// `room.<room>` is always a valid channel name).
pub(crate) fn room_name(room: &str) -> Option<&str> {
    let valid = !room.is_empty()
        && room.len() <= MAX_ROOM_CHARS
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    valid.then_some(room)
}

/// The channel a room's sessions are in.
fn channel(room: &str) -> String {
    format!("room.{room}")
}

/// Who is online, and who has been accepted but is not connected yet.
pub(crate) struct Chat {
    names: Mutex<BTreeMap<String, Person>>,
    pending: Mutex<BTreeMap<String, Person>>,
    http: reqwest::Client,
    /// Each node's API base (plain http on loopback), in the order tried.
    gateways: Mutex<Vec<String>>,
}

impl Chat {
    /// The chat, talking to the gateways' APIs at `gateways` (plain http on loopback, e.g.
    /// `http://127.0.0.1:9180`).
    pub(crate) fn new(gateways: Vec<String>) -> anyhow::Result<Arc<Self>> {
        let http = crate::tls::client_builder(rustls::RootCertStore::empty())?
            .timeout(std::time::Duration::from_secs(5))
            .build()?;
        Ok(Arc::new(Self {
            names: Mutex::default(),
            pending: Mutex::default(),
            http,
            gateways: Mutex::new(gateways),
        }))
    }

    /// Replaces the gateways' API bases (once the nodes of `--nodes` know their ports).
    pub(crate) fn set_gateways(&self, gateways: Vec<String>) {
        *self
            .gateways
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = gateways;
    }

    /// The gateways in the order to try: the one whose port `endpoint` (the callback's
    /// `X-Kuiperbelt-Endpoint`, `host:port`) names first.
    fn gateways_for(&self, endpoint: Option<&str>) -> Vec<String> {
        let mut gateways = self
            .gateways
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let port = endpoint
            .and_then(|e| e.rsplit_once(':'))
            .map(|(_, port)| port);
        if let Some(port) = port
            && let Some(at) = gateways
                .iter()
                .position(|g| g.rsplit_once(':').is_some_and(|(_, p)| p == port))
        {
            gateways.rotate_left(at);
        }
        gateways
    }

    fn names(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Person>> {
        self.names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Person>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many of the people online are in `room`.
    fn online_in(&self, room: &str) -> usize {
        self.names().values().filter(|p| p.room == room).count()
    }

    /// The name of the session `key`, online or about to be.
    fn name_of(&self, key: &str) -> Option<String> {
        let online = self.names().get(key).map(|p| p.name.clone());
        online.or_else(|| self.pending().get(key).map(|p| p.name.clone()))
    }

    /// Sends `event` to every session in `room`, on every node, with one `/v1/publish`
    /// (the cluster routes it to the nodes with subscribers), through the node that made the
    /// callback (`endpoint`) or, when it does not answer, the next one that does.
    async fn publish(&self, room: &str, event: serde_json::Value, endpoint: Option<&str>) {
        let body = json!({ "channels": [channel(room)], "data": event.to_string() }).to_string();
        for gateway in self.gateways_for(endpoint) {
            let request = self
                .http
                .post(format!("{gateway}/v1/publish"))
                .header("Content-Type", "application/json")
                .body(body.clone());
            match request.send().await {
                Ok(response) if response.status().is_success() => return,
                Ok(response) => {
                    warn!(%gateway, status = %response.status(), "demo publish refused");
                }
                Err(err) => warn!(%gateway, error = %err, "demo publish failed"),
            }
        }
        warn!("demo publish: no gateway took it");
    }

    /// The room's presence (`GET /v1/channels/room.<room>`) from the first node that answers.
    async fn presence(&self, room: &str) -> Option<serde_json::Value> {
        for gateway in self.gateways_for(None) {
            let request = self.http.get(format!(
                "{gateway}/v1/channels/{}?limit={MAX_LISTED}",
                channel(room)
            ));
            match request.send().await {
                Ok(response) if response.status().is_success() => match response.bytes().await {
                    Ok(body) => match serde_json::from_slice(&body) {
                        Ok(presence) => return Some(presence),
                        Err(err) => warn!(%gateway, error = %err, "demo presence: not JSON"),
                    },
                    Err(err) => warn!(%gateway, error = %err, "demo presence failed"),
                },
                Ok(response) => {
                    warn!(%gateway, status = %response.status(), "demo presence refused");
                }
                Err(err) => warn!(%gateway, error = %err, "demo presence failed"),
            }
        }
        None
    }
}

pub(crate) fn routes(chat: Arc<Chat>) -> Router {
    Router::new()
        .route("/connect", any(connect))
        .route("/establish", post(establish))
        .route("/receive", post(receive))
        .route("/close", post(close))
        .route("/rooms/{room}", get(room))
        .with_state(chat)
}

fn endpoint_of(headers: &HeaderMap) -> Option<&str> {
    headers.get(ENDPOINT_HEADER).and_then(|v| v.to_str().ok())
}

fn session_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The value of `?key=` in `query`, if any.
fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// Accepts anyone, naming them from `?name=` (trimmed, at most 24 characters, no control
/// characters) and putting them in `?room=`'s channel: the session starts subscribed, so it
/// hears its own arrival.
async fn connect(State(chat): State<Arc<Chat>>, RawQuery(query): RawQuery) -> Response {
    let name = query_param(query.as_deref(), "name")
        .map(|name| {
            name.chars()
                .filter(|c| !c.is_control())
                .collect::<String>()
                .trim()
                .chars()
                .take(24)
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "anonymous".to_owned());
    let room = query_param(query.as_deref(), "room")
        .and_then(|room| room_name(&room).map(str::to_owned))
        .unwrap_or_else(|| DEFAULT_ROOM.to_owned());
    let key = format!("{:016x}", rand::random::<u64>());
    let online = chat.online_in(&room) + 1;
    let person = Person {
        name: name.clone(),
        room: room.clone(),
    };
    chat.pending().insert(key.clone(), person);
    let welcome = json!({ "type": "welcome", "you": name, "room": room, "online": online });
    let channels = channel(&room);
    let mut response = (
        StatusCode::OK,
        [
            (SESSION_HEADER, key.as_str()),
            ("X-Oort-Channels", channels.as_str()),
            ("Content-Type", "application/json"),
        ],
        welcome.to_string(),
    )
        .into_response();
    // The user is the name; header values may carry its UTF-8 bytes as they are.
    if let Ok(user) = HeaderValue::from_bytes(name.as_bytes()) {
        response.headers_mut().insert("x-oort-user", user);
    }
    response
}

async fn establish(State(chat): State<Arc<Chat>>, headers: HeaderMap) -> StatusCode {
    let Some(key) = session_of(&headers) else {
        return StatusCode::BAD_REQUEST;
    };
    // A resumed session (`X-Oort-Resumed`, no connect callback) is someone already online.
    if chat.names().contains_key(&key) {
        return StatusCode::OK;
    }
    // The session is announced only once its WebSocket is open.
    let Some(person) = chat.pending().remove(&key) else {
        return StatusCode::NOT_FOUND;
    };
    chat.names().insert(key, person.clone());
    let online = chat.online_in(&person.room);
    chat.publish(
        &person.room,
        json!({ "type": "joined", "name": person.name, "online": online }),
        endpoint_of(&headers),
    )
    .await;
    StatusCode::OK
}

async fn receive(State(chat): State<Arc<Chat>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let Some(key) = session_of(&headers) else {
        return StatusCode::BAD_REQUEST;
    };
    let Some(person) = chat.names().get(&key).cloned() else {
        return StatusCode::NOT_FOUND;
    };
    let text: String = String::from_utf8_lossy(&body).chars().take(2000).collect();
    chat.publish(
        &person.room,
        json!({ "type": "message", "from": person.name, "text": text }),
        endpoint_of(&headers),
    )
    .await;
    StatusCode::OK
}

async fn close(State(chat): State<Arc<Chat>>, headers: HeaderMap) -> StatusCode {
    let Some(key) = session_of(&headers) else {
        return StatusCode::BAD_REQUEST;
    };
    chat.pending().remove(&key);
    let person = chat.names().remove(&key);
    if let Some(person) = person {
        let online = chat.online_in(&person.room);
        chat.publish(
            &person.room,
            json!({ "type": "left", "name": person.name, "online": online }),
            endpoint_of(&headers),
        )
        .await;
    }
    StatusCode::OK
}

/// `GET /rooms/{room}`: who is in the room, cluster-wide, from the gateways' presence:
/// `{"room","sessions":N,"members":[{"name","node"}]}` (at most 100 members, by name), or 400
/// for a bad room name and 502 when no node answers.
async fn room(State(chat): State<Arc<Chat>>, Path(room): Path<String>) -> Response {
    let Some(room) = room_name(&room) else {
        return (StatusCode::BAD_REQUEST, "not a room name").into_response();
    };
    let Some(presence) = chat.presence(room).await else {
        return (StatusCode::BAD_GATEWAY, "no gateway answered").into_response();
    };
    let mut members: Vec<(String, String)> = presence["members"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|member| {
            let name = chat.name_of(member["session"].as_str()?)?;
            Some((name, member["node"].as_str().unwrap_or_default().to_owned()))
        })
        .collect();
    members.sort();
    let members: Vec<_> = members
        .into_iter()
        .map(|(name, node)| json!({ "name": name, "node": node }))
        .collect();
    axum::Json(json!({ "room": room, "sessions": presence["sessions"], "members": members }))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_make_valid_channel_names() {
        assert_eq!(room_name("lobby"), Some("lobby"));
        assert_eq!(room_name("rust-2024_b"), Some("rust-2024_b"));
        for bad in [
            "",
            "a.b",
            "a b",
            "é",
            "a/b",
            &"x".repeat(MAX_ROOM_CHARS + 1),
        ] {
            assert_eq!(room_name(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn connect_puts_the_session_in_its_room_and_names_its_user() {
        let chat = Chat::new(Vec::new()).unwrap();
        let query = Some("name=%20%C3%89lodie%0A&room=rust".to_owned());
        let answer = connect(State(chat.clone()), RawQuery(query)).await;
        assert_eq!(answer.status(), StatusCode::OK);
        let headers = answer.headers();
        assert_eq!(headers["x-oort-channels"], "room.rust");
        assert_eq!(headers["x-oort-user"].as_bytes(), "Élodie".as_bytes());
        let key = headers[SESSION_HEADER].to_str().unwrap().to_owned();
        assert_eq!(chat.name_of(&key).as_deref(), Some("Élodie"));

        let answer = connect(State(chat), RawQuery(Some("room=no.dots".to_owned()))).await;
        assert_eq!(answer.headers()["x-oort-channels"], "room.lobby");
        assert_eq!(answer.headers()["x-oort-user"], "anonymous");
    }
}
