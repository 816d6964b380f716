//! `galaxyd owner`: which peer owns each key, exactly as every node's ring says.

use std::io::{self, BufRead, Write};

use galaxycache_universe::Ring;

use crate::peers::normalize_peers;

/// Write `KEY<TAB>OWNER` for each key, owners from a ring of `peers` (normalized as
/// `serve` normalizes them) with `replicas` points each.
pub(crate) fn write_owners<W, I, K>(
    out: &mut W,
    peers: &[String],
    replicas: usize,
    keys: I,
) -> anyhow::Result<()>
where
    W: Write,
    I: IntoIterator<Item = K>,
    K: AsRef<str>,
{
    let peers = normalize_peers(peers).map_err(anyhow::Error::msg)?;
    let ring = Ring::new(replicas, peers);
    for key in keys {
        let key = key.as_ref();
        let owner = ring.owner(key.as_bytes()).unwrap_or("");
        writeln!(out, "{key}\t{owner}")?;
    }
    Ok(())
}

/// Run the `owner` command: keys from the arguments, or from stdin (one a line) when
/// none are given.
pub fn run(peers: &[String], replicas: usize, keys: &[String]) -> anyhow::Result<()> {
    anyhow::ensure!(!peers.is_empty(), "--peers needs at least one peer URL");
    anyhow::ensure!(replicas > 0, "--replicas must be at least 1");
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    if keys.is_empty() {
        let lines = io::stdin().lock().lines().collect::<io::Result<Vec<_>>>()?;
        write_owners(&mut out, peers, replicas, lines)?;
    } else {
        write_owners(&mut out, peers, replicas, keys)?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners(peers: &[&str], replicas: usize, keys: &[&str]) -> String {
        let peers: Vec<String> = peers.iter().map(|p| p.to_string()).collect();
        let mut out = Vec::new();
        write_owners(&mut out, &peers, replicas, keys).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn one_line_per_key_as_the_ring_says() {
        let peers = [
            "http://10.0.0.1:8080",
            "http://10.0.0.2:8080",
            "http://10.0.0.3:8080",
        ];
        let keys: Vec<String> = (0..200).map(|i| format!("key-{i}")).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let text = owners(&peers, 50, &keys);
        let ring = Ring::new(50, peers);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), keys.len());
        for (line, key) in lines.iter().zip(&keys) {
            let expected = format!("{key}\t{}", ring.owner(key.as_bytes()).unwrap());
            assert_eq!(*line, expected);
        }
        let used: std::collections::HashSet<_> = lines
            .iter()
            .map(|l| l.split('\t').nth(1).unwrap())
            .collect();
        assert_eq!(used.len(), 3, "200 keys should reach all three peers");
    }

    #[test]
    fn peers_are_normalized_as_serve_does() {
        let keys: Vec<String> = (0..200).map(|i| format!("key-{i}")).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let plain = owners(&["http://a:1", "http://b:2"], 50, &keys);
        assert!(plain.contains("\thttp://a:1\n") && plain.contains("\thttp://b:2\n"));
        let default_port = owners(&["http://a:80", "http://b:2"], 50, &keys);
        assert_eq!(default_port, owners(&["http://a", "http://b:2"], 50, &keys));
        let mut out = Vec::new();
        let e = write_owners(&mut out, &["http://a b".to_owned()], 50, ["k"]).unwrap_err();
        assert!(e.to_string().contains("http://a b"), "{e}");
        for typed in ["http://a:1/", " http://a:1", "HTTP://A:1"] {
            assert_eq!(
                owners(&[typed, "http://b:2"], 50, &keys),
                plain,
                "{typed:?}"
            );
        }
    }
}
