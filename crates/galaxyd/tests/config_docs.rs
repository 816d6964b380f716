//! docs/galaxyd.md and docs/galaxyd.example.toml cannot drift from the settings: the
//! example loads through `galaxyd serve --config` (its commented-out peer sources too),
//! and every key and flag galaxyd declares is in the example and on the page.

use std::path::PathBuf;

use clap::{CommandFactory, Parser};
use galaxyd::{Cli, Command, GalaxySettings, NodeConfig, PeerSource, Settings, setting_keys};

fn docs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(docs().join(name)).unwrap()
}

/// `galaxyd serve --config PATH`, resolved as the node would.
fn load(path: &std::path::Path) -> Result<NodeConfig, String> {
    let cli = Cli::try_parse_from(["galaxyd", "serve", "--config", path.to_str().unwrap()]);
    let Command::Serve(serve) = cli.unwrap().command else {
        panic!("not serve")
    };
    serve.node_config()
}

/// The example with the lines of one peer source uncommented and `peers` dropped.
fn with_source(example: &str, source: &str) -> String {
    example
        .lines()
        .filter(|line| !line.starts_with("peers = "))
        .map(|line| match line.strip_prefix("# ") {
            Some(setting) if setting.starts_with(source) => setting,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_example_config_loads_with_galaxyds_loader() {
    let c = load(&docs().join("galaxyd.example.toml")).unwrap();
    assert_eq!(c.self_url, "http://10.0.0.1:9001");
    assert!(
        matches!(&c.peers, PeerSource::Static(p) if p.len() == 3),
        "{:?}",
        c.peers
    );
    assert!(c.security.tls.is_some() && c.security.api_tls.is_some());
    assert_eq!(c.in_flight_bytes(), 256 << 20);
    let names: Vec<&str> = c.galaxies.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["users", "products", "pages", "synthetic"]);
    let users = &c.galaxies[0];
    assert!(users.preload.first_update_fail_ok);
    assert_eq!(users.tuning.hot_ratio, Some(0.125));
    assert_eq!(
        c.galaxies[1].notify_channel.as_deref(),
        Some("products_changed")
    );
    assert_eq!(c.galaxies[2].cache_bytes, 16 << 20);
    assert_eq!(c.galaxies[3].backend_options.value_size, 4096);

    let example = read("galaxyd.example.toml");
    let dir = std::env::temp_dir().join(format!("galaxyd-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (source, expect) in [("peers_file", "File"), ("peers_dns", "Dns")] {
        let path = dir.join(format!("{source}.toml"));
        std::fs::write(&path, with_source(&example, source)).unwrap();
        let c = load(&path).unwrap();
        assert!(
            format!("{:?}", c.peers).starts_with(expect),
            "{:?}",
            c.peers
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_key_is_in_the_example_and_the_doc() {
    let example = read("galaxyd.example.toml");
    let doc = read("galaxyd.md");
    let mut keys = setting_keys::<Settings>();
    keys.extend(setting_keys::<GalaxySettings>());
    assert!(keys.len() > 40, "{keys:?}");
    let set = |line: &str, key: &str| {
        let line = line.strip_prefix("# ").unwrap_or(line);
        line.strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    };
    for key in &keys {
        assert!(
            example.lines().any(|line| set(line, key)),
            "key {key} is not set in docs/galaxyd.example.toml"
        );
        assert!(
            doc.contains(&format!("`{key}`")),
            "key {key} is not in docs/galaxyd.md"
        );
    }
}

#[test]
fn every_flag_of_serve_and_bench_is_in_the_doc() {
    let doc = read("galaxyd.md");
    let cli = Cli::command();
    for name in ["serve", "bench"] {
        let command = cli.find_subcommand(name).unwrap();
        for long in command.get_arguments().filter_map(clap::Arg::get_long) {
            if long == "help" {
                continue;
            }
            assert!(
                doc.contains(&format!("`--{long}")),
                "galaxyd {name} --{long} is not in docs/galaxyd.md"
            );
        }
    }
}
