//! The backend API as RPCs (`oort.v1.GatewayService`, common/proto/oort/v1/gateway.proto),
//! served on the API listener beside the JSON routes by `connectrpc`: Connect (JSON and
//! protobuf, GET for the read-only calls), gRPC and gRPC-Web, over HTTP/1.1 and h2c. Every
//! call runs the same operation as its JSON route (`api::v1`), with the same token, request
//! id, access log line and metrics, and the same error messages under Connect/gRPC codes.

mod convert;
mod grpc_web_text;
mod watch;

use std::sync::Arc;

use connectrpc::{
    ConnectError, ConnectRpcService, ErrorCode, Limits, RequestContext, Response, ServiceRequest,
    ServiceResult, ServiceStream,
};
use oort_common::SessionKey;
use oort_common::rpc::{self, GatewayService, GatewayServiceServer};

use super::access_log::RequestId;
use super::v1;
use crate::error_code::ErrorCode as OortCode;
use crate::state::AppState;
pub(crate) use convert::rpc_payload;
use convert::{coded, count, error};
pub(crate) use grpc_web_text::grpc_web_text;

/// The path every RPC of the service is under.
pub(crate) const SERVICE_PATH: &str = "/oort.v1.GatewayService/{method}";

/// The RPC service, ready to mount on the API router.
pub(crate) fn service(state: &Arc<AppState>) -> ConnectRpcService<GatewayServiceServer<Rpc>> {
    let max = state.config.limits.max_send_body;
    let limits = Limits::default()
        .with_max_request_body_size(max)
        .with_max_message_size(max);
    ConnectRpcService::new(GatewayServiceServer::new(Rpc {
        state: state.clone(),
    }))
    .with_limits(limits)
}

pub(crate) struct Rpc {
    state: Arc<AppState>,
}

impl Rpc {
    /// The caller's token, checked as the JSON routes check it; the request id the access log
    /// gave the call.
    fn admit(&self, ctx: &RequestContext) -> Result<String, ConnectError> {
        super::auth::check_token(&self.state, ctx.headers())
            .map_err(|reason| coded(ErrorCode::Unauthenticated, OortCode::Unauthorized, reason))?;
        Ok(ctx
            .extensions()
            .get::<RequestId>()
            .map(|id| id.0.clone())
            .unwrap_or_default())
    }

    /// `Subscribe` (`join`) and `Unsubscribe`.
    async fn membership(
        &self,
        sessions: Vec<String>,
        channels: Vec<String>,
        join: bool,
    ) -> Result<rpc::Delivery, ConnectError> {
        let answer = v1::membership_of(&self.state, sessions, channels, join)
            .await
            .map_err(error)?;
        Ok(convert::delivery(answer))
    }
}

#[allow(refining_impl_trait)]
impl GatewayService for Rpc {
    async fn send(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, rpc::SendRequest>,
    ) -> ServiceResult<rpc::SendResponse> {
        let request_id = self.admit(&ctx)?;
        let request = request.to_owned_message();
        let payload = convert::required_payload(&request.payload)?;
        let strict = request.strict.unwrap_or(self.state.config.strict_broadcast);
        let (delivery, users) =
            v1::send_delivery(request.sessions, request.users, payload, strict).map_err(error)?;
        let answer = v1::send_to(&self.state, delivery, &users, &request_id).await;
        Response::ok(rpc::SendResponse {
            delivery: convert::delivery(answer).into(),
            ..Default::default()
        })
    }

    async fn send_batch(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, rpc::SendBatchRequest>,
    ) -> ServiceResult<rpc::SendBatchResponse> {
        let request_id = self.admit(&ctx)?;
        let request = request.to_owned_message();
        if request.messages.is_empty() {
            return Err(coded(
                ErrorCode::InvalidArgument,
                OortCode::InvalidRequest,
                "messages: must hold at least one message",
            ));
        }
        let strict = request.strict.unwrap_or(self.state.config.strict_broadcast);
        let mut deliveries = Vec::with_capacity(request.messages.len());
        for (index, message) in request.messages.into_iter().enumerate() {
            let payload = convert::payload(&message.payload).ok_or_else(|| {
                coded(
                    ErrorCode::InvalidArgument,
                    OortCode::InvalidRequest,
                    format!("messages[{index}].payload: required (text or binary)"),
                )
            })?;
            deliveries
                .push(v1::batch_delivery(message.sessions, payload, strict, index).map_err(error)?);
        }
        let answer = v1::deliver_batch(&self.state, deliveries, &request_id).await;
        Response::ok(convert::batch(answer))
    }

    async fn close(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, rpc::CloseRequest>,
    ) -> ServiceResult<rpc::CloseResponse> {
        let request_id = self.admit(&ctx)?;
        let request = request.to_owned_message();
        let last_message = convert::payload(&request.payload);
        let reason = (!request.reason.is_empty()).then_some(request.reason);
        let delivery = v1::close_delivery(
            request.sessions,
            last_message,
            request.code.map(i64::from),
            reason,
        )
        .map_err(error)?;
        let answer = v1::deliver(&self.state, delivery, &request_id).await;
        Response::ok(rpc::CloseResponse {
            delivery: convert::delivery(answer).into(),
            ..Default::default()
        })
    }

    async fn broadcast(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, rpc::BroadcastRequest>,
    ) -> ServiceResult<rpc::BroadcastResponse> {
        let request_id = self.admit(&ctx)?;
        let payload = convert::required_payload(&request.to_owned_message().payload)?;
        let sessions = v1::broadcast_all(&self.state, &payload, &request_id)
            .await
            .map_err(error)?;
        Response::ok(rpc::BroadcastResponse {
            sessions: sessions.map(|n| n as u64),
            ..Default::default()
        })
    }

    async fn get_session(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, rpc::GetSessionRequest>,
    ) -> ServiceResult<rpc::GetSessionResponse> {
        self.admit(&ctx)?;
        let key = request.to_owned_message().session;
        if key.is_empty() {
            return Err(coded(
                ErrorCode::InvalidArgument,
                OortCode::InvalidRequest,
                "session: must name a session key",
            ));
        }
        Response::ok(get_session(&self.state, SessionKey::from(key)).await?)
    }

    async fn get_cluster(
        &self,
        ctx: RequestContext,
        _request: ServiceRequest<'_, rpc::GetClusterRequest>,
    ) -> ServiceResult<rpc::GetClusterResponse> {
        self.admit(&ctx)?;
        Response::ok(get_cluster(&self.state))
    }

    async fn publish(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, rpc::PublishRequest>,
    ) -> ServiceResult<rpc::PublishResponse> {
        let request_id = self.admit(&ctx)?;
        let request = request.to_owned_message();
        let channels = v1::checked_channels(&self.state, request.channels).map_err(error)?;
        let payload = convert::required_payload(&request.payload)?;
        match v1::publish_to(&self.state, channels, &payload, request.strict, &request_id).await {
            Ok(answer) => Response::ok(rpc::PublishResponse {
                sessions: answer.sessions,
                nodes: count(answer.nodes),
                unreachable_nodes: answer.unreachable_nodes,
                ..Default::default()
            }),
            Err(v1::NoSubscriber(channels)) => Err(coded(
                ErrorCode::NotFound,
                OortCode::NoSubscribers,
                format!("{} ({})", v1::NO_SUBSCRIBER, channels.join(", ")),
            )),
        }
    }

    async fn subscribe(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, rpc::SubscribeRequest>,
    ) -> ServiceResult<rpc::SubscribeResponse> {
        self.admit(&ctx)?;
        let request = request.to_owned_message();
        let delivery = self
            .membership(request.sessions, request.channels, true)
            .await?;
        Response::ok(rpc::SubscribeResponse {
            delivery: delivery.into(),
            ..Default::default()
        })
    }

    async fn unsubscribe(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, rpc::UnsubscribeRequest>,
    ) -> ServiceResult<rpc::UnsubscribeResponse> {
        self.admit(&ctx)?;
        let request = request.to_owned_message();
        let delivery = self
            .membership(request.sessions, request.channels, false)
            .await?;
        Response::ok(rpc::UnsubscribeResponse {
            delivery: delivery.into(),
            ..Default::default()
        })
    }

    async fn get_channel(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, rpc::GetChannelRequest>,
    ) -> ServiceResult<rpc::GetChannelResponse> {
        self.admit(&ctx)?;
        let request = request.to_owned_message();
        let after = (!request.after.is_empty()).then_some(request.after.as_str());
        let limit = request.limit.map(|n| n as usize);
        let page = v1::presence_page(
            &self.state,
            request.channel.clone(),
            limit,
            after,
            "channel",
        )
        .await
        .map_err(error)?;
        Response::ok(rpc::GetChannelResponse {
            channel: page.channel,
            sessions: page.sessions,
            members: page
                .members
                .into_iter()
                .map(|member| convert::location(&member.session, member.node))
                .collect(),
            next: page
                .next
                .map(|key| key.as_str().to_owned())
                .unwrap_or_default(),
            unreachable_nodes: page.unreachable_nodes,
            ..Default::default()
        })
    }

    async fn get_user(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, rpc::GetUserRequest>,
    ) -> ServiceResult<rpc::GetUserResponse> {
        self.admit(&ctx)?;
        let user = request.to_owned_message().user;
        let answer = v1::user_answer(&self.state, user, "user").map_err(error)?;
        Response::ok(rpc::GetUserResponse {
            user: answer.user,
            sessions: answer
                .sessions
                .into_iter()
                .map(|session| convert::location(&session.session, session.node))
                .collect(),
            ..Default::default()
        })
    }

    async fn request_reply(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, rpc::RequestReplyRequest>,
    ) -> ServiceResult<rpc::RequestReplyResponse> {
        let request_id = self.admit(&ctx)?;
        let request = request.to_owned_message();
        let payload = convert::required_payload(&request.payload)?;
        let session = SessionKey::from(request.session);
        let outcome = v1::ask(
            &self.state,
            session.clone(),
            payload,
            request.timeout_ms.map(u64::from),
            &request_id,
        )
        .await
        .map_err(error)?;
        let (status, reply) = match outcome {
            v1::RequestOutcome::Undelivered(status) => (status, None),
            v1::RequestOutcome::Answered { status, reply } => {
                (status, Some(rpc_payload(reply.kind(), reply.data())))
            }
            v1::RequestOutcome::TimedOut { message, .. } => {
                return Err(coded(
                    ErrorCode::DeadlineExceeded,
                    OortCode::ReplyTimeout,
                    message,
                ));
            }
        };
        Response::ok(rpc::RequestReplyResponse {
            session: session.as_str().to_owned(),
            status: convert::status(status).into(),
            reply: reply.into(),
            ..Default::default()
        })
    }

    async fn watch_events(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, rpc::WatchEventsRequest>,
    ) -> ServiceResult<ServiceStream<rpc::WatchEventsResponse>> {
        self.admit(&ctx)?;
        let group = request.to_owned_message().group;
        let watch = self
            .state
            .feed
            .watch(&group)
            .await
            .map_err(watch::refusal)?;
        Response::stream_ok(watch::events(watch))
    }
}

async fn get_session(
    state: &AppState,
    key: SessionKey,
) -> Result<rpc::GetSessionResponse, ConnectError> {
    let node = state.router.node_id().to_string();
    if let Some(session) = state.registry.get(key.as_str()) {
        let (queued_messages, queued_bytes) = session.queue.depth();
        return Ok(rpc::GetSessionResponse {
            session: key.as_str().to_owned(),
            node,
            held_here: true,
            connected: true,
            queued_messages: queued_messages as u64,
            queued_bytes: queued_bytes as u64,
            channels: state.registry.channels_of(key.as_str()),
            ..Default::default()
        });
    }
    if state.registry.durable(key.as_str()).is_some() {
        // Lingering: no connection, but the session goes on here.
        return Ok(rpc::GetSessionResponse {
            session: key.as_str().to_owned(),
            node,
            held_here: true,
            channels: state.registry.channels_of(key.as_str()),
            ..Default::default()
        });
    }
    match state.router.owner(key.as_str()).await {
        Ok(Some(node)) => Ok(rpc::GetSessionResponse {
            session: key.as_str().to_owned(),
            node: node.to_string(),
            ..Default::default()
        }),
        Ok(None) => Err(coded(
            ErrorCode::NotFound,
            OortCode::SessionNotFound,
            "session not found",
        )),
        Err(err) => Err(coded(
            ErrorCode::Unavailable,
            OortCode::Unavailable,
            err.to_string(),
        )),
    }
}

fn get_cluster(state: &AppState) -> rpc::GetClusterResponse {
    let Some(status) = state.router.cluster_status() else {
        return rpc::GetClusterResponse {
            node: state.router.node_id().to_string(),
            role: "single".to_owned(),
            ready: state.is_ready(),
            sessions: state.registry.len() as u64,
            ..Default::default()
        };
    };
    rpc::GetClusterResponse {
        cluster: status.cluster,
        node: status.node,
        role: status.role.to_owned(),
        ready: status.ready,
        leader: status.leader.unwrap_or_default(),
        term: status.term,
        sessions: status.sessions as u64,
        members: status
            .members
            .into_iter()
            .map(|member| rpc::Member {
                node: member.node,
                role: member.role.to_owned(),
                alive: member.alive,
                up: member.up,
                sessions: member.sessions,
                lag: member.lag.unwrap_or_default(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}
