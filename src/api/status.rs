//! The one place engine errors become gRPC statuses, with the
//! `google.rpc` error details a program acts on, and the one place a
//! refusal is logged, at the level its cause deserves.

use std::collections::HashMap;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::Error;
use crate::events::WatchEnd;

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        status(error)
    }
}

/// The domain of `google.rpc.ErrorInfo` reasons browserd defines.
pub const ERROR_DOMAIN: &str = "browserd.dev";
/// `google.rpc.ResourceInfo.resource_type` of a session.
pub const SESSION_RESOURCE: &str = "browserd.v1.Session";
/// How long a client should wait before retrying what failed for want of
/// capacity or of the database: long enough not to hammer, short enough
/// that a freed slot is used soon.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// ErrorInfo reason of a node that takes no new session (it drains).
const NOT_PLACING: &str = "NODE_NOT_PLACING";
/// QuotaFailure subject of a node at --max-sessions.
const NODE_SUBJECT: &str = "node";

/// RESOURCE_EXHAUSTED when no node of the cluster has room.
pub(super) fn cluster_full() -> Status {
    let mut details = ErrorDetails::with_retry_info(Some(RETRY_AFTER));
    details.add_quota_failure_violation(
        "cluster",
        "every node of the cluster runs as many sessions as it may (--max-sessions), or drains",
    );
    Status::with_error_details(
        Code::ResourceExhausted,
        "session limit reached on every node of the cluster",
        details,
    )
}

/// Whether `status` is a node's refusal to place a session there (full,
/// or draining), after which another node may take it.
pub(super) fn refuses_placement(status: &Status) -> bool {
    let details = status.get_error_details();
    match status.code() {
        Code::ResourceExhausted => details
            .quota_failure()
            .is_some_and(|q| q.violations.iter().any(|v| v.subject == NODE_SUBJECT)),
        Code::Unavailable => details
            .error_info()
            .is_some_and(|info| info.reason == NOT_PLACING),
        _ => false,
    }
}

/// The one place engine errors become gRPC statuses, with the error details
/// a program acts on instead of parsing the message. Also the one place a
/// refusal is logged: the caller's mistakes at DEBUG/INFO (they are not the
/// server's faults, and a client can produce them at will), outages at WARN,
/// internal faults at ERROR with their cause, which the client never sees.
fn status(error: Error) -> Status {
    let message = error.to_string();
    let status = match &error {
        Error::Unauthenticated(_) => Status::unauthenticated(message),
        Error::PermissionDenied(_) => Status::permission_denied(message),
        Error::UnknownResource { kind, name } => Status::with_error_details(
            Code::NotFound,
            message.clone(),
            ErrorDetails::with_resource_info(*kind, name.clone(), "", message),
        ),
        Error::AlreadyExists { kind, name } => Status::with_error_details(
            Code::AlreadyExists,
            message.clone(),
            ErrorDetails::with_resource_info(*kind, name.clone(), "", message),
        ),
        Error::ProjectQuota { project, max } => {
            let mut details = ErrorDetails::with_retry_info(Some(RETRY_AFTER));
            details.add_quota_failure_violation(
                format!("project:{project}"),
                format!(
                    "project {project} may have at most {max} PENDING or LIVE sessions at once"
                ),
            );
            Status::with_error_details(Code::ResourceExhausted, message, details)
        }
        Error::InvalidArgument { field, reason } => Status::with_error_details(
            Code::InvalidArgument,
            message,
            ErrorDetails::with_bad_request_violation(field.clone(), reason.clone()),
        ),
        Error::NotFound(id) => Status::with_error_details(
            Code::NotFound,
            message.clone(),
            ErrorDetails::with_resource_info(SESSION_RESOURCE, id.to_string(), "", message),
        ),
        Error::ResourceExhausted(max) => {
            let mut details = ErrorDetails::with_retry_info(Some(RETRY_AFTER));
            details.add_quota_failure_violation(
                NODE_SUBJECT,
                format!("this node runs at most {max} sessions at once (--max-sessions)"),
            );
            Status::with_error_details(Code::ResourceExhausted, message, details)
        }
        Error::NotLive { .. } | Error::ContextBusy { .. } => Status::failed_precondition(message),
        Error::LaunchFailed { .. } | Error::Unavailable(_) | Error::Elsewhere { .. } => {
            Status::unavailable(message)
        }
        Error::NotPlaced(_) => Status::with_error_details(
            Code::Unavailable,
            message,
            ErrorDetails::with_error_info(NOT_PLACING, ERROR_DOMAIN, HashMap::new()),
        ),
        Error::Aborted(_) => Status::aborted(message),
        Error::OutOfRange { after, oldest } => Status::with_error_details(
            Code::OutOfRange,
            message,
            ErrorDetails::with_error_info(
                "EVENTS_PRUNED",
                ERROR_DOMAIN,
                HashMap::from([
                    ("oldest_sequence".to_owned(), oldest.to_string()),
                    ("after_sequence".to_owned(), after.to_string()),
                ]),
            ),
        ),
        Error::StoreUnavailable(_) | Error::EndDeferred(_) => Status::with_error_details(
            Code::Unavailable,
            message,
            ErrorDetails::with_retry_info(Some(RETRY_AFTER)),
        ),
        Error::Store(_) => Status::internal("internal storage error; see the server log"),
    };
    let code = status.code();
    match &error {
        Error::InvalidArgument { .. }
        | Error::Unauthenticated(_)
        | Error::PermissionDenied(_)
        | Error::UnknownResource { .. }
        | Error::AlreadyExists { .. }
        | Error::NotFound(_)
        | Error::NotLive { .. }
        | Error::ContextBusy { .. }
        | Error::OutOfRange { .. } => {
            tracing::debug!(?code, error = ?status.message(), "request refused");
        }
        Error::ResourceExhausted(_) | Error::ProjectQuota { .. } | Error::Aborted(_) => {
            tracing::info!(?code, error = ?status.message(), "request refused");
        }
        Error::LaunchFailed { .. }
        | Error::Unavailable(_)
        | Error::NotPlaced(_)
        | Error::Elsewhere { .. }
        | Error::StoreUnavailable(_)
        | Error::EndDeferred(_) => {
            tracing::warn!(?code, error = ?message_of(&error), "request failed");
        }
        Error::Store(e) => {
            tracing::error!(?code, error = ?e.to_string(), "storage failure");
        }
    }
    status
}

/// The cause of an outage, for the log (the store's own error, when it has
/// one, says more than the message the client gets).
fn message_of(error: &Error) -> String {
    match error {
        Error::StoreUnavailable(e) => format!("database unavailable: {e}"),
        other => other.to_string(),
    }
}

/// How a WatchSessions stream that ends early ends. A lagging subscriber
/// gets ABORTED with the sequence to resume after, as an ErrorInfo a
/// program reads instead of parsing the message.
pub(super) fn watch_end(end: WatchEnd) -> Status {
    match end {
        WatchEnd::Lagged { last_sequence } => {
            let status = Status::with_error_details(
                Code::Aborted,
                end.to_string(),
                ErrorDetails::with_error_info(
                    "SUBSCRIBER_LAGGED",
                    ERROR_DOMAIN,
                    HashMap::from([(
                        "resume_after_sequence".to_owned(),
                        last_sequence.to_string(),
                    )]),
                ),
            );
            tracing::info!(code = ?status.code(), last_sequence, "subscriber lagged; stream ended");
            status
        }
        WatchEnd::Pruned { after, oldest } => status(Error::OutOfRange { after, oldest }),
        WatchEnd::Store(e) => status(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::session::{SessionId, SessionStatus};

    fn error_info(status: &Status) -> tonic_types::ErrorInfo {
        status
            .get_error_details()
            .error_info()
            .cloned()
            .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"))
    }

    #[test]
    fn a_lagging_subscriber_is_told_where_to_resume() {
        let status = watch_end(WatchEnd::Lagged {
            last_sequence: 4242,
        });
        assert_eq!(status.code(), Code::Aborted);
        let info = error_info(&status);
        assert_eq!(info.reason, "SUBSCRIBER_LAGGED");
        assert_eq!(info.domain, ERROR_DOMAIN);
        assert_eq!(info.metadata["resume_after_sequence"], "4242");
    }

    #[test]
    fn a_pruned_resume_point_says_where_the_log_starts() {
        let status = status(Error::OutOfRange {
            after: 3,
            oldest: 100,
        });
        assert_eq!(status.code(), Code::OutOfRange);
        let info = error_info(&status);
        assert_eq!(info.reason, "EVENTS_PRUNED");
        assert_eq!(info.metadata["oldest_sequence"], "100");
        assert_eq!(info.metadata["after_sequence"], "3");
    }

    #[test]
    fn every_refusal_carries_its_details() {
        let id = SessionId::parse("0b7c5f8e-2d0a-4b7e-9a51-3f1c2d4e5f60").expect("a uuid");
        let invalid = status(Error::invalid("viewport.width", "must be 500 to 7680"));
        let violations = invalid
            .get_error_details()
            .bad_request()
            .expect("BadRequest")
            .field_violations
            .clone();
        assert_eq!(violations[0].field, "viewport.width");
        assert_eq!(violations[0].description, "must be 500 to 7680");
        assert!(invalid.message().starts_with("viewport.width: "));

        let missing = status(Error::NotFound(id));
        let resource = missing.get_error_details().resource_info().cloned();
        let resource = resource.expect("ResourceInfo");
        assert_eq!(
            (resource.resource_type.as_str(), resource.resource_name),
            (SESSION_RESOURCE, id.to_string())
        );

        let full = status(Error::ResourceExhausted(8)).get_error_details();
        assert_eq!(
            full.retry_info().and_then(|r| r.retry_delay),
            Some(RETRY_AFTER)
        );
        let quota = full.quota_failure().expect("QuotaFailure");
        assert_eq!(quota.violations[0].subject, "node");
        assert!(quota.violations[0].description.contains("at most 8"));

        let deferred = status(Error::EndDeferred(id));
        assert_eq!(deferred.code(), Code::Unavailable);
        assert!(deferred.get_error_details().retry_info().is_some());

        let not_live = status(Error::NotLive {
            id,
            status: SessionStatus::Released,
        });
        assert_eq!(not_live.code(), Code::FailedPrecondition);
    }
}
