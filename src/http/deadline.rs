//! A deadline on reading a request body, for every route: a client that trickles its body (or
//! declares a `Content-Length` larger than what it sends) gets 408 `request_timeout` once
//! `REQUEST_BODY_TIMEOUT_SECS` have passed since its headers, and the connection is closed.
//! actix-web bounds the time to receive the headers (`client_request_timeout`), not the body.

use std::cell::Cell;
use std::future::Future as _;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::{ConnectionType, StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{HttpMessage as _, ResponseError as _, web};
use bytes::Bytes;
use futures_util::Stream;

use crate::error::{AppError, ErrorCode};
use crate::state::AppState;

/// A body stream that fails with `TimedOut` once its deadline has passed, and says so in `fired`.
pub struct Deadline<S> {
    inner: S,
    sleep: Pin<Box<tokio::time::Sleep>>,
    fired: Rc<Cell<bool>>,
}

impl<S> Deadline<S> {
    pub fn new(inner: S, timeout: Duration, fired: Rc<Cell<bool>>) -> Self {
        Self {
            inner,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            fired,
        }
    }
}

impl<S> Stream for Deadline<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        // The deadline first: a trickle always has a byte ready, it must not outrun the clock.
        if this.fired.get() || this.sleep.as_mut().poll(cx).is_ready() {
            this.fired.set(true);
            return Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request body took too long",
            )))));
        }
        Pin::new(&mut this.inner).poll_next(cx)
    }
}

/// Middleware: puts every request body (WebSocket upgrades aside, whose body is the socket)
/// behind a [`Deadline`]; when it fired, whatever the handler answered becomes 408.
pub async fn body_deadline(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let timeout = req
        .app_data::<web::Data<AppState>>()
        .map(|s| Duration::from_secs(s.settings.request_body_timeout_secs));
    let fired = Rc::new(Cell::new(false));
    if let Some(timeout) = timeout.filter(|_| !req.headers().contains_key(header::UPGRADE)) {
        let body = req.take_payload();
        req.set_payload(Payload::Stream {
            payload: Box::pin(Deadline::new(body, timeout, Rc::clone(&fired))),
        });
    }
    let res = next.call(req).await?;
    if !fired.get() {
        return Ok(res.map_into_left_body());
    }
    let mut timeout = AppError::Client {
        status: StatusCode::REQUEST_TIMEOUT,
        code: ErrorCode::RequestTimeout,
        detail: "the request body was not received in time".into(),
    }
    .error_response();
    // What is left of the body is never read: the connection cannot serve another request.
    timeout
        .head_mut()
        .set_connection_type(ConnectionType::Close);
    let (req, _) = res.into_parts();
    Ok(ServiceResponse::new(req, timeout).map_into_right_body())
}
