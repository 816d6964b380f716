//! How errors travel: the universe's [`Error`] as a gRPC [`Status`] on the server, and a
//! received status as a fetch result on the client.

use std::error::Error as StdError;

use std::time::SystemTime;

use galaxycache_universe::{Error, ErrorKind, FetchResult, Value, sanitize_message};
use tonic::metadata::MetadataValue;
use tonic::{Code, Status, TimeoutExpired};

use crate::wire::{fmt_unix_ms, parse_unix_ms};

/// Metadata entry our servers add to every INVALID_ARGUMENT status, so a client can tell an
/// unknown galaxy from a bad key without reading the message.
const GALAXY_STATUS: &str = "galaxycache-galaxy-status";
/// The value of [`GALAXY_STATUS`] for an unknown galaxy.
const GALAXY_NOT_FOUND: &str = "not-found";
/// The value of [`GALAXY_STATUS`] for any other INVALID_ARGUMENT: the galaxy exists.
const GALAXY_FOUND: &str = "found";

/// Metadata entry our servers add to the NOT_FOUND of a cached miss: until when the miss
/// holds, in whole milliseconds since the Unix epoch.
const EXPIRES_MS: &str = "galaxycache-expires-ms";

/// The status a server answers with when serving failed. Its message is
/// [sanitized](sanitize_message) as every text that crosses the network: short (a message
/// echoing a huge galaxy name must not become a header that the peer's HTTP/2 stack
/// refuses) and without control characters.
pub(crate) fn status_from_error(error: &Error) -> Status {
    let invalid_argument = |galaxy_status: &'static str| {
        let mut status = Status::invalid_argument(sanitize_message(&error.to_string()));
        status
            .metadata_mut()
            .insert(GALAXY_STATUS, MetadataValue::from_static(galaxy_status));
        status
    };
    match error.kind() {
        ErrorKind::UnknownGalaxy => invalid_argument(GALAXY_NOT_FOUND),
        ErrorKind::InvalidRequest => invalid_argument(GALAXY_FOUND),
        ErrorKind::Overloaded => Status::resource_exhausted(sanitize_message(&error.to_string())),
        ErrorKind::Timeout => Status::deadline_exceeded(sanitize_message(&error.to_string())),
        // The message names both versions (the universe's error says them).
        ErrorKind::VersionMismatch => {
            Status::failed_precondition(sanitize_message(&error.to_string()))
        }
        // A galaxy that cannot apply a verb answers as a server without the verb does.
        ErrorKind::Unsupported => Status::unimplemented(sanitize_message(&error.to_string())),
        ErrorKind::Unauthenticated => Status::unauthenticated(sanitize_message(&error.to_string())),
        // The load's own message alone: the asking node hands its callers the very error
        // this node's callers get.
        ErrorKind::Remote => Status::internal(sanitize_message(error.message())),
        // Load failures, whatever their cause on this node.
        _ => Status::internal(sanitize_message(&error.to_string())),
    }
}

/// The status a server answers with when the galaxy has no such key: NOT_FOUND, with
/// [`EXPIRES_MS`] when the answer is a cached miss held `until` then.
pub(crate) fn not_found(until: Option<SystemTime>) -> Status {
    let mut status = Status::not_found("no such key");
    if let Some(at) = until {
        let ms = MetadataValue::from(fmt_unix_ms(at));
        status.metadata_mut().insert(EXPIRES_MS, ms);
    }
    status
}

/// What a NOT_FOUND from the peer at `url` means: a cached miss until the instant its
/// [`EXPIRES_MS`] entry names, or without one (galaxycache in Go, an older server) plain
/// NotFound. A malformed entry is [`ErrorKind::Protocol`].
pub(crate) fn absent_from_status(status: &Status, url: &str) -> FetchResult {
    let Some(entry) = status.metadata().get(EXPIRES_MS) else {
        return Ok(None);
    };
    match parse_unix_ms(entry.as_bytes()) {
        Some(at) => Ok(Some(Value::absent(at))),
        None => Err(Error::new(
            ErrorKind::Protocol,
            format!("peer {url}: NOT_FOUND with a malformed {EXPIRES_MS} entry"),
        )),
    }
}

/// The error a status received from the peer at `url` means to the asking node; `None` for
/// NOT_FOUND, which is an answer (the owner has no such key), not a failure. The peer's
/// message is [sanitized](sanitize_message) before it reaches a caller or a log.
pub(crate) fn error_from_status(status: &Status, url: &str) -> Option<Error> {
    let kind = match status.code() {
        Code::NotFound => return None,
        Code::InvalidArgument if is_unknown_galaxy(status) => ErrorKind::UnknownGalaxy,
        Code::InvalidArgument => ErrorKind::InvalidRequest,
        // Made by this side's transport, which carries the cause as its source (statuses
        // received from a peer never do): this side's own enforcement of the grpc-timeout,
        // or a peer that could not be reached or whose connection broke.
        _ if caused_by::<TimeoutExpired>(status) => ErrorKind::Timeout,
        Code::Unknown | Code::Internal | Code::Cancelled if StdError::source(status).is_some() => {
            ErrorKind::Unavailable
        }
        // CANCELLED with no source is the peer's own grpc-timeout enforcement.
        Code::DeadlineExceeded | Code::Cancelled => ErrorKind::Timeout,
        Code::Unavailable => ErrorKind::Unavailable,
        Code::ResourceExhausted => ErrorKind::Overloaded,
        // Made by this side's decoder when the response exceeds the size bound, or by the
        // peer's when the request (a set's value) exceeds the peer's.
        Code::OutOfRange => ErrorKind::TooLarge,
        // A peer without the verb (galaxycache in Go has no write verbs).
        Code::Unimplemented => ErrorKind::Unsupported,
        // The peer's galaxy has another version: the asking node loads the key itself.
        Code::FailedPrecondition => ErrorKind::VersionMismatch,
        // The peer refused our credentials: a peer failure, not the owner's answer.
        Code::Unauthenticated => ErrorKind::Unauthenticated,
        // The owner's load failed: INTERNAL from our servers, UNKNOWN from galaxycache (Go).
        // Its message is the load error's, handed on unchanged, as the owner's callers get it.
        Code::Internal | Code::Unknown => {
            return Some(Error::new(
                ErrorKind::Remote,
                sanitize_message(status.message()),
            ));
        }
        // Not an answer of the protocol: the owner failed, so the asking node loads itself.
        _ => ErrorKind::Protocol,
    };
    Some(Error::new(
        kind,
        format!(
            "peer {url}: {}: {}",
            status.code(),
            sanitize_message(status.message())
        ),
    ))
}

/// Our servers say on every INVALID_ARGUMENT whether the galaxy exists ([`GALAXY_STATUS`]),
/// whatever the message. galaxycache (Go) servers send no such entry but name the galaxy in
/// the message of an unknown galaxy ("Unable to find galaxy [...]"): only for a status
/// without the entry is the message read.
fn is_unknown_galaxy(status: &Status) -> bool {
    match status.metadata().get(GALAXY_STATUS) {
        Some(v) => v == GALAXY_NOT_FOUND,
        None => status.message().to_ascii_lowercase().contains("galaxy"),
    }
}

/// True when an error of type `E` is in the source chain of `status`.
fn caused_by<E: StdError + 'static>(status: &Status) -> bool {
    let mut source = StdError::source(status);
    while let Some(e) = source {
        if e.is::<E>() {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(kind: ErrorKind) -> Error {
        error_from_status(&status_from_error(&Error::new(kind, "detail")), "peer").unwrap()
    }

    #[test]
    fn server_errors_keep_their_meaning_on_the_client() {
        for (sent, seen) in [
            (ErrorKind::UnknownGalaxy, ErrorKind::UnknownGalaxy),
            (ErrorKind::InvalidRequest, ErrorKind::InvalidRequest),
            (ErrorKind::Overloaded, ErrorKind::Overloaded),
            (ErrorKind::Timeout, ErrorKind::Timeout),
            (ErrorKind::VersionMismatch, ErrorKind::VersionMismatch),
            (ErrorKind::Unsupported, ErrorKind::Unsupported),
            (ErrorKind::Remote, ErrorKind::Remote),
            (ErrorKind::Unavailable, ErrorKind::Remote),
        ] {
            let e = round_trip(sent);
            assert_eq!(e.kind(), seen, "{sent:?}: {e}");
            assert!(e.message().contains("detail"), "{e}");
        }
        assert_eq!(error_from_status(&not_found(None), "peer"), None);
    }

    #[test]
    fn a_cached_miss_travels_as_not_found_with_its_expiry() {
        use std::time::{Duration, UNIX_EPOCH};
        let at = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_999);
        let status = not_found(Some(at));
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.metadata().get(EXPIRES_MS).unwrap(), "1700000000123");
        assert_eq!(error_from_status(&status, "peer"), None, "an answer");
        let absent = absent_from_status(&status, "peer").unwrap().unwrap();
        assert!(absent.is_absent());
        assert_eq!(
            absent.expires_at(),
            Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123))
        );
        assert_eq!(absent_from_status(&not_found(None), "peer"), Ok(None));
        let mut bad = Status::not_found("no such key");
        bad.metadata_mut()
            .insert(EXPIRES_MS, MetadataValue::from_static("soon"));
        let e = absent_from_status(&bad, "peer").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
    }

    #[test]
    fn a_load_error_arrives_unchanged() {
        let sent = Error::new(ErrorKind::Remote, "backend exploded: disk on fire");
        let seen = error_from_status(&status_from_error(&sent), "peer").unwrap();
        assert_eq!(seen, sent);
    }

    #[test]
    fn every_invalid_argument_says_whether_the_galaxy_exists() {
        for (kind, galaxy_status) in [
            (ErrorKind::UnknownGalaxy, GALAXY_NOT_FOUND),
            (ErrorKind::InvalidRequest, GALAXY_FOUND),
        ] {
            // A message naming a galaxy does not mislead a client when the entry is there.
            let status = status_from_error(&Error::new(kind, "galaxy \"g\": empty key"));
            assert_eq!(status.code(), Code::InvalidArgument);
            assert_eq!(status.metadata().get(GALAXY_STATUS).unwrap(), galaxy_status);
            let e = error_from_status(&status, "peer").unwrap();
            assert_eq!(e.kind(), kind, "{e}");
        }
    }

    #[test]
    fn statuses_outside_the_protocol_are_protocol_errors() {
        for code in [
            Code::PermissionDenied,
            Code::Aborted,
            Code::AlreadyExists,
            Code::DataLoss,
        ] {
            let e = error_from_status(&Status::new(code, "from a proxy"), "peer").unwrap();
            assert_eq!(e.kind(), ErrorKind::Protocol, "{code:?}: {e}");
            assert!(e.message().contains("from a proxy"), "{e}");
        }
        // Our servers' refusal of a call without credentials: a peer failure.
        let e = error_from_status(&Status::unauthenticated("no token"), "peer").unwrap();
        assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
        for code in [Code::Internal, Code::Unknown] {
            let e = error_from_status(&Status::new(code, "load failed"), "peer").unwrap();
            assert_eq!(e, Error::new(ErrorKind::Remote, "load failed"), "{code:?}");
        }
    }

    #[test]
    fn go_peers_are_understood_by_their_messages() {
        let go = Status::invalid_argument("Unable to find galaxy [users]");
        let e = error_from_status(&go, "peer").unwrap();
        assert_eq!(e.kind(), ErrorKind::UnknownGalaxy);
        let e = error_from_status(&Status::invalid_argument("empty key"), "peer").unwrap();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        let e = error_from_status(&Status::unknown("Failed to retrieve"), "p").unwrap();
        assert_eq!(e.kind(), ErrorKind::Remote);
    }

    #[test]
    fn local_transport_failures_are_unavailable() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let status = Status::from_error(Box::new(io));
        assert_eq!(status.code(), Code::Unknown);
        let e = error_from_status(&status, "peer").unwrap();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        let timed_out = Status::from_error(Box::new(TimeoutExpired(())));
        let e = error_from_status(&timed_out, "peer").unwrap();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    }

    #[test]
    fn a_peers_message_arrives_short_and_clean() {
        let hostile = format!("disk\x1b[31m on\r\nfire{}", "\x1b]0;owned\x07".repeat(8192));
        for status in [Status::internal(&hostile), Status::aborted(&hostile)] {
            let e = error_from_status(&status, "peer").unwrap();
            let shown = e.to_string();
            assert!(!shown.chars().any(char::is_control), "{shown:?}");
            assert!(shown.len() < 400, "{} bytes", shown.len());
            assert!(e.message().contains("disk[31m on  fire]0;owned"), "{shown}");
        }
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        use galaxycache_universe::MAX_MESSAGE_LEN;
        let long = "é".repeat(MAX_MESSAGE_LEN);
        let status = status_from_error(&Error::new(ErrorKind::Remote, long));
        assert!(status.message().len() <= MAX_MESSAGE_LEN + 3);
        assert!(status.message().ends_with("..."));
    }
}
