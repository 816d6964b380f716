//! What CI can check of `deploy/` without systemd running, a cluster or docker:
//! - the systemd unit passes `systemd-analyze verify` (with its binary path pointed at the
//!   binary under test) and `systemd-analyze security` at a low exposure, and its example
//!   config starts a node;
//! - the Kubernetes manifests parse (Debian's python3-yaml), the Service is headless, and the
//!   Deployment's DNS discovery names that Service and its port;
//! - every galaxyd flag that the unit, the manifests and the Dockerfile pass exists in
//!   `galaxyd serve --help`, and the Dockerfile's Rust can build every locked dependency.
//!
//! Needs `systemd-analyze` (Debian's `systemd`) and `/usr/bin/python3` with `yaml` (Debian's
//! `python3-yaml`); `.ci/run` installs both, and without them these tests fail.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use galaxyd::HttpClient;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_galaxyd");
/// Where the unit and the Dockerfile install galaxyd.
const INSTALLED: &str = "/usr/local/bin/galaxyd";

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(path)
}

fn read(path: &str) -> String {
    let path = deploy(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (.ci/run installs it): {e}"))
}

/// The long flags `galaxyd serve --help` lists.
fn serve_flags() -> BTreeSet<String> {
    let out = run(BIN, &["serve", "--help"]);
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8(out.stdout).unwrap();
    let flags: BTreeSet<String> = help
        .lines()
        .map(str::trim_start)
        // `-h, --help`: the long name after the short one.
        .map(|l| match l.split_once(", --") {
            Some((short, rest)) if short.starts_with('-') && !short.starts_with("--") => rest,
            _ => l.strip_prefix("--").unwrap_or(""),
        })
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .collect();
    // A sanity check of the parsing, on flags every version has had.
    for known in ["config", "self", "listen", "peers-dns", "help"] {
        assert!(flags.contains(known), "{known} not found in:\n{help}");
    }
    flags
}

/// `args` must be a `serve` command line whose every `--flag` exists.
fn assert_serve_args(what: &str, args: &[String]) {
    assert_eq!(
        args.first().map(String::as_str),
        Some("serve"),
        "{what}: {args:?}"
    );
    let known = serve_flags();
    for arg in args.iter().filter(|a| a.starts_with("--")) {
        let name = arg.trim_start_matches('-').split('=').next().unwrap();
        assert!(
            known.contains(name),
            "{what} passes {arg}, which galaxyd serve does not have"
        );
    }
}

/// The value after `flag` in `args`.
fn flag_value<'a>(args: &'a [String], flag: &str) -> &'a str {
    let at = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("no {flag} in {args:?}"));
    &args[at + 1]
}

/// The unit's `Key=` values, in order.
fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn the_systemd_unit_verifies_is_hardened_and_passes_existing_flags() {
    let unit = read("systemd/galaxyd.service");
    let exec = unit_values(&unit, "ExecStart");
    assert_eq!(exec.len(), 1, "{exec:?}");
    let argv: Vec<String> = exec[0].split_whitespace().map(str::to_owned).collect();
    assert_eq!(argv[0], INSTALLED);
    assert_serve_args("ExecStart", &argv[1..]);
    assert!(
        flag_value(&argv, "--config").starts_with("/etc/galaxyd/"),
        "{argv:?}"
    );
    for hardening in ["DynamicUser", "NoNewPrivileges", "ProtectHome"] {
        assert_eq!(unit_values(&unit, hardening), ["yes"], "{hardening}");
    }
    assert_eq!(unit_values(&unit, "ProtectSystem"), ["strict"]);

    // verify needs ExecStart's binary to exist: a copy that runs the one under test.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("galaxyd.service");
    std::fs::write(&copy, unit.replace(INSTALLED, BIN)).unwrap();
    let copy = copy.to_str().unwrap();
    let out = run("systemd-analyze", &["verify", copy]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "systemd-analyze verify: {out:?}"
    );
    // systemd's own rating of the sandbox, 0 (locked down) to 10 (exposed): at most 2.0
    // (--threshold counts tenths). It rates this unit 1.4 with systemd 252.
    let out = run(
        "systemd-analyze",
        &["security", "--offline=yes", "--threshold=20", copy],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exposure above 2.0: {text}");
}

#[tokio::test]
async fn the_units_example_config_starts_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let peers = dir.path().join("peers");
    std::fs::write(&peers, "").unwrap();
    let config = deploy("systemd/galaxyd.toml");
    // The file as installed, but on ports of its own and with a peer file that exists.
    let (node, api) = common::Galaxyd::serve(&[
        "--config",
        config.to_str().unwrap(),
        "--self",
        "http://127.0.0.1:0",
        "--listen",
        "127.0.0.1:0",
        "--peers-file",
        peers.to_str().unwrap(),
    ]);
    let client = HttpClient::new(1, Duration::from_secs(10));
    let r = client
        .get(format!("http://{api}/v1/stats").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let stats: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(stats["galaxies"]["default"]["budget_bytes"], 64 << 20);
    drop(node);
}

/// The documents of a YAML file, as JSON, through Debian's PyYAML.
fn yaml_documents(path: &Path) -> Vec<Value> {
    let script = "import json, sys, yaml\n\
        docs = [d for d in yaml.safe_load_all(sys.stdin) if d is not None]\n\
        json.dump(docs, sys.stdout)";
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(Stdio::from(std::fs::File::open(path).unwrap()))
        .output()
        .expect("cannot run /usr/bin/python3 (.ci/run installs it, with python3-yaml)");
    assert!(out.status.success(), "{}: {out:?}", path.display());
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_kubernetes_nodes_find_each_other_through_the_headless_service() {
    let docs = yaml_documents(&deploy("kubernetes/galaxyd.yaml"));
    let of_kind = |kind: &str| {
        docs.iter()
            .filter(|d| d["kind"] == kind)
            .collect::<Vec<_>>()
    };
    let services = of_kind("Service");
    let headless: Vec<_> = services
        .iter()
        .filter(|s| s["spec"]["clusterIP"] == "None")
        .collect();
    assert_eq!(headless.len(), 1, "one headless Service: {services:?}");
    let headless = headless[0];
    let deployments = of_kind("Deployment");
    assert_eq!(deployments.len(), 1);
    let deployment = deployments[0];
    let pod = &deployment["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    for service in &services {
        for (key, value) in service["spec"]["selector"].as_object().unwrap() {
            assert_eq!(
                &labels[key], value,
                "{} selects no pod",
                service["metadata"]["name"]
            );
        }
    }
    assert_eq!(&deployment["spec"]["selector"]["matchLabels"], labels);

    let container = &pod["spec"]["containers"][0];
    let args: Vec<String> = serde_json::from_value(container["args"].clone()).unwrap();
    assert_serve_args("the Deployment", &args);
    // --peers-dns NAME:PORT names the headless Service and its peer port.
    let (name, port) = flag_value(&args, "--peers-dns").rsplit_once(':').unwrap();
    let service = headless["metadata"]["name"].as_str().unwrap();
    assert!(
        name.starts_with(&format!("{service}.")),
        "{name} is not {service}"
    );
    let port: u64 = port.parse().unwrap();
    assert_eq!(headless["spec"]["ports"][0]["port"], port);
    let ports = container["ports"].as_array().unwrap();
    assert!(
        ports.iter().any(|p| p["containerPort"] == port),
        "{ports:?}"
    );
    // --self is the pod's own address at that port: what the DNS answers list.
    assert_eq!(
        flag_value(&args, "--self"),
        format!("http://$(POD_IP):{port}")
    );
    // Every $(VAR) in the arguments is set from the pod.
    let env: Vec<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    for arg in &args {
        for var in arg.split("$(").skip(1).filter_map(|v| v.split_once(')')) {
            assert!(
                env.contains(&var.0),
                "{arg}: {} is not in env {env:?}",
                var.0
            );
        }
    }
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
}

/// The JSON array of a Dockerfile instruction (exec form), e.g. `CMD`.
fn exec_form(dockerfile: &str, instruction: &str) -> Vec<String> {
    let line = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix(instruction)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {instruction} in the Dockerfile"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{instruction} {line}: {e}"))
}

/// The newest `rust-version` of any package built for this machine, from `cargo metadata`
/// (filtered to this platform: the packages of other platforms' dependencies are not
/// downloaded by a build, and `--offline` cannot read them).
fn newest_rust_version() -> (u64, u64) {
    let rustc = Command::new("rustc").arg("-vV").output().unwrap();
    let host = String::from_utf8(rustc.stdout).unwrap();
    let host = host
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .to_owned();
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host])
        .current_dir(deploy(".."))
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo metadata: {out:?}");
    let metadata: Value = serde_json::from_slice(&out.stdout).unwrap();
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["rust_version"].as_str())
        .map(major_minor)
        .max()
        .unwrap()
}

fn major_minor(version: &str) -> (u64, u64) {
    let mut parts = version.split('.').map(|p| p.parse::<u64>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap_or(0))
}

#[test]
fn the_dockerfile_runs_galaxyd_as_non_root_with_existing_flags() {
    let dockerfile = read("Dockerfile");
    let entrypoint = exec_form(&dockerfile, "ENTRYPOINT");
    assert_eq!(entrypoint, [INSTALLED]);
    assert_serve_args("the Dockerfile's CMD", &exec_form(&dockerfile, "CMD"));
    let user = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the image names a USER");
    assert!(
        !["0", "root"].contains(&user.split(':').next().unwrap()),
        "USER {user}"
    );
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("FROM "))
        .collect();
    assert_eq!(
        stages.len(),
        2,
        "a build stage and a runtime stage: {stages:?}"
    );
    assert!(dockerfile.contains("cargo build --release --locked -p galaxyd"));
    // The build image's Rust can build every locked dependency.
    let rust = stages[0]
        .strip_prefix("rust:")
        .and_then(|s| s.split('-').next())
        .unwrap_or_else(|| panic!("the build stage is not a rust image: {}", stages[0]));
    let newest = newest_rust_version();
    assert!(
        major_minor(rust) >= newest,
        "rust:{rust} is older than {newest:?}"
    );
}
