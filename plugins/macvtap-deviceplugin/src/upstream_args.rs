//! Upstream's DaemonSet starts its device plugin as
//! `/macvtap-deviceplugin -v 3 -logtostderr` (Go glog flags). To be a drop-in, the
//! same command line must start ours: glog's flags are taken out of the arguments
//! before clap sees them, `-v N` becoming the log level.

use std::ffi::OsString;

/// glog flags without a value (`-logtostderr`, `--alsologtostderr=true`, ...).
const GLOG_SWITCHES: &[&str] = &["logtostderr", "alsologtostderr"];
/// glog flags with a value that we accept and ignore.
const GLOG_VALUED: &[&str] = &["stderrthreshold", "log_dir", "log_file", "vmodule"];

/// The arguments without glog's, and glog's verbosity if one was given.
pub fn split_glog(args: Vec<OsString>) -> (Vec<OsString>, Option<u32>) {
    let mut kept = Vec::with_capacity(args.len());
    let mut verbosity = None;
    let mut it = args.into_iter();
    if let Some(program) = it.next() {
        kept.push(program);
    }
    while let Some(arg) = it.next() {
        let Some(text) = arg.to_str() else {
            kept.push(arg);
            continue;
        };
        let Some(flag) = text.strip_prefix("--").or_else(|| text.strip_prefix('-')) else {
            kept.push(arg);
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        if GLOG_SWITCHES.contains(&name) {
            continue;
        }
        let valued = name == "v" || GLOG_VALUED.contains(&name);
        if !valued {
            kept.push(arg);
            continue;
        }
        let value = inline.or_else(|| it.next().and_then(|v| v.into_string().ok()));
        if name == "v" {
            verbosity = value.and_then(|v| v.parse().ok());
        }
    }
    (kept, verbosity)
}

/// The tracing filter for a glog verbosity: up to 3 is `info` (upstream logs its
/// normal operation at 3), 4 and more `debug`.
pub fn level_for(verbosity: u32) -> &'static str {
    if verbosity >= 4 { "debug" } else { "info" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn upstream_daemonset_command_line() {
        let (kept, v) = split_glog(os(&["/macvtap-deviceplugin", "-v", "3", "-logtostderr"]));
        assert_eq!(kept, os(&["/macvtap-deviceplugin"]));
        assert_eq!(v, Some(3));
    }

    #[test]
    fn glog_spellings_and_our_flags_side_by_side() {
        let (kept, v) = split_glog(os(&[
            "dp",
            "--v=5",
            "--alsologtostderr=true",
            "-stderrthreshold",
            "INFO",
            "--config",
            "/etc/dp.json",
            "--discover-kinds=veth",
        ]));
        assert_eq!(
            kept,
            os(&["dp", "--config", "/etc/dp.json", "--discover-kinds=veth"])
        );
        assert_eq!(v, Some(5));
        assert_eq!(level_for(5), "debug");
        assert_eq!(level_for(3), "info");
    }

    #[test]
    fn unknown_flags_are_left_for_clap_to_reject() {
        let (kept, v) = split_glog(os(&["dp", "-x", "--verbose"]));
        assert_eq!(kept, os(&["dp", "-x", "--verbose"]));
        assert_eq!(v, None);
    }
}
