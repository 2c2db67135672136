//! One TCP or UDP message and what its listener's output means. As with `ping`, a
//! probe must tell "nothing arrived" (an answer: not reachable) from "the listener
//! did not run" (no `nc`, a port in use, an option this `nc` lacks): the latter would
//! otherwise pass every isolation check.
//!
//! The commands are the ones busybox's `nc` (the pod image on real clusters) and
//! OpenBSD's `nc` (the netns nodes' host tool) both understand, wrapped in `sh` so
//! that the exit status comes back as text (`Cluster::exec` reports success only).

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Transport::Tcp => "",
            Transport::Udp => "-u ",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NcError {
    #[error(
        "the {transport} listener on port {port} did not run (exit {status}): {output}; the pod needs an `nc` that takes -u -l -p (busybox's full applet; netns nodes: this machine's, apt-get install netcat-openbsd)"
    )]
    ListenerDidNotRun {
        transport: &'static str,
        port: u16,
        status: String,
        output: String,
    },
    #[error("the {transport} sender to {target}:{port} did not run (exit {status}): {output}")]
    SenderDidNotRun {
        transport: &'static str,
        target: String,
        port: u16,
        status: String,
        output: String,
    },
}

/// What each probe sends: the listener's output must contain it.
pub const TOKEN: &str = "secnet-reach-probe";
const STATUS: &str = "secnet-exit=";

/// The listener: waits up to `wait_s` seconds for one message on `port`.
pub fn listener_argv(transport: Transport, port: u16, wait_s: u32) -> Vec<String> {
    let script = format!(
        "timeout {wait_s} nc {}-l -p {port}; echo {STATUS}$?",
        transport.flag()
    );
    ["sh", "-c", &script].map(str::to_string).to_vec()
}

/// The listener for a message to `target`. OpenBSD's nc (the one that knows -4/-6)
/// binds one family, IPv4 unless told: for an IPv6 target it is asked for IPv6;
/// busybox's nc binds both families and has no -6.
pub fn listener_argv_for(
    transport: Transport,
    target: &str,
    port: u16,
    wait_s: u32,
) -> Vec<String> {
    let mut argv = listener_argv(transport, port, wait_s);
    if target.parse::<std::net::Ipv6Addr>().is_ok() {
        argv[2] = format!(
            "f=; nc -h 2>&1 | grep -q -- '-46' && f='-6 '; {}",
            argv[2].replacen("nc ", "nc $f", 1)
        );
    }
    argv
}

/// The sender: one message to `target:port`, giving up after `wait_s` seconds.
pub fn sender_argv(transport: Transport, target: &str, port: u16, wait_s: u32) -> Vec<String> {
    let script = format!(
        "echo {TOKEN} | timeout {wait_s} nc {}-w 1 {target} {port}; echo {STATUS}$?",
        transport.flag()
    );
    ["sh", "-c", &script].map(str::to_string).to_vec()
}

/// The exit status the wrapper printed, if any.
fn status(output: &str) -> Option<&str> {
    output
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix(STATUS))
}

/// Whether the message arrived, from everything the listener printed (stdout and
/// stderr). Timed out without a message (`timeout`'s 124, or 143/137 when busybox
/// kills it) is `Ok(false)`; any other ending without the message is an error.
pub fn arrived(transport: Transport, port: u16, output: &str) -> Result<bool, NcError> {
    if output.contains(TOKEN) {
        return Ok(true);
    }
    match status(output) {
        Some("124" | "143" | "137") => Ok(false),
        other => Err(NcError::ListenerDidNotRun {
            transport: transport.as_str(),
            port,
            status: other.unwrap_or("unknown").to_string(),
            output: output.trim().to_string(),
        }),
    }
}

/// Checks that the sender ran: `nc` itself, whatever the network did. "Command not
/// found" (127), "cannot execute" (126) or no status at all mean it did not.
pub fn sent(transport: Transport, target: &str, port: u16, output: &str) -> Result<(), NcError> {
    let lower = output.to_ascii_lowercase();
    let missing = [
        "not found",
        "no such file",
        "usage",
        "invalid option",
        "unknown option",
    ]
    .iter()
    .any(|m| lower.contains(m));
    match status(output) {
        Some(s) if !missing && s != "127" && s != "126" => Ok(()),
        other => Err(NcError::SenderDidNotRun {
            transport: transport.as_str(),
            target: target.to_string(),
            port,
            status: other.unwrap_or("unknown").to_string(),
            output: output.trim().to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commands_are_common_to_busybox_and_openbsd_nc() {
        assert_eq!(
            listener_argv(Transport::Udp, 7001, 2)[2],
            "timeout 2 nc -u -l -p 7001; echo secnet-exit=$?"
        );
        assert_eq!(
            sender_argv(Transport::Tcp, "10.0.0.2", 7001, 2)[2],
            "echo secnet-reach-probe | timeout 2 nc -w 1 10.0.0.2 7001; echo secnet-exit=$?"
        );
    }

    #[test]
    fn an_ipv6_target_asks_a_one_family_nc_for_ipv6() {
        assert_eq!(
            listener_argv_for(Transport::Udp, "10.0.0.2", 7001, 2),
            listener_argv(Transport::Udp, 7001, 2)
        );
        assert_eq!(
            listener_argv_for(Transport::Udp, "fd00::2", 7001, 2)[2],
            "f=; nc -h 2>&1 | grep -q -- '-46' && f='-6 '; timeout 2 nc $f-u -l -p 7001; echo secnet-exit=$?"
        );
    }

    #[test]
    fn a_message_or_a_timeout_is_an_answer() {
        let got = format!("{TOKEN}\nsecnet-exit=0\n");
        assert!(arrived(Transport::Tcp, 1, &got).unwrap());
        for quiet in ["secnet-exit=124\n", "secnet-exit=143\n"] {
            assert!(!arrived(Transport::Udp, 1, quiet).unwrap(), "{quiet}");
        }
    }

    #[test]
    fn a_listener_that_did_not_run_is_an_error() {
        for out in [
            "timeout: failed to run command 'nc': No such file or directory\nsecnet-exit=127\n",
            "nc: invalid option -- 'u'\nBusyBox v1.35.0 multi-call binary.\nsecnet-exit=1\n",
            "nc: Address already in use\nsecnet-exit=1\n",
            "",
        ] {
            let e = arrived(Transport::Udp, 7, out).unwrap_err();
            assert!(e.to_string().contains("did not run"), "{e}");
        }
    }

    #[test]
    fn a_sender_that_did_not_run_is_an_error() {
        assert!(
            sent(Transport::Tcp, "x", 1, "secnet-exit=1\n").is_ok(),
            "refused"
        );
        for out in ["sh: nc: not found\nsecnet-exit=127\n", ""] {
            assert!(sent(Transport::Tcp, "x", 1, out).is_err(), "{out}");
        }
    }

    /// The verdicts on what the host's `nc` really does in a namespace of its own.
    #[test]
    fn real_nc_outputs_get_the_right_verdict() {
        if !crate::prereq::require_root("real nc verdicts")
            || !crate::prereq::require_program("real nc verdicts", "nc", "netcat-openbsd")
        {
            return;
        }
        let mut lab = crate::lab::Lab::new();
        let ns = lab.netns("nc").unwrap();
        lab.ip(&ns, &["link", "set", "lo", "up"]).unwrap();
        let run = |argv: Vec<String>| {
            let out = crate::lab::Cmd::new("ip")
                .args(["netns", "exec", &ns.name])
                .args(argv)
                .timeout(std::time::Duration::from_secs(20))
                .output()
                .unwrap();
            format!("{}{}", out.stdout_text(), out.stderr_text())
        };
        let cases = [
            (Transport::Tcp, "127.0.0.1", 7101),
            (Transport::Udp, "127.0.0.1", 7102),
            (Transport::Tcp, "::1", 7103),
            (Transport::Udp, "::1", 7104),
        ];
        for (transport, target, port) in cases {
            let listener = std::thread::scope(|s| {
                let l = s.spawn(|| run(listener_argv_for(transport, target, port, 3)));
                std::thread::sleep(std::time::Duration::from_millis(500));
                let out = run(sender_argv(transport, target, port, 2));
                sent(transport, target, port, &out).unwrap();
                l.join().unwrap()
            });
            assert!(
                arrived(transport, port, &listener).unwrap(),
                "{target}: {listener}"
            );
            let quiet = run(listener_argv_for(transport, target, port, 1));
            assert!(!arrived(transport, port, &quiet).unwrap(), "{quiet}");
        }
    }
}
