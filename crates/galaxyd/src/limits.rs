//! The limits of galaxyd's servers and of its memory in flight, as flags (`serve --…`)
//! and as top-level TOML keys of the same names (`max_connections = 20000`).

use std::time::Duration;

use clap::Args;
use galaxycache_http::ServerLimits;
use serde::Deserialize;

use crate::units::{parse_duration, parse_size};

/// The limits as given (flags or file); the defaults are the library's.
#[derive(Args, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
#[command(next_help_heading = "Limits (client API and peer port alike)")]
pub struct LimitArgs {
    /// How long a request head may take to arrive; then the connection is closed
    /// (slowloris) [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    #[serde(deserialize_with = "de::header_read_timeout")]
    pub header_read_timeout: Option<Duration>,
    /// A connection with nothing read or written this long is closed [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    #[serde(deserialize_with = "de::idle_timeout")]
    pub idle_timeout: Option<Duration>,
    /// Connections open at once, per server; more are answered 503 and closed
    /// [default: 10000]
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Requests handled at once, per server; more are answered 503 [default: 4096]
    #[arg(long, value_name = "N")]
    pub max_requests_in_flight: Option<usize>,
    /// HTTP/2 and gRPC streams open at once on one connection [default: 256]
    #[arg(long, value_name = "N")]
    pub max_concurrent_streams: Option<u32>,
    /// Largest request head or HTTP/2 header list [default: 96KiB]
    #[arg(long, value_name = "SIZE", value_parser = u32_size)]
    #[serde(deserialize_with = "de::max_header_list_size")]
    pub max_header_list_size: Option<u32>,
    /// Value bytes in flight that no cache counts: half for values being received (from
    /// peers and HTTP origins), half for values being sent to clients; more wait, then
    /// fail with 503 [default: half the galaxies' cache budgets, at least 16MiB]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    #[serde(deserialize_with = "de::max_in_flight_bytes")]
    pub max_in_flight_bytes: Option<u64>,
}

impl LimitArgs {
    /// `self` with every field that `flags` sets replaced.
    pub(crate) fn overridden_by(self, flags: LimitArgs) -> LimitArgs {
        LimitArgs {
            header_read_timeout: flags.header_read_timeout.or(self.header_read_timeout),
            idle_timeout: flags.idle_timeout.or(self.idle_timeout),
            max_connections: flags.max_connections.or(self.max_connections),
            max_requests_in_flight: flags.max_requests_in_flight.or(self.max_requests_in_flight),
            max_concurrent_streams: flags.max_concurrent_streams.or(self.max_concurrent_streams),
            max_header_list_size: flags.max_header_list_size.or(self.max_header_list_size),
            max_in_flight_bytes: flags.max_in_flight_bytes.or(self.max_in_flight_bytes),
        }
    }

    /// The server limits these settings set, the library's defaults elsewhere.
    pub fn server_limits(&self) -> ServerLimits {
        let mut limits = ServerLimits::default();
        if let Some(t) = self.header_read_timeout {
            limits = limits.header_read_timeout(t);
        }
        if let Some(t) = self.idle_timeout {
            limits = limits.idle_timeout(t);
        }
        if let Some(n) = self.max_connections {
            limits = limits.max_connections(n);
        }
        if let Some(n) = self.max_requests_in_flight {
            limits = limits.max_requests_in_flight(n);
        }
        if let Some(n) = self.max_concurrent_streams {
            limits = limits.h2_max_concurrent_streams(n);
        }
        if let Some(n) = self.max_header_list_size {
            limits = limits.max_header_list_bytes(n);
        }
        limits
    }
}

/// A size that fits in 32 bits.
fn u32_size(text: &str) -> Result<u32, String> {
    let bytes = parse_size(text)?;
    u32::try_from(bytes).map_err(|_| format!("{text} is over 4 GiB"))
}

mod de {
    use std::time::Duration;

    use super::{parse_duration, parse_size, u32_size};

    crate::tuning::de::fields! {
        header_read_timeout: Duration = |text: String| parse_duration(&text);
        idle_timeout: Duration = |text: String| parse_duration(&text);
        max_header_list_size: u32 = |text: String| u32_size(&text);
        max_in_flight_bytes: u64 = |text: String| parse_size(&text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_keys_and_flags_merge_flags_first() {
        let file: LimitArgs = toml::from_str(
            "max_connections = 100\nidle_timeout = \"5s\"\nmax_in_flight_bytes = \"32MiB\"\n",
        )
        .unwrap();
        let flags = LimitArgs {
            max_connections: Some(7),
            ..LimitArgs::default()
        };
        let merged = file.overridden_by(flags);
        assert_eq!(merged.max_connections, Some(7));
        assert_eq!(merged.idle_timeout, Some(Duration::from_secs(5)));
        assert_eq!(merged.max_in_flight_bytes, Some(32 << 20));
        let limits = merged.server_limits();
        assert_eq!(limits.max_connections, 7);
        assert_eq!(limits.idle_timeout, Duration::from_secs(5));
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = toml::from_str::<LimitArgs>("max_header_list_size = \"5GiB\"").unwrap_err();
        assert!(e.to_string().contains("max_header_list_size"), "{e}");
        assert!(e.to_string().contains("over 4 GiB"), "{e}");
    }
}
