//! How errors travel: the universe's [`Error`] as a gRPC [`Status`] on the server, and a
//! received status as a fetch result on the client.

use std::error::Error as StdError;

use galaxycache_universe::{Error, ErrorKind};
use tonic::metadata::MetadataValue;
use tonic::{Code, Status, TimeoutExpired};

/// Metadata entry a server adds to an INVALID_ARGUMENT status when the galaxy is unknown,
/// so a client can tell an unknown galaxy from a bad key without reading the message.
pub(crate) const GALAXY_STATUS: &str = "galaxycache-galaxy-status";
/// The value of [`GALAXY_STATUS`] for an unknown galaxy.
const GALAXY_NOT_FOUND: &str = "not-found";

/// How tonic's generated client starts the message of a call the channel would not take.
const NOT_READY: &str = "Service was not ready";

/// Longest status message sent: a message echoing a huge galaxy name must not become a
/// header that the peer's HTTP/2 stack refuses.
const MAX_MESSAGE_LEN: usize = 512;

/// The status a server answers with when serving failed.
pub(crate) fn status_from_error(error: &Error) -> Status {
    let message = truncate(error.to_string());
    match error.kind() {
        ErrorKind::UnknownGalaxy => {
            let mut status = Status::invalid_argument(message);
            status
                .metadata_mut()
                .insert(GALAXY_STATUS, MetadataValue::from_static(GALAXY_NOT_FOUND));
            status
        }
        ErrorKind::InvalidRequest => Status::invalid_argument(message),
        ErrorKind::Overloaded => Status::resource_exhausted(message),
        ErrorKind::Timeout => Status::deadline_exceeded(message),
        ErrorKind::Unsupported => Status::unimplemented(message),
        // Load failures, whatever their cause on this node.
        _ => Status::internal(message),
    }
}

/// The status a server answers with when the galaxy has no such key.
pub(crate) fn not_found() -> Status {
    Status::not_found("no such key")
}

/// The error a status received from the peer at `url` means to the asking node; `None` for
/// NOT_FOUND, which is an answer (the owner has no such key), not a failure.
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
        // The generated client's own words when the channel refuses to take a call.
        Code::Unknown if status.message().starts_with(NOT_READY) => ErrorKind::Unavailable,
        // CANCELLED with no source is the peer's own grpc-timeout enforcement.
        Code::DeadlineExceeded | Code::Cancelled => ErrorKind::Timeout,
        Code::Unavailable => ErrorKind::Unavailable,
        Code::ResourceExhausted => ErrorKind::Overloaded,
        // Made by this side's decoder when the response exceeds the size bound.
        Code::OutOfRange => ErrorKind::TooLarge,
        Code::Unimplemented => ErrorKind::Unsupported,
        _ => ErrorKind::Remote,
    };
    Some(Error::new(
        kind,
        format!("peer {url}: {}: {}", status.code(), status.message()),
    ))
}

/// Our servers mark an unknown galaxy with [`GALAXY_STATUS`] and never name a galaxy in
/// their bad-key messages; galaxycache (Go) servers send no such entry but name the galaxy
/// in the message ("Unable to find galaxy [...]").
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

fn truncate(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_LEN {
        let mut end = MAX_MESSAGE_LEN;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("...");
    }
    message
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
            (ErrorKind::Remote, ErrorKind::Remote),
            (ErrorKind::Unavailable, ErrorKind::Remote),
            (ErrorKind::Unsupported, ErrorKind::Unsupported),
        ] {
            let e = round_trip(sent);
            assert_eq!(e.kind(), seen, "{sent:?}: {e}");
            assert!(e.message().contains("detail"), "{e}");
        }
        assert_eq!(error_from_status(&not_found(), "peer"), None);
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
        let not_ready = Status::unknown(format!("{NOT_READY}: buffer closed"));
        let e = error_from_status(&not_ready, "peer").unwrap();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        let timed_out = Status::from_error(Box::new(TimeoutExpired(())));
        let e = error_from_status(&timed_out, "peer").unwrap();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let long = "é".repeat(MAX_MESSAGE_LEN);
        let status = status_from_error(&Error::new(ErrorKind::Remote, long));
        assert!(status.message().len() <= MAX_MESSAGE_LEN + 3);
        assert!(status.message().ends_with("..."));
    }
}
