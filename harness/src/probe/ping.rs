//! One ping and what its output means. A reachability probe must tell "no reply"
//! (an answer: not reachable) from "ping did not run" (missing program, bad
//! argument, unknown name): the latter would otherwise pass every isolation check.

#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error("ping {target} did not run: {output}")]
    DidNotRun { target: String, output: String },
}

/// `ping` with one echo request, waiting `wait_s` seconds for the reply, summary only.
pub fn argv(target: &str, wait_s: u32) -> Vec<String> {
    ["ping", "-c", "1", "-W", &wait_s.to_string(), "-q", target]
        .map(str::to_string)
        .to_vec()
}

/// The same as one shell command (for the VM guest's agent).
pub fn command(target: &str, wait_s: u32) -> String {
    argv(target, wait_s).join(" ")
}

/// Whether the ping got a reply, from its exit status and what it printed (stdout and
/// stderr). A ping that sent and got nothing (iputils and busybox print the packet
/// summary) or found no route is `Ok(false)`; one that could not send at all is an error.
pub fn replied(success: bool, target: &str, output: &str) -> Result<bool, PingError> {
    if success {
        return Ok(true);
    }
    let lower = output.to_ascii_lowercase();
    let answered = ["packets transmitted", "unreachable", "no route to host"]
        .iter()
        .any(|m| lower.contains(m));
    if answered {
        Ok(false)
    } else {
        Err(PingError::DidNotRun {
            target: target.to_string(),
            output: output.trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_argv_is_one_quiet_request() {
        assert_eq!(
            argv("10.0.0.1", 1),
            ["ping", "-c", "1", "-W", "1", "-q", "10.0.0.1"]
        );
        assert_eq!(command("10.0.0.1", 2), "ping -c 1 -W 2 -q 10.0.0.1");
    }

    // Outputs captured from iputils 20221126 and busybox 1.35.
    #[test]
    fn no_reply_and_no_route_are_answers() {
        let iputils_timeout = "PING 10.9.0.7 (10.9.0.7) 56(84) bytes of data.\n\n--- 10.9.0.7 ping statistics ---\n1 packets transmitted, 0 received, 100% packet loss, time 0ms\n";
        let busybox_timeout = "PING 10.9.0.7 (10.9.0.7): 56 data bytes\n\n--- 10.9.0.7 ping statistics ---\n1 packets transmitted, 0 packets received, 100% packet loss\n";
        let iputils_no_route = "ping: connect: Network is unreachable\n";
        let busybox_no_route =
            "PING 10.99.0.7 (10.99.0.7): 56 data bytes\nping: sendto: Network is unreachable\n";
        for out in [
            iputils_timeout,
            busybox_timeout,
            iputils_no_route,
            busybox_no_route,
        ] {
            assert!(!replied(false, "x", out).unwrap(), "{out}");
        }
        assert!(replied(true, "x", "").unwrap());
    }

    /// The verdict on what the host's iputils ping really prints, in a namespace of
    /// its own: a reply, a silent on-link address, no route, an unknown name.
    #[test]
    fn real_ping_outputs_get_the_right_verdict() {
        if !crate::prereq::require_root("real ping verdicts")
            || !crate::prereq::require_program("real ping verdicts", "ping", "iputils-ping")
        {
            return;
        }
        let mut lab = crate::lab::Lab::new();
        let ns = lab.netns("ping").unwrap();
        for args in [
            // A veth whose peer stays down: nothing ever answers on its LAN.
            &["link", "add", "v0", "type", "veth", "peer", "name", "v1"][..],
            &["addr", "add", "10.9.0.1/24", "dev", "v0"],
            &["link", "set", "v0", "up"],
        ] {
            lab.ip(&ns, args).unwrap();
        }
        let verdict = |target: &str| {
            let out = crate::lab::Cmd::new("ip")
                .args(["netns", "exec", &ns.name])
                .args(argv(target, 1))
                .timeout(std::time::Duration::from_secs(20))
                .output()
                .unwrap();
            let printed = format!("{}{}", out.stdout_text(), out.stderr_text());
            replied(out.success(), target, &printed)
        };
        assert!(verdict("10.9.0.1").unwrap(), "own address replies");
        assert!(!verdict("10.9.0.7").unwrap(), "silent on-link address");
        assert!(!verdict("10.99.0.7").unwrap(), "no route");
        assert!(verdict("no-such-host.invalid").is_err());
    }

    #[test]
    fn a_ping_that_did_not_run_is_an_error() {
        for out in [
            "ping: nosuchhost: Temporary failure in name resolution\n",
            "sh: ping: not found\n",
            "",
        ] {
            let e = replied(false, "nosuchhost", out).unwrap_err();
            assert!(
                e.to_string().starts_with("ping nosuchhost did not run"),
                "{e}"
            );
        }
    }
}
