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

/// The listener: waits up to `wait_s` seconds for one message on `port`. Its stdin
/// stays open (a sleep's pipe): at EOF on stdin nc half-closes the connection it
/// accepts, and a sender that sees that FIN before it has read its own stdin
/// leaves without sending (busybox's nc on bare, under load: "exit 0", no
/// message). With stdin open nc would stay until the sleep ends, so both are ended
/// as soon as the message is in nc's output.
pub fn listener_argv(transport: Transport, port: u16, wait_s: u32) -> Vec<String> {
    // The sleep's pid goes to `$o.p` so that it can be ended with nc: `wait` waits
    // for the whole pipeline.
    let script = format!(
        "o=$(mktemp) || exit 1; \
         sh -c 'echo $$ >\"$1\"; exec sleep \"$2\"' _ \"$o.p\" {wait_s} 2>/dev/null \
         | timeout {wait_s} nc {}-l -p {port} >\"$o\" 2>&1 & n=$!; \
         while kill -0 $n 2>/dev/null && ! grep -q {TOKEN} \"$o\"; do sleep 0.1; done; \
         cat \"$o\"; kill $(cat \"$o.p\") $n 2>/dev/null; wait $n; echo {STATUS}$?; \
         rm -f \"$o\" \"$o.p\"",
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

/// Prints the kernel's socket tables of the pod's network namespace for
/// `transport` (no `ss` or `netstat` needed), to see the listener bound before
/// anything is sent.
pub fn sockets_argv(transport: Transport) -> Vec<String> {
    let t = transport.as_str();
    let script = format!("cat /proc/net/{t} /proc/net/{t}6 2>/dev/null; true");
    ["sh", "-c", &script].map(str::to_string).to_vec()
}

/// Whether the socket tables (`/proc/net/tcp`-style) show a socket on `port` ready
/// for the message: listening for TCP (state `0A`), bound for UDP (`07`).
pub fn bound(transport: Transport, port: u16, tables: &str) -> bool {
    let ready = match transport {
        Transport::Tcp => "0A",
        Transport::Udp => "07",
    };
    tables.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let local_port = fields
            .get(1)
            .and_then(|local| local.rsplit_once(':'))
            .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok());
        local_port == Some(port) && fields.get(3) == Some(&ready)
    })
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
        assert!(
            listener_argv(Transport::Udp, 7001, 2)[2].contains("| timeout 2 nc -u -l -p 7001 >"),
            "{:?}",
            listener_argv(Transport::Udp, 7001, 2)
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
        let v6 = &listener_argv_for(Transport::Udp, "fd00::2", 7001, 2)[2];
        assert!(
            v6.starts_with("f=; nc -h 2>&1 | grep -q -- '-46' && f='-6 '; o=$(mktemp)"),
            "{v6}"
        );
        assert!(v6.contains("timeout 2 nc $f-u -l -p 7001 >"), "{v6}");
    }

    #[test]
    fn a_listener_is_bound_when_the_kernel_lists_it_ready() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000:1CED 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n   1: 0A000002:1CEE 0A000003:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1\n";
        assert!(bound(Transport::Tcp, 7405, tcp));
        assert!(
            !bound(Transport::Tcp, 7406, tcp),
            "established, not listening"
        );
        assert!(!bound(Transport::Tcp, 7001, tcp));
        let udp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n  9: 00000000000000000000000000000000:1B59 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3 2 0 0\n";
        assert!(bound(Transport::Udp, 7001, udp6));
        assert!(!bound(Transport::Tcp, 7001, udp6), "07 is not listening");
        assert!(!bound(Transport::Udp, 7001, ""));
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
