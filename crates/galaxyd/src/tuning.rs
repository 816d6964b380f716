//! How a galaxy caches: the [`GalaxyBuilder`] settings galaxyd exposes (freshness, TTL
//! bounds, the hotcache's share, the peer timeout). Declared once, here: the same struct
//! is the `serve` flags (`--stale-if-error 30s`), the `[[galaxy]]` TOML keys
//! (`stale_if_error = "30s"`) and the setting a node applies to its builder. `None` is the
//! core's default, which each field's doc states.

use std::time::Duration;

use clap::Args;
use galaxycache_galaxy::{GalaxyBuilder, Refresh};
use serde::Deserialize;

use crate::units::parse_duration;

/// A galaxy's cache settings; every field is optional and `None` means the core's default.
#[derive(Args, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
#[command(next_help_heading = "Caching and freshness (per galaxy; [[galaxy]] keys with _)")]
pub struct Tuning {
    /// Reload a value in the background while it is still served, this long after it was
    /// loaded (e.g. 30s) or at this share of its TTL (e.g. 80%: a value with a 10 s TTL is
    /// refreshed after 8 s; a value that never expires then never is) [default: none,
    /// reload only once expired]
    #[arg(long, value_name = "DURATION|PERCENT", value_parser = parse_refresh, conflicts_with = "config")]
    #[serde(deserialize_with = "de::refresh_after")]
    pub refresh_after: Option<Refresh>,
    /// Spread refresh points at random before the planned one (XFetch), so keys loaded
    /// together do not refresh together; a larger BETA refreshes earlier. Without BETA,
    /// 1.0. Takes effect with --refresh-after [default: off]
    #[arg(long, value_name = "BETA", num_args = 0..=1, default_missing_value = "1",
          value_parser = parse_beta, conflicts_with = "config")]
    #[serde(deserialize_with = "de::xfetch")]
    pub xfetch: Option<f64>,
    /// Keep an expired value this much longer and serve it, marked stale, when its reload
    /// fails (backend error, timeout, unreachable owner) [default: 0, off]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "config")]
    #[serde(deserialize_with = "de::stale_if_error")]
    pub stale_if_error: Option<Duration>,
    /// With a stale value at hand, wait this long at most for its reload, then answer the
    /// stale value while the reload goes on [default: none, wait for the reload]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "config")]
    #[serde(deserialize_with = "de::soft_timeout")]
    pub soft_timeout: Option<Duration>,
    /// Remember this long that the data source has no value for a key, on every node
    /// [default: none, every get of a missing key asks the data source]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "config")]
    #[serde(deserialize_with = "de::not_found_ttl")]
    pub not_found_ttl: Option<Duration>,
    /// Longest a value is served after it is loaded, whatever its backend said
    /// [default: none, a value without expiry lives until evicted]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "config")]
    #[serde(deserialize_with = "de::max_ttl")]
    pub max_ttl: Option<Duration>,
    /// Take up to this much off --max-ttl, at random per value, so keys loaded together
    /// do not expire together [default: 0]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "config")]
    #[serde(deserialize_with = "de::ttl_jitter")]
    pub ttl_jitter: Option<Duration>,
    /// Share of the byte budget kept for copies of hot keys that other peers own (they also
    /// take what the maincache leaves unused), 0 to 1
    /// [default: 0.125]
    #[arg(long, value_name = "RATIO", value_parser = parse_ratio, conflicts_with = "config")]
    #[serde(deserialize_with = "de::hot_ratio")]
    pub hot_ratio: Option<f64>,
    /// How long a fetch from the key's owner may take before this node loads the key
    /// itself [default: 1s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "config")]
    #[serde(deserialize_with = "de::peer_timeout")]
    pub peer_timeout: Option<Duration>,
}

impl Tuning {
    /// `builder` with every setting given here applied; the others keep the core's default.
    pub(crate) fn apply(&self, builder: GalaxyBuilder) -> GalaxyBuilder {
        fn set<T: Copy>(
            b: GalaxyBuilder,
            value: Option<T>,
            setter: fn(GalaxyBuilder, T) -> GalaxyBuilder,
        ) -> GalaxyBuilder {
            match value {
                Some(v) => setter(b, v),
                None => b,
            }
        }
        let b = set(builder, self.refresh_after, GalaxyBuilder::refresh);
        let b = set(b, self.xfetch, GalaxyBuilder::xfetch);
        let b = set(b, self.stale_if_error, GalaxyBuilder::stale_if_error);
        let b = set(b, self.soft_timeout, GalaxyBuilder::soft_timeout);
        let b = set(b, self.not_found_ttl, GalaxyBuilder::not_found_ttl);
        let b = set(b, self.max_ttl, GalaxyBuilder::max_ttl);
        let b = set(b, self.ttl_jitter, GalaxyBuilder::ttl_jitter);
        let b = set(b, self.hot_ratio, GalaxyBuilder::hot_ratio);
        set(b, self.peer_timeout, GalaxyBuilder::peer_timeout)
    }
}

/// Parse `--refresh-after`: a duration (`30s`: after loading) or a percentage (`80%`: of
/// the value's TTL), above 0 and at most 100.
pub(crate) fn parse_refresh(text: &str) -> Result<Refresh, String> {
    let Some(percent) = text.trim().strip_suffix('%') else {
        return parse_duration(text).map(Refresh::After);
    };
    let invalid = || format!("invalid refresh point {text:?}: expected e.g. 30s or 80%");
    let percent: f64 = percent.trim().parse().map_err(|_| invalid())?;
    if !(percent > 0.0 && percent <= 100.0) {
        return Err(format!(
            "refresh point {text:?} is outside 0% (excluded) to 100%"
        ));
    }
    Ok(Refresh::AtFraction(percent / 100.0))
}

/// Parse XFetch's beta: a finite number, 0 or more.
fn parse_beta(text: &str) -> Result<f64, String> {
    let beta: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("invalid xfetch beta {text:?}: expected a number, e.g. 1.0"))?;
    check_beta(beta)
}

fn check_beta(beta: f64) -> Result<f64, String> {
    if beta.is_finite() && beta >= 0.0 {
        Ok(beta)
    } else {
        Err(format!(
            "xfetch beta {beta} must be a finite number, 0 or more"
        ))
    }
}

/// Parse a share of the budget: a number within 0..=1.
fn parse_ratio(text: &str) -> Result<f64, String> {
    let ratio: f64 = text.trim().parse().map_err(|_| {
        format!("invalid ratio {text:?}: expected a number from 0 to 1, e.g. 0.125")
    })?;
    check_ratio(ratio)
}

fn check_ratio(ratio: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&ratio) {
        Ok(ratio)
    } else {
        Err(format!("ratio {ratio} is outside 0..=1"))
    }
}

/// The TOML side: a deserializer per field, named after it, whose errors name it too
/// (flattened into `[[galaxy]]`, a field's errors would otherwise lose its key). The
/// peer settings (`crate::peers`) use the same two helpers.
pub(crate) mod de {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer};

    use std::time::Duration;

    use galaxycache_galaxy::Refresh;

    use super::{check_beta, check_ratio, parse_duration, parse_refresh};

    /// Field `name`: text for `parse` (e.g. a duration `"30s"`), or a number for `check`.
    pub(crate) fn field<'de, D, R, T>(
        d: D,
        name: &str,
        parse: impl FnOnce(R) -> Result<T, String>,
    ) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        R: Deserialize<'de>,
    {
        let raw = R::deserialize(d).map_err(|e| D::Error::custom(format!("{name}: {e}")))?;
        parse(raw)
            .map(Some)
            .map_err(|e| D::Error::custom(format!("{name}: {e}")))
    }

    /// `fn NAME(d) -> Result<Option<OUT>, _>`: field NAME through `field`.
    macro_rules! fields {
        ($($name:ident: $out:ty = $parse:expr;)*) => {$(
            pub(super) fn $name<'de, D: serde::Deserializer<'de>>(
                d: D,
            ) -> Result<Option<$out>, D::Error> {
                $crate::tuning::de::field(d, stringify!($name), $parse)
            }
        )*};
    }
    pub(crate) use fields;

    fields! {
        refresh_after: Refresh = |text: String| parse_refresh(&text);
        xfetch: f64 = check_beta;
        stale_if_error: Duration = |text: String| parse_duration(&text);
        soft_timeout: Duration = |text: String| parse_duration(&text);
        not_found_ttl: Duration = |text: String| parse_duration(&text);
        max_ttl: Duration = |text: String| parse_duration(&text);
        ttl_jitter: Duration = |text: String| parse_duration(&text);
        hot_ratio: f64 = check_ratio;
        peer_timeout: Duration = |text: String| parse_duration(&text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_points_as_durations_or_percentages() {
        assert_eq!(
            parse_refresh("30s"),
            Ok(Refresh::After(Duration::from_secs(30)))
        );
        assert_eq!(parse_refresh("80%"), Ok(Refresh::AtFraction(0.8)));
        assert_eq!(parse_refresh(" 100 % "), Ok(Refresh::AtFraction(1.0)));
        for bad in ["0%", "101%", "-5%", "x%", "%"] {
            let e = parse_refresh(bad).unwrap_err();
            assert!(e.contains("refresh point"), "{bad}: {e}");
        }
        assert!(parse_refresh("30").unwrap_err().contains("no unit"));
    }

    #[test]
    fn betas_and_ratios_are_checked() {
        assert_eq!(parse_beta("2.5"), Ok(2.5));
        assert!(parse_beta("-1").is_err() && parse_beta("inf").is_err());
        assert!(parse_beta("x").unwrap_err().contains("xfetch beta"));
        assert_eq!(parse_ratio("0.25"), Ok(0.25));
        assert!(parse_ratio("1.5").unwrap_err().contains("outside 0..=1"));
    }

    #[test]
    fn applied_settings_reach_the_builder() {
        let universe = galaxycache_universe::Universe::builder("http://127.0.0.1:1").build();
        let backend = |_: String| async { Ok(None) };
        let tuning = Tuning {
            max_ttl: Some(Duration::from_secs(9)),
            hot_ratio: Some(0.5),
            peer_timeout: Some(Duration::from_millis(250)),
            ..Tuning::default()
        };
        let builder = tuning.apply(galaxycache_galaxy::Galaxy::builder(
            &universe, "g", 1024, backend,
        ));
        let shown = format!("{builder:?}");
        assert!(shown.contains("hot_ratio: 0.5"), "{shown}");
        assert!(shown.contains("max_ttl: Some(9s)"), "{shown}");
        assert!(shown.contains("peer_timeout: 250ms"), "{shown}");
    }
}
