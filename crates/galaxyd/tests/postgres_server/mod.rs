//! A throwaway PostgreSQL server for tests: Debian's binaries, `initdb` into a temporary
//! directory, listening on a free 127.0.0.1 port (unix socket in the same directory),
//! stopped by its PID when dropped.
//!
//! As root (CI), the server runs as the `postgres` system user, which owns the directory:
//! PostgreSQL refuses to run as root.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The database superuser the tests connect as (trust authentication, loopback only).
const USER: &str = "galaxy";
/// How long the server may take to accept connections, and to stop.
const DEADLINE: Duration = Duration::from_secs(30);

/// A running server. Dropping it stops it (SIGINT, PostgreSQL's fast shutdown) and waits.
#[derive(Debug)]
pub(crate) struct PgServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

/// The directory holding Debian's `initdb` and `postgres`, highest version first; `PG_BIN`
/// overrides.
fn find_binaries() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        let dir = PathBuf::from(dir);
        return dir.join("initdb").is_file().then_some(dir);
    }
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("postgres").is_file())
                .then_some((version, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// The `postgres` system user's uid and gid.
fn postgres_user() -> Option<(u32, u32)> {
    let id = |flag: &str| {
        let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
        String::from_utf8(out.stdout)
            .ok()?
            .trim()
            .parse::<u32>()
            .ok()
    };
    Some((id("-u")?, id("-g")?))
}

/// A command that runs as `identity` when there is one.
fn command(program: &Path, identity: Option<(u32, u32)>) -> Command {
    let mut command = Command::new(program);
    if let Some((uid, gid)) = identity {
        command.uid(uid).gid(gid);
    }
    command.env_remove("PGDATA").env("LC_ALL", "C");
    command
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

impl PgServer {
    /// Start a server, or `None` when PostgreSQL is not installed and this is not CI
    /// (loudly: the tests that need it are skipped). In CI (`CI` set), no PostgreSQL fails.
    pub(crate) fn start() -> Option<PgServer> {
        let Some(bin) = find_binaries() else {
            let message = "PostgreSQL not found (/usr/lib/postgresql/*/bin/initdb): \
                           apt-get install postgresql, or set PG_BIN";
            assert!(std::env::var_os("CI").is_none(), "{message}");
            eprintln!("\n!!!!! SKIPPED: {message} !!!!!\n");
            return None;
        };
        // PostgreSQL refuses to run as root: then it runs as the `postgres` user.
        let identity = is_root().then(|| {
            postgres_user().expect("running as root, and no `postgres` user to run PostgreSQL as")
        });
        let dir = tempfile::Builder::new()
            .prefix("galaxyd-pg-")
            .tempdir()
            .expect("temporary directory");
        if let Some((uid, gid)) = identity {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("chown the directory");
        }
        let data = dir.path().join("data");
        let out = command(&bin.join("initdb"), identity)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                USER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("postgres.log")).expect("log file");
        if let Some((uid, gid)) = identity {
            std::os::unix::fs::chown(dir.path().join("postgres.log"), Some(uid), Some(gid))
                .expect("chown the log");
        }
        let child = command(&bin.join("postgres"), identity)
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(dir.path())
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=60"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        Some(PgServer { child, port, dir })
    }

    /// The connection URL of the `postgres` database.
    pub(crate) fn url(&self) -> String {
        format!("postgresql://{USER}@127.0.0.1:{}/postgres", self.port)
    }

    /// What the server logged so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// A connection, once the server accepts them: polled until it does (bounded).
    pub(crate) async fn connect(&mut self) -> tokio_postgres::Client {
        let start = Instant::now();
        loop {
            match tokio_postgres::connect(&self.url(), tokio_postgres::NoTls).await {
                Ok((client, connection)) => {
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    return client;
                }
                Err(e) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        panic!("postgres exited ({status}): {}", self.log());
                    }
                    assert!(
                        start.elapsed() < DEADLINE,
                        "postgres accepts no connection: {e}\n{}",
                        self.log()
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // SIGINT is PostgreSQL's fast shutdown: it ends its backends and exits.
        // The shell's own `kill`: procps may not be installed.
        let _ = Command::new("sh")
            .args(["-c", &format!("kill -INT {}", self.child.id())])
            .status();
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
