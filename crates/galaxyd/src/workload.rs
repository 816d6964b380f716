//! Which keys a load generator asks for: uniform or Zipf-skewed over `n` key indexes, and
//! the key each index names (`key-{}` by default, another pattern, or a file's lines).

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

/// How keys are drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Dist {
    /// Every key equally likely.
    Uniform,
    /// Key of rank `k` (1-based; `key-0` is rank 1) drawn with probability proportional to
    /// `1 / k^s`.
    Zipf(f64),
}

impl FromStr for Dist {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.split_once(':') {
            None if text == "uniform" => Ok(Dist::Uniform),
            None if text == "zipf" => Ok(Dist::Zipf(1.0)),
            Some(("zipf", s)) => match s.parse::<f64>() {
                Ok(s) if s.is_finite() && s >= 0.0 => Ok(Dist::Zipf(s)),
                _ => Err(format!(
                    "invalid zipf exponent {s:?}: expected a number >= 0, e.g. zipf:1.1"
                )),
            },
            _ => Err(format!(
                "unknown distribution {text:?}: expected uniform or zipf:S (e.g. zipf:1.1)"
            )),
        }
    }
}

impl fmt::Display for Dist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dist::Uniform => f.write_str("uniform"),
            Dist::Zipf(s) => write!(f, "zipf:{s}"),
        }
    }
}

/// Draws key indexes in `0..n` from a [`Dist`].
///
/// Zipf draws invert a precomputed cumulative table (8 bytes per key): exact, and each
/// draw is one binary search.
#[derive(Clone)]
pub(crate) struct KeySampler {
    n: u64,
    cdf: Option<Vec<f64>>,
}

impl fmt::Debug for KeySampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySampler")
            .field("n", &self.n)
            .field("zipf", &self.cdf.is_some())
            .finish()
    }
}

/// Most keys a Zipf sampler takes: its table is 8 bytes per key (800 MB here).
pub(crate) const MAX_ZIPF_KEYS: u64 = 100_000_000;

impl KeySampler {
    /// A sampler over `n` keys (at least one); an error for a Zipf sampler over more than
    /// [`MAX_ZIPF_KEYS`].
    pub(crate) fn new(dist: Dist, n: u64) -> Result<Self, String> {
        let n = n.max(1);
        let cdf = match dist {
            Dist::Uniform => None,
            Dist::Zipf(_) if n > MAX_ZIPF_KEYS => {
                return Err(format!(
                    "{n} keys is too many for {dist}: its table takes 8 bytes per key, and at \
                     most {MAX_ZIPF_KEYS} keys are allowed (uniform takes any number)"
                ));
            }
            Dist::Zipf(s) => {
                let mut total = 0.0;
                let mut cdf: Vec<f64> = (1..=n)
                    .map(|k| {
                        total += (k as f64).powf(-s);
                        total
                    })
                    .collect();
                cdf.iter_mut().for_each(|c| *c /= total);
                Some(cdf)
            }
        };
        Ok(KeySampler { n, cdf })
    }

    /// The index of the next key.
    pub(crate) fn sample(&self, rng: &mut fastrand::Rng) -> u64 {
        match &self.cdf {
            None => rng.u64(..self.n),
            Some(cdf) => {
                let u = rng.f64();
                (cdf.partition_point(|&c| c < u) as u64).min(self.n - 1)
            }
        }
    }
}

/// The pattern of the keys the load generators and the demo database use.
pub(crate) const DEFAULT_KEY_FORMAT: &str = "key-{}";

/// How a key index becomes a key: a pattern whose `{}` is the index, or the lines of a
/// file (index `i` is line `i`).
#[derive(Clone, Debug, PartialEq)]
pub enum KeyNames {
    /// The text before and after the pattern's `{}`.
    Format(String, String),
    /// The keys, in order.
    List(Arc<[String]>),
}

impl Default for KeyNames {
    fn default() -> Self {
        KeyNames::Format("key-".to_owned(), String::new())
    }
}

impl KeyNames {
    /// The names of `pattern`, which holds `{}` exactly once (e.g. `user:{}`).
    pub fn format(pattern: &str) -> Result<Self, String> {
        match pattern.split_once("{}") {
            Some((before, after)) if !after.contains("{}") => {
                Ok(KeyNames::Format(before.to_owned(), after.to_owned()))
            }
            _ => Err(format!(
                "invalid key format {pattern:?}: expected one {{}} for the key's number, e.g. user:{{}}"
            )),
        }
    }

    /// The lines of the file at `path`, one key a line (a trailing `\r` dropped, empty
    /// lines skipped); an error when it cannot be read or holds no key.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read keys from {}: {e}", path.display()))?;
        let keys: Arc<[String]> = text
            .lines()
            .map(|line| line.strip_suffix('\r').unwrap_or(line))
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect();
        if keys.is_empty() {
            return Err(format!("{} holds no key (one a line)", path.display()));
        }
        Ok(KeyNames::List(keys))
    }

    /// How many keys there are: the file's, or `None` for a pattern (any index).
    pub fn count(&self) -> Option<u64> {
        match self {
            KeyNames::Format(..) => None,
            KeyNames::List(keys) => Some(keys.len() as u64),
        }
    }

    /// Append the key of index `i` to `out` (for a list, its key `i` modulo its length).
    pub(crate) fn push(&self, out: &mut String, i: u64) {
        match self {
            KeyNames::Format(before, after) => {
                use std::fmt::Write;
                // Writing to a String cannot fail.
                let _ = write!(out, "{before}{i}{after}");
            }
            KeyNames::List(keys) => {
                let at = usize::try_from(i).unwrap_or(0).checked_rem(keys.len());
                if let Some(key) = at.and_then(|at| keys.get(at)) {
                    out.push_str(key);
                }
            }
        }
    }
}

/// The key of index `i`, as the demo database names it (`key-{i}`).
pub(crate) fn key_name(i: u64) -> String {
    let mut key = String::new();
    KeyNames::default().push(&mut key, i);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(dist: Dist, n: u64, draws: usize) -> Vec<u64> {
        let sampler = KeySampler::new(dist, n).unwrap();
        let mut rng = fastrand::Rng::with_seed(7);
        let mut counts = vec![0u64; n as usize];
        for _ in 0..draws {
            counts[sampler.sample(&mut rng) as usize] += 1;
        }
        counts
    }

    #[test]
    fn zipf_is_skewed_towards_low_ranks() {
        let c = counts(Dist::Zipf(1.1), 1000, 100_000);
        // P(rank 1) = 1 / sum_{k<=1000} k^-1.1 ~= 0.18; rank 10 is 10^1.1 ~= 12.6x rarer.
        let top = c[0] as f64 / 100_000.0;
        assert!((0.15..0.21).contains(&top), "top key share {top}");
        assert!(c[0] > 8 * c[9], "rank 1 {} vs rank 10 {}", c[0], c[9]);
        let head: u64 = c[..10].iter().sum();
        let tail: u64 = c[500..].iter().sum();
        assert!(head > 3 * tail, "head {head} tail {tail}");
    }

    #[test]
    fn uniform_is_flat() {
        let c = counts(Dist::Uniform, 1000, 100_000);
        let (min, max) = (c.iter().min().unwrap(), c.iter().max().unwrap());
        assert!(*min > 50 && *max < 150, "min {min} max {max}");
    }

    #[test]
    fn zipf_zero_is_uniform_and_every_draw_is_in_range() {
        let c = counts(Dist::Zipf(0.0), 10, 10_000);
        assert!(c.iter().all(|&n| (800..1200).contains(&n)), "{c:?}");
        assert_eq!(counts(Dist::Zipf(3.0), 1, 100), [100]);
    }

    #[test]
    fn zipf_over_too_many_keys_is_refused() {
        let e = KeySampler::new(Dist::Zipf(1.1), MAX_ZIPF_KEYS + 1).unwrap_err();
        assert!(e.contains("too many") && e.contains("uniform"), "{e}");
        assert!(KeySampler::new(Dist::Uniform, u64::MAX).is_ok());
    }

    #[test]
    fn key_names_from_a_pattern_or_a_file() {
        let name = |names: &KeyNames, i| {
            let mut key = String::new();
            names.push(&mut key, i);
            key
        };
        assert_eq!(name(&KeyNames::default(), 7), "key-7");
        assert_eq!(
            KeyNames::format(DEFAULT_KEY_FORMAT),
            Ok(KeyNames::default())
        );
        assert_eq!(
            name(&KeyNames::format("user:{}:v2").unwrap(), 42),
            "user:42:v2"
        );
        for bad in ["user", "{}{}", "a{}b{}"] {
            let e = KeyNames::format(bad).unwrap_err();
            assert!(e.contains("one {}"), "{bad}: {e}");
        }
        let dir = std::env::temp_dir().join(format!("galaxyd-keys-{}", std::process::id()));
        std::fs::write(&dir, "alpha\r\n\nbeta\ngamma\n").unwrap();
        let list = KeyNames::from_file(&dir).unwrap();
        assert_eq!(list.count(), Some(3));
        assert_eq!(
            [0, 1, 2, 3].map(|i| name(&list, i)),
            ["alpha", "beta", "gamma", "alpha"]
        );
        std::fs::write(&dir, "\n\n").unwrap();
        assert!(
            KeyNames::from_file(&dir)
                .unwrap_err()
                .contains("holds no key")
        );
        std::fs::remove_file(&dir).unwrap();
        let e = KeyNames::from_file(&dir).unwrap_err();
        assert!(e.contains("cannot read keys"), "{e}");
    }

    #[test]
    fn parse_distributions() {
        assert_eq!("uniform".parse(), Ok(Dist::Uniform));
        assert_eq!("zipf:1.1".parse(), Ok(Dist::Zipf(1.1)));
        assert_eq!("zipf".parse(), Ok(Dist::Zipf(1.0)));
        assert!("zipf:-1".parse::<Dist>().unwrap_err().contains("exponent"));
        assert!(
            "pareto"
                .parse::<Dist>()
                .unwrap_err()
                .contains("unknown distribution")
        );
        assert_eq!(Dist::Zipf(1.1).to_string().parse(), Ok(Dist::Zipf(1.1)));
    }
}
