//! `GET /api/v1/ws`: the live-progress socket. Everything that can fail is checked before the
//! upgrade and answered with problem+json (credentials 401/403, not a WebSocket request 400,
//! per-user cap 429, snapshot unavailable 503); then the session loop sends the snapshot, the
//! user's events, pings, and closes idle, oversized or lagging sockets.
//!
//! Credentials, in this order:
//! 1. `Sec-WebSocket-Protocol: atelier.v1, bearer.<jwt>` (browsers: `new WebSocket(url,
//!    ["atelier.v1", "bearer." + jwt])`). The server echoes `atelier.v1` when offered, else the
//!    `bearer.<jwt>` entry itself (a browser fails a handshake that echoes nothing it offered).
//! 2. `?token=<jwt>` (simplest, but URLs end up in access logs: prefer 1).
//! 3. `Authorization: Bearer <jwt>` (non-browser clients).
//!
//! Close codes: 1000 idle timeout (no frame, not even a pong, for `WS_IDLE_TIMEOUT_SECS`),
//! 1001 server shutting down, 1002 protocol error, 1008 the access token expired (reconnect
//! with a fresh one) or the account was blocked ("account blocked": do not reconnect), 1009
//! frame or message above `WS_MAX_FRAME_BYTES`, 1013 the client fell behind (reconnect: the
//! snapshot catches up).

use crate::domain::ids::UserId;
use std::time::Duration;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};
use tokio::time::Instant;
use tracing::Instrument as _;

use super::hub::{Outbound, Refused, Registration};
use super::{Event, types};
use crate::auth::Blocked;
use crate::db::models::User;
use crate::error::{AppError, ErrorCode};
use crate::state::AppState;

/// The subprotocol the server prefers to echo.
pub const PROTOCOL: &str = "atelier.v1";
/// Prefix of the subprotocol entry that carries the access token.
pub const BEARER_PROTOCOL_PREFIX: &str = "bearer.";

/// How long a refused client should wait before trying again.
const RETRY_AFTER_SECS: u32 = 10;
/// Time given to the close handshake once the session is over.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/ws").route(web::get().to(connect)));
}

/// Live progress over a WebSocket: first `{"type":"snapshot","generations":[...]}`, then
/// events such as `{"type":"generation.running", ...}`.
#[utoipa::path(get, path = "/api/v1/ws", tag = "generations",
    params(("token" = Option<String>, Query, description = "The access token, when not sent as the `bearer.<jwt>` subprotocol")),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, body = crate::error::Problem),
        (status = 401, body = crate::error::Problem),
        (status = 403, body = crate::error::Problem),
        (status = 429, body = crate::error::Problem),
        (status = 503, body = crate::error::Problem),
    ))]
#[tracing::instrument(skip_all)]
pub async fn connect(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> actix_web::Result<HttpResponse> {
    let (token, echo) = credentials(&req)?;
    let (user, token_expires) = authenticate(&state, &token).await?;
    let protocols: Vec<&str> = echo.iter().map(String::as_str).collect();
    let (response, session, stream) = actix_ws::handle_with_protocols(&req, body, &protocols)?;
    let registration = match state.hub.register(user.id) {
        Ok(r) => r,
        Err(Refused::TooManyConnections) => return Ok(too_many_connections(&state)),
        Err(Refused::ShuttingDown) => {
            return Err(AppError::Unavailable("the server is shutting down".into()).into());
        }
    };
    // Registered first, so that no event slips between the snapshot and the live stream.
    let snapshot = super::snapshot(&state, user.id)
        .await
        .map_err(|e| AppError::Unavailable(format!("snapshot: {e:#}")))?;
    let max = state.hub.settings().max_frame_bytes;
    let stream = stream
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max);
    let span = tracing::info_span!("ws_session", user_id = %user.id);
    actix_web::rt::spawn(
        run_session(
            state.into_inner(),
            user.id,
            registration,
            session,
            stream,
            snapshot,
            token_expires,
        )
        .instrument(span),
    );
    Ok(response)
}

fn too_many_connections(state: &AppState) -> HttpResponse {
    let max = state.hub.settings().max_connections_per_user;
    let err = AppError::Client {
        status: StatusCode::TOO_MANY_REQUESTS,
        code: ErrorCode::RateLimited,
        detail: format!("at most {max} live connections per user; close one first"),
    };
    let mut res = actix_web::ResponseError::error_response(&err);
    res.headers_mut()
        .insert(header::RETRY_AFTER, RETRY_AFTER_SECS.into());
    res
}

/// The access token of the request, and the subprotocol to echo when it came as one.
fn credentials(req: &HttpRequest) -> Result<(String, Option<String>), AppError> {
    let offered: Vec<&str> = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if let Some(entry) = offered
        .iter()
        .find(|p| p.starts_with(BEARER_PROTOCOL_PREFIX))
    {
        let token = &entry[BEARER_PROTOCOL_PREFIX.len()..];
        let echo = if offered.contains(&PROTOCOL) {
            PROTOCOL
        } else {
            entry
        };
        return Ok((token.to_owned(), Some(echo.to_owned())));
    }
    let echo = offered.contains(&PROTOCOL).then(|| PROTOCOL.to_owned());
    let from_query = form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned());
    if let Some(token) = from_query {
        return Ok((token, echo));
    }
    if req.headers().contains_key(header::AUTHORIZATION) {
        return match crate::auth::extractor::credentials(req)? {
            crate::auth::extractor::Credentials::Bearer(token) => Ok((token, echo)),
            crate::auth::extractor::Credentials::InitData(_) => Err(AppError::unauthorized(
                ErrorCode::InvalidToken,
                "the WebSocket takes an access token, not initData",
            )),
        };
    }
    Err(AppError::unauthorized(
        ErrorCode::MissingCredentials,
        "send the access token as the subprotocol bearer.<token> or as ?token=<token>",
    ))
}

/// The user of an access token ([`crate::auth::user_for_token`], as for every route), and when
/// the token expires (the session ends then).
async fn authenticate(state: &AppState, token: &str) -> Result<(User, Instant), AppError> {
    let signed_in = crate::auth::user_for_token(state, token, Blocked::Refused).await?;
    let left = u64::try_from(signed_in.expires_at - chrono::Utc::now().timestamp()).unwrap_or(0);
    Ok((signed_in.user, Instant::now() + Duration::from_secs(left)))
}

fn close(code: CloseCode, description: &str) -> Option<CloseReason> {
    Some(CloseReason {
        code,
        description: Some(description.to_owned()),
    })
}

/// Sends one text frame; a client that does not take it within the idle timeout is gone.
async fn send_text(session: &mut Session, text: &str, within: Duration) -> Result<(), ()> {
    match tokio::time::timeout(within, session.text(text.to_owned())).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

fn is_client_ping(text: &str) -> bool {
    serde_json::from_str::<Event>(text).is_ok_and(|e| e.type_ == "ping")
}

async fn run_session(
    state: std::sync::Arc<AppState>,
    user_id: UserId,
    mut registration: Registration,
    mut session: Session,
    mut stream: AggregatedMessageStream,
    snapshot: Event,
    token_expires: Instant,
) {
    let settings = state.hub.settings().clone();
    let ping_every = Duration::from_secs(settings.ping_interval_secs);
    let idle = Duration::from_secs(settings.idle_timeout_secs);
    let mut closing = state.hub.closing();
    tracing::debug!("WebSocket open");

    let reason = 'session: {
        if send_text(&mut session, &snapshot.to_json(), idle)
            .await
            .is_err()
        {
            break 'session None;
        }
        let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let idle_deadline = tokio::time::sleep(idle);
        tokio::pin!(idle_deadline);
        let expiry = tokio::time::sleep_until(token_expires);
        tokio::pin!(expiry);
        loop {
            tokio::select! {
                biased;
                _ = closing.wait_for(|c| *c) => {
                    break 'session close(CloseCode::Away, "server shutting down");
                }
                frame = stream.recv() => {
                    idle_deadline.as_mut().reset(Instant::now() + idle);
                    match frame {
                        None => break 'session None,
                        Some(Ok(AggregatedMessage::Ping(bytes))) => {
                            if session.pong(&bytes).await.is_err() {
                                break 'session None;
                            }
                        }
                        Some(Ok(AggregatedMessage::Text(text))) if is_client_ping(&text) => {
                            let pong = Event::new(types::PONG).to_json();
                            if send_text(&mut session, &pong, idle).await.is_err() {
                                break 'session None;
                            }
                        }
                        // Pongs only prove liveness; clients have nothing else to say.
                        Some(Ok(AggregatedMessage::Pong(_) | AggregatedMessage::Text(_) | AggregatedMessage::Binary(_))) => {}
                        Some(Ok(AggregatedMessage::Close(reason))) => {
                            tracing::debug!(?reason, "client closed");
                            break 'session reason.map(|r| CloseReason { code: r.code, description: None });
                        }
                        Some(Err(actix_ws::ProtocolError::Overflow)) => {
                            break 'session close(CloseCode::Size, "message too big");
                        }
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "WebSocket protocol error");
                            break 'session close(CloseCode::Protocol, "protocol error");
                        }
                    }
                }
                outbound = registration.events.recv() => match outbound {
                    Some(Outbound::Event(json)) => {
                        if send_text(&mut session, &json, idle).await.is_err() {
                            break 'session None;
                        }
                    }
                    Some(Outbound::Resync) => match super::snapshot(&state, user_id).await {
                        Ok(snapshot) => {
                            if send_text(&mut session, &snapshot.to_json(), idle).await.is_err() {
                                break 'session None;
                            }
                        }
                        Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot resend a snapshot"),
                    },
                    Some(Outbound::Blocked) => break 'session close(CloseCode::Policy, "account blocked"),
                    None => break 'session close(CloseCode::Again, "fell behind; reconnect"),
                },
                _ = ping.tick() => {
                    if !matches!(tokio::time::timeout(idle, session.ping(b"")).await, Ok(Ok(()))) {
                        break 'session None;
                    }
                }
                _ = &mut idle_deadline => {
                    break 'session close(CloseCode::Normal, "idle timeout");
                }
                () = &mut expiry => {
                    break 'session close(CloseCode::Policy, "token expired; reconnect with a fresh one");
                }
            }
        }
    };
    tracing::debug!(?reason, "WebSocket closing");
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, session.close(reason)).await;
    drop(registration);
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn the_token_comes_from_the_subprotocol_first() {
        let req = TestRequest::get()
            .uri("/api/v1/ws?token=q")
            .insert_header((header::SEC_WEBSOCKET_PROTOCOL, "atelier.v1, bearer.a.b.c"))
            .to_http_request();
        let (token, echo) = credentials(&req).unwrap();
        assert_eq!(token, "a.b.c");
        assert_eq!(echo.as_deref(), Some("atelier.v1"));

        let req = TestRequest::get()
            .insert_header((header::SEC_WEBSOCKET_PROTOCOL, "bearer.x.y.z"))
            .to_http_request();
        assert_eq!(
            credentials(&req).unwrap(),
            ("x.y.z".to_owned(), Some("bearer.x.y.z".to_owned()))
        );

        let req = TestRequest::get()
            .uri("/api/v1/ws?a=1&token=q%2Ew")
            .to_http_request();
        assert_eq!(credentials(&req).unwrap(), ("q.w".to_owned(), None));

        let req = TestRequest::get().uri("/api/v1/ws").to_http_request();
        assert_eq!(
            credentials(&req).unwrap_err().code(),
            ErrorCode::MissingCredentials
        );
    }

    #[test]
    fn client_pings_are_recognised() {
        assert!(is_client_ping(r#"{"type":"ping"}"#));
        assert!(!is_client_ping(r#"{"type":"pong"}"#));
        assert!(!is_client_ping("ping"));
    }
}
