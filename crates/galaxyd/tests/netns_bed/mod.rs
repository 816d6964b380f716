//! A test bed of `galaxyd serve` processes, each in a network namespace of its own, and
//! the faults it injects into them: links down, SIGKILL and restart, SIGSTOP and SIGCONT,
//! delay and loss on a node's links.
//!
//! The namespaces, all named `gx<PID>b<N>...` (N counts the beds of one test process):
//!
//! - a hub (`...h`), where the test's clients and its origin server live (the thread
//!   running them enters it with setns(2)), with one veth pair to each node: the hub's
//!   end `s<i>` is 10.9.1.(4i+1)/30, the node's end `svc` is 10.9.1.(4i+2)/30. A node's
//!   client API listens on its end; it reaches the origin at the hub's.
//! - a namespace per node (`...n<i>`), joined to every other node by a veth pair of its
//!   own (`m<j>` in node i's namespace, `m<i>` in node j's): the node's peer address
//!   10.9.0.(i+1) sits on each of its mesh links, point-to-point with the other end. Peer
//!   traffic crosses only the mesh, so a fault there never cuts a node from its clients
//!   or from the origin.
//!
//! The addresses exist only inside these namespaces. Everything is removed when the bed
//! is dropped (processes killed by PID, then the namespaces deleted, which deletes their
//! links), on success, failure and panic alike; a bed also deletes the namespaces of
//! earlier test processes that died without cleaning up.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustix::process::{Pid, Signal, kill_process};
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

/// The port of every node's peer listener.
const PEER_PORT: u16 = 7000;
/// The port of every node's client API.
const API_PORT: u16 = 8080;
/// The port the origin listens on in the hub.
pub(crate) const ORIGIN_PORT: u16 = 8000;
/// The galaxy every node runs.
pub(crate) const GALAXY: &str = "g";
/// The most nodes a bed takes (the address plan's bound is far higher).
pub(crate) const MAX_NODES: usize = 8;

/// Beds started by this test process.
static BEDS: AtomicUsize = AtomicUsize::new(0);

/// How delay and loss are injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Impairment {
    /// `tc qdisc ... netem` (delay with jitter, random loss), when the kernel has it.
    Netem,
    /// Without netem: delay is a token-bucket rate limit (`tc qdisc ... tbf`), whose
    /// queue holds packets back; loss is an nftables rule dropping a share of packets at
    /// random (`numgen random`).
    TbfAndNftables,
}

impl Impairment {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Impairment::Netem => "tc netem (delay 100ms ± 50ms; loss 20%)",
            Impairment::TbfAndNftables => {
                "NO NETEM IN THIS KERNEL: delay by a tbf rate limit of 32 kbit/s on the \
                 node's peer links (packets queue: about 40-300 ms a request); loss by an \
                 nftables rule dropping 20% of the packets on them (numgen random)"
            }
        }
    }
}

/// A fault on the network: which one, on which node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Impair {
    Delay,
    Loss,
}

/// The namespaces, links and processes of one test.
pub(crate) struct Bed {
    prefix: String,
    nodes: usize,
    /// Namespaces created so far: deleted on drop.
    namespaces: Mutex<Vec<String>>,
    /// Each node's process, while it runs.
    children: Mutex<Vec<Option<Child>>>,
    logs: tempfile::TempDir,
    pub(crate) impairment: Impairment,
}

/// Run `program` with `args`; its stdout, or why it failed.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program} {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) {
    if let Err(e) = run("ip", args) {
        panic!("test bed: {e}");
    }
}

/// Why namespaces cannot be made here, if they cannot: said loudly, and the test fails.
fn unavailable(why: &str) -> ! {
    let line = "!".repeat(78);
    panic!(
        "\n{line}\nNETNS TEST BED UNAVAILABLE: {why}\nThis test needs root and iproute2 \
         (`ip netns`), and nftables where the kernel has no netem; .ci/run installs them.\n\
         {line}"
    );
}

impl Bed {
    /// A bed of `nodes` namespaces joined as the module docs say, plus the hub; no node
    /// runs yet.
    pub(crate) fn new(nodes: usize) -> Bed {
        assert!((2..=MAX_NODES).contains(&nodes), "2 to {MAX_NODES} nodes");
        if !rustix::process::geteuid().is_root() {
            unavailable("not running as root");
        }
        if let Err(e) = run("ip", &["-V"]) {
            unavailable(&format!("no `ip`: {e}"));
        }
        let pid = std::process::id();
        remove_orphans();
        let prefix = format!("gx{pid}b{}", BEDS.fetch_add(1, Ordering::SeqCst));
        let mut bed = Bed {
            prefix,
            nodes,
            namespaces: Mutex::new(Vec::new()),
            children: Mutex::new((0..nodes).map(|_| None).collect()),
            logs: tempfile::tempdir().unwrap(),
            impairment: Impairment::Netem,
        };
        let hub = bed.hub();
        if let Err(e) = run("ip", &["netns", "add", &hub]) {
            unavailable(&format!("cannot create a network namespace: {e}"));
        }
        bed.namespaces.lock().unwrap().push(hub.clone());
        ip(&["-n", &hub, "link", "set", "lo", "up"]);
        let netem = run(
            "ip",
            &[
                "netns", "exec", &hub, "tc", "qdisc", "add", "dev", "lo", "root", "netem",
            ],
        );
        bed.impairment = if netem.is_ok() {
            ip(&[
                "netns", "exec", &hub, "tc", "qdisc", "del", "dev", "lo", "root",
            ]);
            Impairment::Netem
        } else {
            if let Err(e) = run("nft", &["--version"]) {
                unavailable(&format!("no netem in this kernel, and no `nft`: {e}"));
            }
            Impairment::TbfAndNftables
        };
        for i in 0..nodes {
            let ns = bed.ns(i);
            ip(&["netns", "add", &ns]);
            bed.namespaces.lock().unwrap().push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            let s = format!("s{i}");
            ip(&[
                "-n", &hub, "link", "add", &s, "type", "veth", "peer", "name", "svc", "netns", &ns,
            ]);
            ip(&[
                "-n",
                &hub,
                "addr",
                "add",
                &format!("{}/30", hub_addr(i)),
                "dev",
                &s,
            ]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/30", svc_addr(i)),
                "dev",
                "svc",
            ]);
            ip(&["-n", &hub, "link", "set", &s, "up"]);
            ip(&["-n", &ns, "link", "set", "svc", "up"]);
        }
        for i in 0..nodes {
            for j in i + 1..nodes {
                let (a, b) = (bed.ns(i), bed.ns(j));
                let (to_j, to_i) = (format!("m{j}"), format!("m{i}"));
                ip(&[
                    "-n", &a, "link", "add", &to_j, "type", "veth", "peer", "name", &to_i, "netns",
                    &b,
                ]);
                ip(&[
                    "-n",
                    &a,
                    "addr",
                    "add",
                    &peer_addr(i),
                    "peer",
                    &peer_addr(j),
                    "dev",
                    &to_j,
                ]);
                ip(&[
                    "-n",
                    &b,
                    "addr",
                    "add",
                    &peer_addr(j),
                    "peer",
                    &peer_addr(i),
                    "dev",
                    &to_i,
                ]);
                ip(&["-n", &a, "link", "set", &to_j, "up"]);
                ip(&["-n", &b, "link", "set", &to_i, "up"]);
            }
        }
        bed
    }

    pub(crate) fn nodes(&self) -> usize {
        self.nodes
    }

    fn hub(&self) -> String {
        format!("{}h", self.prefix)
    }

    fn ns(&self, i: usize) -> String {
        format!("{}n{i}", self.prefix)
    }

    /// Node `i`'s client API, as the hub reaches it.
    pub(crate) fn api(&self, i: usize) -> String {
        format!("http://{}:{API_PORT}", svc_addr(i))
    }

    /// Node `i`'s peer URL.
    pub(crate) fn peer_url(i: usize) -> String {
        format!("http://{}:{PEER_PORT}", peer_addr(i))
    }

    /// Node `i`'s address, as `ConnectInfo` in the hub shows it; the node of an address.
    pub(crate) fn node_of(addr: std::net::IpAddr) -> Option<usize> {
        let std::net::IpAddr::V4(v4) = addr else {
            return None;
        };
        let [10, 9, 1, last] = v4.octets() else {
            return None;
        };
        (last % 4 == 2).then_some(usize::from(last / 4))
    }

    /// Run `f` on a thread that has entered the hub's namespace (sockets it opens, and
    /// threads it starts, are there); its result. A panic in it is this call's.
    pub(crate) fn in_hub<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.in_namespace(&self.hub(), f)
    }

    /// Run `f` on a thread inside node `i`'s namespace.
    pub(crate) fn in_node<R: Send>(&self, i: usize, f: impl FnOnce() -> R + Send) -> R {
        self.in_namespace(&self.ns(i), f)
    }

    fn in_namespace<R: Send>(&self, ns: &str, f: impl FnOnce() -> R + Send) -> R {
        let path = format!("/run/netns/{ns}");
        std::thread::scope(|scope| {
            let thread = scope.spawn(move || {
                let file = File::open(&path).unwrap();
                move_into_link_name_space(
                    std::os::fd::AsFd::as_fd(&file),
                    Some(LinkNameSpaceType::Network),
                )
                .unwrap();
                f()
            });
            match thread.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.logs.path().join(format!("n{i}.log"))
    }

    /// The last `lines` lines of node `i`'s log (every start of it).
    pub(crate) fn log_tail(&self, i: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Start `galaxyd serve` for node `i` in its namespace, with `extra` flags; it is
    /// ready once its `/readyz` answers (the caller polls that).
    pub(crate) fn start(&self, i: usize, extra: &[&str]) {
        let peers: Vec<String> = (0..self.nodes).map(Bed::peer_url).collect();
        let backend = format!("http:http://{}:{ORIGIN_PORT}/k/{{key}}", hub_addr(i));
        let listen = format!("{}:{API_PORT}", svc_addr(i));
        let me = Bed::peer_url(i);
        let peer_listen = format!("0.0.0.0:{PEER_PORT}");
        let peers = peers.join(",");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .unwrap();
        let ns = self.ns(i);
        let mut args = vec![
            "netns",
            "exec",
            &ns,
            env!("CARGO_BIN_EXE_galaxyd"),
            "serve",
            "--self",
            &me,
            "--peer-listen",
            &peer_listen,
            "--listen",
            &listen,
            "--peers",
            &peers,
            "--galaxy",
            GALAXY,
            "--backend",
            &backend,
        ];
        args.extend_from_slice(extra);
        // `ip netns exec` execs galaxyd: the child's PID is galaxyd's.
        let child = Command::new("ip")
            .args(&args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut children = self.children.lock().unwrap();
        assert!(children[i].is_none(), "node {i} runs already");
        children[i] = Some(child);
    }

    /// SIGKILL node `i` (by its PID) and reap it.
    pub(crate) fn kill(&self, i: usize) {
        let child = self.children.lock().unwrap()[i].take();
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Send `signal` to node `i`'s process.
    pub(crate) fn signal(&self, i: usize, signal: Signal) {
        let children = self.children.lock().unwrap();
        let child = children[i].as_ref().expect("node runs");
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
        kill_process(pid, signal).unwrap();
    }

    /// Put the link between nodes `a` and `b` down (both ends lose their carrier), or
    /// back up.
    pub(crate) fn link(&self, a: usize, b: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.ns(a), "link", "set", &format!("m{b}"), state]);
        if up {
            ip(&["-n", &self.ns(b), "link", "set", &format!("m{a}"), state]);
        }
    }

    /// Delay or drop the packets node `i` exchanges with its peers (`on`), or stop.
    pub(crate) fn impair(&self, i: usize, what: Impair, on: bool) {
        // Both directions: node i's egress on its links, and each peer's toward i.
        let ends: Vec<(String, String)> = (0..self.nodes)
            .filter(|&j| j != i)
            .flat_map(|j| [(self.ns(i), format!("m{j}")), (self.ns(j), format!("m{i}"))])
            .collect();
        match (self.impairment, what) {
            (Impairment::TbfAndNftables, Impair::Loss) => {
                let ns = self.ns(i);
                if on {
                    let rules = "table inet gxfault {\n\
                        chain input { type filter hook input priority 0; \
                        iifname \"m*\" numgen random mod 100 < 20 drop; }\n\
                        chain output { type filter hook output priority 0; \
                        oifname \"m*\" numgen random mod 100 < 20 drop; }\n}\n";
                    nft(&ns, rules);
                } else {
                    nft(&ns, "delete table inet gxfault\n");
                }
            }
            (impairment, what) => {
                let qdisc: &[&str] = match (impairment, what) {
                    (Impairment::Netem, Impair::Delay) => &["netem", "delay", "100ms", "50ms"],
                    (Impairment::Netem, Impair::Loss) => &["netem", "loss", "20%"],
                    _ => &["tbf", "rate", "32kbit", "burst", "2kb", "latency", "2s"],
                };
                for (ns, dev) in &ends {
                    let mut args = vec!["netns", "exec", ns, "tc", "qdisc"];
                    if on {
                        args.extend_from_slice(&["add", "dev", dev, "root"]);
                        args.extend_from_slice(qdisc);
                    } else {
                        args.extend_from_slice(&["del", "dev", dev, "root"]);
                    }
                    ip(&args);
                }
            }
        }
    }
}

/// Apply nftables `rules` in namespace `ns`.
fn nft(ns: &str, rules: &str) {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(rules.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nft in {ns}: {}\n{rules}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The peer address of node `i`.
fn peer_addr(i: usize) -> String {
    format!("10.9.0.{}", i + 1)
}

/// The hub's end of node `i`'s service link.
fn hub_addr(i: usize) -> String {
    format!("10.9.1.{}", 4 * i + 1)
}

/// Node `i`'s end of its service link: its client API.
fn svc_addr(i: usize) -> String {
    format!("10.9.1.{}", 4 * i + 2)
}

/// Delete the namespaces of test processes that no longer run (killed before their
/// bed's drop ran).
fn remove_orphans() {
    let Ok(list) = run("ip", &["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name
            .strip_prefix("gx")
            .and_then(|rest| rest.split_once('b'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("test bed: deleting namespace {name} of test process {pid}, gone");
            let _ = run("ip", &["netns", "del", name]);
        }
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        let children = self
            .children
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for mut child in children.iter_mut().filter_map(Option::take) {
            // SIGKILL ends a stopped process too.
            let _ = child.kill();
            let _ = child.wait();
        }
        let namespaces = self
            .namespaces
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for ns in namespaces.drain(..).rev() {
            if let Err(e) = run("ip", &["netns", "del", &ns]) {
                eprintln!("test bed: {e}");
            }
        }
    }
}
