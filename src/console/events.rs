//! The console's event stream, `GET /console/api/events?after=<seq>&session=<id>`:
//! WatchSessions as Server-Sent Events (`after` absent: from now), under
//! the console's cap on open streams.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::extract::RawQuery;
use axum::response::Response;
use http::StatusCode;
use http::header::{self, HeaderValue};
use serde_json::json;
use tokio_stream::StreamExt;

use super::call::{Call, done, reply, session_id};
use crate::domain::Error;
use crate::domain::session::EventFilter;
use crate::wire::json::event_json;
use crate::wire::proto::to_pb_event;

/// A comment line sent on an idle event stream, so a vanished browser is
/// noticed (its write fails) and proxies keep the stream open.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// WatchSessions as Server-Sent Events: each event is `id: <sequence>` and
/// `data: <event JSON>`; an `event: end` with the reason closes a stream
/// the server ends (a lag: reconnect with `after` = the last id).
pub(super) async fn stream(call: Call, RawQuery(query): RawQuery) -> Response {
    let console = &call.console;
    let Ok(permit) = console.event_streams.clone().try_acquire_owned() else {
        return reply((
            StatusCode::TOO_MANY_REQUESTS,
            json!({"error": "too many console event streams are open: close one first"}),
        ));
    };
    let mut filter = EventFilter::default();
    let mut after = None;
    let mut bad = None;
    let query = query.unwrap_or_default();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "after" => match value.parse::<u64>() {
                Ok(n) => after = Some(n),
                Err(_) => bad = Some(Error::invalid("after", "a sequence number")),
            },
            "session" => match session_id(&value) {
                Ok(id) => filter.session_ids.push(id),
                Err(e) => bad = Some(e),
            },
            _ => {}
        }
    }
    let watched = match bad {
        Some(e) => Err(e),
        None => console.engine.watch(&call.caller, filter, "", after).await,
    };
    let events = match watched {
        Ok(events) => events,
        Err(e) => return done(Err(e)),
    };
    let stop = console.stop.clone();
    // The stream holds the permit; hyper drops it when a write fails.
    let stream = futures_util::stream::unfold(Some((events, permit)), move |state| {
        let stop = stop.clone();
        async move {
            let (mut events, permit) = state?;
            let next = tokio::select! {
                next = tokio::time::timeout(KEEPALIVE, events.next()) => next,
                () = stop.cancelled() => Ok(None),
            };
            let (chunk, more) = match next {
                Ok(Some(Ok(event))) => (
                    format!(
                        "id: {}\ndata: {}\n\n",
                        event.sequence,
                        event_json(&to_pb_event(&event))
                    ),
                    true,
                ),
                Ok(Some(Err(end))) => (
                    format!(
                        "event: end\ndata: {}\n\n",
                        json!({"error": end.to_string()})
                    ),
                    false,
                ),
                Ok(None) => return None,
                Err(_) => (": keepalive\n\n".to_owned(), true),
            };
            Some((Ok::<_, Infallible>(chunk), more.then_some((events, permit))))
        }
    });
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    response
}
