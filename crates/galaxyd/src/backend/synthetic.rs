//! The synthetic backend: every key exists, and its value is derived from the key.

use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// The synthetic value of `key`: the lowercase hex SHA-256 of the key, repeated and cut
/// to `size` bytes. Anyone can check a value without asking the backend.
pub fn synthetic_value(key: &str, size: usize) -> Bytes {
    let hex = sha256_hex(key);
    hex.as_bytes().iter().copied().cycle().take(size).collect()
}

/// True when `value` is the synthetic value of `key` (of any length, empty excluded).
pub(crate) fn is_synthetic_value(key: &str, value: &[u8]) -> bool {
    let hex = sha256_hex(key);
    !value.is_empty()
        && value
            .iter()
            .zip(hex.as_bytes().iter().cycle())
            .all(|(a, b)| a == b)
}

fn sha256_hex(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
        hex.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
    }
    hex
}

/// A backend in which every key exists: its [`synthetic_value`], after a simulated latency.
#[derive(Clone, Debug)]
pub(crate) struct SyntheticBackend {
    value_size: usize,
    delay: Duration,
}

impl SyntheticBackend {
    pub(crate) fn new(value_size: usize, delay: Duration) -> Self {
        SyntheticBackend { value_size, delay }
    }

    pub(crate) async fn load(&self, key: &str) -> Bytes {
        if !self.delay.is_zero() {
            // The simulated latency of a real data source.
            tokio::time::sleep(self.delay).await;
        }
        synthetic_value(key, self.value_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA256_A: &str = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";

    #[test]
    fn value_is_sha256_hex_repeated_and_cut() {
        assert_eq!(synthetic_value("a", 64), SHA256_A.as_bytes());
        assert_eq!(synthetic_value("a", 10), &SHA256_A.as_bytes()[..10]);
        let long = synthetic_value("a", 150);
        let expected = format!("{SHA256_A}{SHA256_A}{}", &SHA256_A[..22]);
        assert_eq!(long, expected.as_bytes());
        assert!(synthetic_value("a", 0).is_empty());
    }

    #[test]
    fn values_check_against_their_key() {
        assert!(is_synthetic_value("a", &synthetic_value("a", 100)));
        assert!(!is_synthetic_value("b", &synthetic_value("a", 100)));
        assert!(!is_synthetic_value("a", b""));
        let mut bad = synthetic_value("a", 100).to_vec();
        bad[70] ^= 1;
        assert!(!is_synthetic_value("a", &bad));
    }

    #[tokio::test(start_paused = true)]
    async fn the_delay_is_simulated_latency() {
        let backend = SyntheticBackend::new(8, Duration::from_millis(50));
        let start = tokio::time::Instant::now();
        assert_eq!(backend.load("a").await, &SHA256_A.as_bytes()[..8]);
        assert_eq!(start.elapsed(), Duration::from_millis(50));
    }
}
