//! A peer list in a file, re-read when it changes and when asked.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::{BoxFuture, Discovery, Error, ErrorKind};

/// How often a [`FilePeers`] looks at its file unless told otherwise: every second.
pub const DEFAULT_FILE_INTERVAL: Duration = Duration::from_secs(1);

/// Asks a [`FilePeers`] to re-read its file now, whether it changed or not (galaxyd does
/// on SIGHUP). Cheap to clone; a reload asked while the file is being read is not lost.
#[derive(Clone, Debug, Default)]
pub struct Reload(Arc<Notify>);

impl Reload {
    /// Re-read the file now.
    pub fn reload(&self) {
        self.0.notify_one();
    }
}

/// The peer list in a file: one URL a line, or several separated by commas; blank lines
/// and `#` comments are ignored.
///
/// Yields the list when first asked, then again whenever the file's modification time or
/// length changes (looked at every [`interval`](Self::interval)) and whenever its
/// [`Reload`] handle is triggered. It never ends. A file that cannot be read or lists no
/// URL is an error item (the ring keeps its last good list) once per change, and the
/// polling goes on. Replace the file atomically (write another, then rename it over this
/// one, as a Kubernetes ConfigMap volume does), or a poll may read it half-written.
///
/// ```no_run
/// use galaxycache::universe::{FilePeers, Universe};
///
/// # async fn run(universe: Universe) {
/// let peers = FilePeers::new("/etc/galaxycache/peers");
/// let reload = peers.reload_handle(); // reload.reload() on SIGHUP
/// tokio::spawn(async move { universe.follow(peers).await });
/// # }
/// ```
#[derive(Debug)]
pub struct FilePeers {
    path: PathBuf,
    interval: Duration,
    reload: Reload,
    polling: Option<Polling>,
}

/// What a file looked like: modification time and length; `None` when unreadable.
type Stamp = Option<(SystemTime, u64)>;

#[derive(Debug)]
struct Polling {
    ticker: Interval,
    stamp: Stamp,
}

impl FilePeers {
    /// The peer list in the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FilePeers {
            path: path.into(),
            interval: DEFAULT_FILE_INTERVAL,
            reload: Reload::default(),
            polling: None,
        }
    }

    /// How often to look at the file for a change (its modification time and length).
    /// Default: [`DEFAULT_FILE_INTERVAL`], 1 s; at least 1 ms.
    pub fn interval(mut self, every: Duration) -> Self {
        self.interval = every.max(Duration::from_millis(1));
        self
    }

    /// A handle that makes this source re-read its file at once.
    pub fn reload_handle(&self) -> Reload {
        self.reload.clone()
    }

    async fn next_list(&mut self) -> Result<Vec<String>, Error> {
        let polling = match &mut self.polling {
            Some(polling) => polling,
            None => {
                let start = Instant::now() + self.interval;
                let mut ticker = tokio::time::interval_at(start, self.interval);
                ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
                let stamp = stamp(&self.path);
                self.polling = Some(Polling { ticker, stamp });
                return read(&self.path);
            }
        };
        loop {
            tokio::select! {
                _ = polling.ticker.tick() => {
                    let now = stamp(&self.path);
                    if now != polling.stamp {
                        polling.stamp = now;
                        return read(&self.path);
                    }
                }
                () = self.reload.0.notified() => {
                    polling.stamp = stamp(&self.path);
                    return read(&self.path);
                }
            }
        }
    }
}

impl Discovery for FilePeers {
    fn next(&mut self) -> BoxFuture<'_, Option<Result<Vec<String>, Error>>> {
        Box::pin(async move { Some(self.next_list().await) })
    }
}

// A peer file is small: reading it in place is cheaper than a blocking-pool hop, and
// keeps tokio's paused clock deterministic in tests.
fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn read(path: &Path) -> Result<Vec<String>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot read peer file {}: {e}", path.display()),
        )
    })?;
    let urls = parse(&text);
    if urls.is_empty() {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "peer file {} lists no peer (list this node's own URL for a ring of one)",
                path.display()
            ),
        ));
    }
    Ok(urls)
}

/// The URLs in a peer file's `text`: one a line or comma-separated, entries trimmed,
/// blank lines and `#` comments dropped.
fn parse(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| line.split_once('#').map_or(line, |(before, _)| before))
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::test_log;
    use crate::{InProcessNetwork, Universe};

    #[test]
    fn lines_commas_blanks_and_comments() {
        let text = "# the cache ring\nhttp://a:1\n\n  http://b:1 , http://c:1# third\n,\n";
        assert_eq!(parse(text), ["http://a:1", "http://b:1", "http://c:1"]);
        assert!(parse("# nobody\n\n").is_empty());
    }

    /// A universe `http://a` following the file at `path`, in a task of its own.
    fn follow(path: &Path, every: Duration) -> (Universe, Reload) {
        let net = InProcessNetwork::new();
        let universe = Universe::builder("http://a")
            .protocol(net.protocol())
            .build();
        let source = FilePeers::new(path).interval(every);
        let reload = source.reload_handle();
        let follower = universe.clone();
        tokio::spawn(async move { follower.follow(source).await });
        (universe, reload)
    }

    /// Let the follower run until the ring is `peers`; the clock does not move.
    async fn ring_becomes(universe: &Universe, peers: &[&str]) {
        for _ in 0..1000 {
            if universe.peers() == peers {
                return;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(universe.peers(), peers);
    }

    /// Let the clock pass `every` (and a little), the follower's polls with it.
    async fn pass(every: Duration) {
        tokio::time::sleep(every + Duration::from_millis(1)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_file_changes_the_ring_at_the_next_poll() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers");
        std::fs::write(&path, "http://b\n").unwrap();
        let (universe, _) = follow(&path, DEFAULT_FILE_INTERVAL);
        ring_becomes(&universe, &["http://a", "http://b"]).await;
        std::fs::write(&path, "# now three\nhttp://b, http://c\n\nhttp://d/\n").unwrap();
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            universe.peers(),
            ["http://a", "http://b"],
            "before the poll"
        );
        pass(DEFAULT_FILE_INTERVAL).await;
        ring_becomes(&universe, &["http://a", "http://b", "http://c", "http://d"]).await;
    }

    #[tokio::test(start_paused = true)]
    async fn reload_re_reads_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers");
        std::fs::write(&path, "http://b").unwrap();
        let (universe, reload) = follow(&path, Duration::from_secs(3600));
        ring_becomes(&universe, &["http://a", "http://b"]).await;
        let start = Instant::now();
        std::fs::write(&path, "http://c").unwrap();
        reload.reload();
        ring_becomes(&universe, &["http://a", "http://c"]).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_bad_line_or_a_missing_file_warns_and_keeps_the_ring() {
        let (logs, _guard) = test_log::capture();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers");
        std::fs::write(&path, "http://b\n").unwrap();
        let (universe, _) = follow(&path, DEFAULT_FILE_INTERVAL);
        ring_becomes(&universe, &["http://a", "http://b"]).await;

        std::fs::write(&path, "http://b\nhttp://c d\n").unwrap();
        pass(DEFAULT_FILE_INTERVAL).await;
        pass(DEFAULT_FILE_INTERVAL).await;
        assert_eq!(universe.peers(), ["http://a", "http://b"]);
        let text = logs.text();
        assert!(
            text.contains("WARN") && text.contains("http://c d"),
            "{text}"
        );

        std::fs::remove_file(&path).unwrap();
        pass(DEFAULT_FILE_INTERVAL).await;
        pass(DEFAULT_FILE_INTERVAL).await;
        assert_eq!(universe.peers(), ["http://a", "http://b"]);
        let text = logs.text();
        assert_eq!(text.matches("cannot read peer file").count(), 1, "{text}");

        std::fs::write(&path, "http://e\n").unwrap();
        pass(DEFAULT_FILE_INTERVAL).await;
        ring_becomes(&universe, &["http://a", "http://e"]).await;
    }
}
