//! `galaxyd top` in a real terminal (tmux): it finds every node of a 3-node cluster through
//! one node's client API, shows each with its request rate, shows a node that stops as
//! down and keeps running, and on `q` exits and gives the terminal back as it found it.
//!
//! Needs tmux (`.ci/run` installs it): without it this test fails rather than skips.

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::Galaxyd;
use galaxyd::HttpClient;

/// The loopback addresses of the three nodes: one per node, as on three hosts, so every
/// node has the same peer port and client API port (what `galaxyd top` expects).
const HOSTS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(127, 0, 7, 1),
    Ipv4Addr::new(127, 0, 7, 2),
    Ipv4Addr::new(127, 0, 7, 3),
];

/// A peer port and a client API port free on every one of `HOSTS`.
fn ports_free_everywhere() -> (u16, u16) {
    for _ in 0..50 {
        let bind = || TcpListener::bind((HOSTS[0], 0)).unwrap();
        let (peer, api) = (bind(), bind());
        let ports = (
            peer.local_addr().unwrap().port(),
            api.local_addr().unwrap().port(),
        );
        let others: Result<Vec<_>, _> = HOSTS[1..]
            .iter()
            .flat_map(|&h| [ports.0, ports.1].map(|p| TcpListener::bind((h, p))))
            .collect();
        if others.is_ok() {
            return ports;
        }
    }
    panic!("no pair of ports was free on all of {HOSTS:?}");
}

/// A tmux server of this test's own (its own socket, in a directory removed with it),
/// ended by its PID when dropped.
struct Tmux {
    socket: std::path::PathBuf,
    pid: Option<u32>,
    _dir: tempfile::TempDir,
}

impl Tmux {
    /// Start a server with one detached session of `width` x `height` running `command`;
    /// the pane stays after the command exits, so what it left on screen can be read.
    fn start(width: u16, height: u16, command: &str) -> Tmux {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("tmux");
        let mut tmux = Tmux {
            socket,
            pid: None,
            _dir: dir,
        };
        let (w, h) = (width.to_string(), height.to_string());
        let started = tmux.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            &w,
            "-y",
            &h,
            command,
            ";",
            "set-option",
            "-t",
            "top",
            "remain-on-exit",
            "on",
        ]);
        assert!(started.status.success(), "tmux: {started:?}");
        let pid = tmux.display("#{pid}");
        tmux.pid = Some(pid.parse().unwrap());
        tmux
    }

    /// Run tmux with `args` against this server.
    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux is missing: install it (.ci/run does, with apt-get)")
    }

    /// A format (`#{...}`) of the pane, expanded.
    fn display(&self, format: &str) -> String {
        let out = self.run(&["display-message", "-p", "-t", "top", format]);
        assert!(out.status.success(), "tmux display-message: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// What the pane shows now, and what scrolled off it.
    fn screen(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-S", "-", "-t", "top"]);
        assert!(out.status.success(), "tmux capture-pane: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Poll the pane (bounded: `within`) until `done` holds for what it shows; that
    /// screen, or a panic showing the last one.
    fn wait_for(&self, what: &str, within: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {within:?}; the pane shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

/// The row of the node at `api` on `screen`.
fn row<'a>(screen: &'a str, api: &str) -> Option<&'a str> {
    screen.lines().find(|l| l.starts_with(api))
}

/// The req/s column of a node's row (the second), as a number.
fn requests_per_sec(row: &str) -> Option<f64> {
    row.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn top_shows_every_node_of_a_cluster_a_stopped_one_as_down_and_quits_on_q() {
    let (peer_port, api_port) = ports_free_everywhere();
    let peer = |h: &Ipv4Addr| format!("http://{}", SocketAddr::from((*h, peer_port)));
    let peers = HOSTS.iter().map(peer).collect::<Vec<_>>().join(",");
    let mut nodes = Vec::new();
    let mut apis = Vec::new();
    for host in &HOSTS {
        let peer_listen = SocketAddr::from((*host, peer_port)).to_string();
        let listen = SocketAddr::from((*host, api_port)).to_string();
        let (node, api) = Galaxyd::serve(&[
            "--self",
            &peer(host),
            "--peer-listen",
            &peer_listen,
            "--peers",
            &peers,
            "--listen",
            &listen,
            "--value-size",
            "100",
        ]);
        assert_eq!(api, listen);
        nodes.push(node);
        apis.push(format!("http://{api}"));
    }

    // Gets to every node, all through the test, so each has a request rate.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (apis, stop) = (apis.clone(), Arc::clone(&stop));
        runtime.spawn(async move {
            let client = HttpClient::new(3, Duration::from_secs(5));
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for api in &apis {
                    let uri = format!("{api}/v1/galaxies/default/keys/key-{}", i % 100);
                    // A node stopped on purpose refuses: that is not this loop's concern.
                    let _ = client.get(uri.parse().unwrap()).await;
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };

    let command = format!(
        "{} top --node {} --interval 500ms; echo \"top exited: $?\"; stty -a",
        env!("CARGO_BIN_EXE_galaxyd"),
        apis[0]
    );
    let tmux = Tmux::start(160, 30, &command);

    // Every node, found through the first, each with a non-zero request rate.
    let all_busy = |screen: &str| {
        apis.iter().all(|api| {
            row(screen, api)
                .and_then(requests_per_sec)
                .is_some_and(|rate| rate > 0.0)
        })
    };
    let screen = tmux.wait_for(
        "row with req/s > 0 for every node",
        Duration::from_secs(30),
        all_busy,
    );
    assert!(screen.contains("3 nodes (3 up)"), "{screen}");
    assert!(screen.contains("req/s"), "{screen}");
    for api in &apis {
        let row = row(&screen, api).unwrap();
        // Bytes against the budget: the default 64 MiB.
        assert!(row.contains("/ 64.0 MiB"), "{row}");
        assert!(row.contains(" up"), "{row}");
    }
    assert_eq!(
        tmux.display("#{alternate_on}"),
        "1",
        "top draws on the alternate screen"
    );

    // The third node stops: it shows as down, and top goes on.
    let third = nodes.pop().unwrap();
    let pid = third.pid();
    drop(third);
    let down = |screen: &str| {
        row(screen, &apis[2]).is_some_and(|r| r.split_whitespace().nth(1) == Some("down"))
            && screen.contains("3 nodes (2 up)")
    };
    tmux.wait_for(
        &format!("down row for the stopped node (PID {pid})"),
        Duration::from_secs(30),
        down,
    );
    let still = |screen: &str| {
        apis[..2].iter().all(|api| {
            row(screen, api)
                .and_then(requests_per_sec)
                .is_some_and(|r| r > 0.0)
        })
    };
    tmux.wait_for(
        "rows of the other two nodes",
        Duration::from_secs(30),
        still,
    );

    // `q`: top exits 0, off the alternate screen, with the terminal out of raw mode.
    let sent = tmux.run(&["send-keys", "-t", "top", "q"]);
    assert!(sent.status.success(), "tmux send-keys: {sent:?}");
    let screen = tmux.wait_for("exit of top", Duration::from_secs(10), |s| {
        s.contains("top exited:") && s.contains("speed")
    });
    assert!(screen.contains("top exited: 0"), "{screen}");
    assert_eq!(tmux.display("#{alternate_on}"), "0", "{screen}");
    assert!(!screen.contains("req/s"), "the dashboard is gone: {screen}");
    // `stty -a` lists the modes that raw mode turns off as on again: line editing,
    // echo, signals from keys.
    let modes: Vec<&str> = screen.split_whitespace().collect();
    for mode in ["icanon", "echo", "isig", "icrnl", "opost"] {
        assert!(modes.contains(&mode), "{mode} not restored: {screen}");
    }

    stop.store(true, Ordering::Relaxed);
    runtime.block_on(load).unwrap();
}
