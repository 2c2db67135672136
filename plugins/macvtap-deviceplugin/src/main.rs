//! `macvtap-deviceplugin`: reads the config, serves the resources, and on SIGTERM
//! stops serving, removes its sockets and exits 0.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use macvtap_deviceplugin::config::{self, Config, ConfigError};
use macvtap_deviceplugin::{supervisor, upstream_args};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::Instrument;

const CONFIG_ENV: &str = "DP_MACVTAP_CONF";
/// How many resource names the process-wide log context shows.
const SPAN_NAMES: usize = 4;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Kubernetes device plugin for macvtap interfaces (drop-in for kubevirt/macvtap-cni's)",
    after_help = "Upstream's glog flags (-v N, -logtostderr, -alsologtostderr, -stderrthreshold X) are accepted, so upstream's DaemonSet command line starts this plugin unchanged; -v 4 and above log at debug level (RUST_LOG overrides)."
)]
struct Args {
    /// Read the config (a JSON array of {name, lowerDevice, mode, capacity}) from FILE
    /// instead of the DP_MACVTAP_CONF environment variable.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The kubelet's device-plugin directory.
    #[arg(long, env = "DP_MACVTAP_DEVICE_PLUGIN_DIR", default_value = deviceplugin_api::DEFAULT_PLUGIN_DIR)]
    device_plugin_dir: PathBuf,
    /// With auto-discovery (`[]`), also take links of these netlink kinds (e.g. `veth`,
    /// whose links upstream never discovers: a kind node's eth0 is one).
    #[arg(
        long,
        env = "DP_MACVTAP_DISCOVER_KINDS",
        value_delimiter = ',',
        value_name = "KIND,..."
    )]
    discover_kinds: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(
        "failed to read macvtap config: neither --config FILE nor {CONFIG_ENV} is set (fix: set {CONFIG_ENV} to a JSON array such as [{{\"name\": \"dataplane\", \"lowerDevice\": \"eth0\"}}], or [] to auto-discover)"
    )]
    NoConfig,
    #[error("failed to read macvtap config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

fn load_config(args: &Args) -> Result<config::Parsed, StartError> {
    match &args.config {
        Some(path) => {
            let text = read_bounded(path).map_err(|source| StartError::ReadFile {
                path: path.clone(),
                source,
            })?;
            Ok(config::parse(&text, &path.display().to_string())?)
        }
        None => {
            let text = std::env::var(CONFIG_ENV).map_err(|_| StartError::NoConfig)?;
            Ok(config::parse(&text, CONFIG_ENV)?)
        }
    }
}

/// Reads at most one byte more than a config may have, so a huge file is refused by
/// the size check without being read whole.
fn read_bounded(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(config::MAX_CONFIG_BYTES as u64 + 1)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// SIGTERM and SIGINT stay pending (not fatal) until the handlers are installed, so
/// a stop during start-up is a clean stop too. Threads started later inherit the mask;
/// only the main thread takes them again.
fn hold_stop_signals(how: SigmaskHow) {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    let _ = nix::sys::signal::pthread_sigmask(how, Some(&set), None);
}

fn main() -> ExitCode {
    hold_stop_signals(SigmaskHow::SIG_BLOCK);
    // The sockets are for the kubelet (root) only, whatever umask we were started with.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    // Upstream's DaemonSet passes glog flags (`-v 3 -logtostderr`): accepted as-is.
    let (argv, verbosity) = upstream_args::split_glog(std::env::args_os().collect());
    let args = Args::parse_from(argv);
    let level = upstream_args::level_for(verbosity.unwrap_or(0));
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let parsed = match load_config(&args) {
        Ok(parsed) => parsed,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // Every line says which resources, but a long list only by its first names: a
    // line listing every name would make the log grow with the square of the config.
    let resources = match &parsed.config {
        Config::Explicit(list) => {
            let shown = if list.len() <= SPAN_NAMES {
                list.len()
            } else {
                SPAN_NAMES - 1
            };
            let mut names: Vec<String> = list[..shown]
                .iter()
                .map(|r| {
                    format!(
                        "{}/{}",
                        macvtap_deviceplugin::service::RESOURCE_PREFIX,
                        r.name
                    )
                })
                .collect();
            if shown < list.len() {
                names.push(format!("and {} more", list.len() - shown));
            }
            names.join(",")
        }
        Config::Discover => "auto-discovered".to_string(),
    };
    let span = tracing::info_span!("macvtap-deviceplugin", resources = %resources);
    let _entered = span.enter();
    if args.config.is_some() && std::env::var_os(CONFIG_ENV).is_some() {
        tracing::warn!("both --config and {CONFIG_ENV} are set; using --config");
    }
    for warning in &parsed.warnings {
        tracing::warn!("{warning}");
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("failed to start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let (shutdown, stopping) = watch::channel(false);
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        // A stop that arrived while starting is delivered now, to the handlers.
        hold_stop_signals(SigmaskHow::SIG_UNBLOCK);
        tokio::spawn(
            async move {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: stopping"),
                    _ = int.recv() => tracing::info!("SIGINT: stopping"),
                }
                shutdown.send_replace(true);
            }
            .in_current_span(),
        );
        let settings = supervisor::Settings {
            config: parsed.config,
            dir: args.device_plugin_dir,
            discover_kinds: args.discover_kinds,
        };
        supervisor::run(settings, stopping).await
    });
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
