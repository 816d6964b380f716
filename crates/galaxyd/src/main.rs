//! galaxyd: a galaxycache node (`serve`), and tools for a cluster of them (`owner`,
//! `demo`, `bench`, `top`). `galaxyd --help` says how to use each.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use galaxyd::{
    BenchArgs, BenchConfig, Cli, Command, DemoArgs, DemoConfig, Node, NodeConfig, ServeArgs,
    run_bench, run_demo, run_owner, run_top,
};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

mod otlp;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A node logs what it does (and sets up its logging itself, once it knows whether to
    // export spans); the tools that draw progress bars only warn.
    if !matches!(cli.command, Command::Serve(_)) {
        init_logging("warn", None);
    }
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("galaxyd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Log to stderr at RUST_LOG's levels (`default_level` without it), and hand the spans
/// that the same filter enables to `export`, if any.
fn init_logging(default_level: &str, export: Option<&otlp::Export>) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    tracing_subscriber::registry()
        .with(filter)
        .with(log)
        .with(export.map(otlp::Export::layer))
        .init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Owner(args) => run_owner(&args.peers, args.replicas, &args.keys),
        Command::Serve(args) => run_serve(&args),
        Command::Demo(args) => runtime()?.block_on(demo(&args)),
        Command::Bench(args) => runtime()?.block_on(bench(&args)),
        Command::Top(args) => run_top(&runtime()?, &args),
    }
}

/// `galaxyd serve`: a node logging at info unless RUST_LOG says otherwise, its spans
/// exported when asked; the spans still queued are sent before it exits, whether it stops
/// on a signal or fails.
fn run_serve(args: &ServeArgs) -> anyhow::Result<()> {
    let config = args.node_config().map_err(anyhow::Error::msg)?;
    let runtime = runtime()?;
    let export = match &config.otlp_endpoint {
        Some(endpoint) => {
            let _inside = runtime.enter();
            Some(otlp::Export::start(endpoint, &config.self_url)?)
        }
        None => None,
    };
    init_logging("info", export.as_ref());
    raise_nofile_limit();
    let served = runtime.block_on(serve(args, &config));
    if let Some(export) = export
        && let Err(e) = export.shutdown()
    {
        tracing::warn!("{e:#}");
    }
    served
}

/// Run a node until SIGINT or SIGTERM, or until one of its servers fails (an error, so the
/// process exits non-zero).
async fn serve(args: &ServeArgs, config: &NodeConfig) -> anyhow::Result<()> {
    let mut hangups = Hangups::new()?;
    let mut node = Node::start(config).await?;
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            signal = &mut shutdown => break signal?,
            failure = node.wait() => return Err(failure),
            () = hangups.recv() => {
                tracing::info!("SIGHUP: re-reading the peer file, if any");
                node.reload_peers();
            }
        }
    }
    tracing::info!("shutting down");
    node.leave(args.drain).await
}

/// SIGHUP, which asks a node to re-read its peer file; never seen off Unix.
struct Hangups {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Hangups {
    /// Catch SIGHUP from now on (rather than die of it).
    fn new() -> anyhow::Result<Self> {
        Ok(Hangups {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .context("cannot watch SIGHUP")?,
        })
    }

    /// The next SIGHUP.
    async fn recv(&mut self) {
        #[cfg(unix)]
        if self.signal.recv().await.is_some() {
            return;
        }
        std::future::pending().await
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("cannot watch SIGINT")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("cannot watch Ctrl-C")?;
    Ok(())
}

async fn demo(args: &DemoArgs) -> anyhow::Result<()> {
    let config = DemoConfig {
        keys: args.keys,
        requests: args.requests,
        concurrency: args.concurrency,
        dist: args.dist,
        value_size: args.value_size,
        progress: true,
    };
    eprintln!(
        "galaxyd demo: {} rows in SQLite, 3 nodes on loopback, {} requests ({})",
        config.keys, config.requests, config.dist
    );
    let summary = run_demo(&config).await?;
    print!("{summary}");
    summary.check()
}

async fn bench(args: &BenchArgs) -> anyhow::Result<()> {
    let config = BenchConfig::from(args);
    let report = run_bench(&config).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    report.check()
}

/// Raise the soft limit of open files to the hard limit, and log the result: at the common
/// soft limit of 1,024 a busy node would silently stop accepting connections.
fn raise_nofile_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::info!(
            from = ?limit.current, to = ?limit.maximum,
            "raised the soft limit of open files to the hard limit"
        ),
        Err(e) => tracing::warn!(
            soft = ?limit.current, hard = ?limit.maximum, error = %e,
            "cannot raise the soft limit of open files"
        ),
    }
}
