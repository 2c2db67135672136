//! How the command line talks: `-q` quiets the per-scenario lines of passing and
//! skipped scenarios, colour only on a terminal and never with `NO_COLOR`, and the
//! tracing subscriber (`-v`, `-vv`, `-vvv`, or `RUST_LOG`).

use std::io::IsTerminal as _;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, Default)]
pub struct Output {
    pub(crate) quiet: bool,
    pub(crate) color: bool,
}

static OUTPUT: OnceLock<Output> = OnceLock::new();

/// Sets how the process prints, once, and installs the tracing subscriber on stderr:
/// `RUST_LOG` when set, else warnings (`-q`: errors, `-v`: info, `-vv`: debug).
pub fn init(verbose: u8, quiet: bool) {
    let color = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = OUTPUT.set(Output { quiet, color });
    // -v and -vv are secnet's own steps (phases, pods, plugin calls, probes); the
    // libraries below (HTTP/2 frames, TLS) stay at warnings until -vvv.
    // kube's client logs every 5xx answer as an error, though the caller gets it as
    // well: a bare cluster's `/readyz` answers 500 until the API server is ready.
    let level = match (quiet, verbose) {
        (true, _) => "error,kube_client::client::builder=off",
        (false, 0) => "warn,kube_client::client::builder=off",
        (false, 1) => "warn,secnet=info,kube_client::client::builder=off",
        (false, 2) => "warn,secnet=debug,kube_client::client::builder=off",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .try_init();
}

pub fn output() -> Output {
    OUTPUT.get().copied().unwrap_or_default()
}

/// `mark` (PASS, FAIL, SKIP) in its colour when colour is on.
pub fn paint(mark: &str) -> String {
    if !output().color {
        return mark.to_string();
    }
    let code = match mark {
        "PASS" => "32",
        "FAIL" => "31",
        _ => "33",
    };
    format!("\u{1b}[1;{code}m{mark}\u{1b}[0m")
}
