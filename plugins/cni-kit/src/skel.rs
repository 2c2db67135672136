//! The skeleton both bundled CNIs share, as containernetworking's `skel.PluginMain`
//! is for the reference plugins: one `main` driver (help, VERSION, the environment,
//! a one-thread runtime, the reply and the exit code), the typed arguments of the
//! commands that have a sandbox, and the one CHECK comparison of the pod's
//! interface against prevResult and the configuration.

use crate::error::{CniError, ErrorCode};
use crate::invocation::{Invocation, run_plugin};
use crate::mac::MacAddr;
use crate::netns::LinkFacts;
use crate::result::Interface;
use crate::version::SpecVersion;

/// Runs the plugin: `handle` gets every command but VERSION (answered here) on a
/// current-thread runtime (an invocation is a handful of netlink round trips and
/// socket calls; threads would only cost start-up time). Never returns.
pub fn main(about: &str, handle: impl AsyncFnOnce(&Invocation) -> Handled) -> ! {
    run_plugin(about, &SpecVersion::RESULT_CAPABLE, |inv| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| {
                CniError::new(ErrorCode::Io, format!("failed to start the runtime: {e}"))
            })?;
        runtime.block_on(handle(inv))
    })
}

/// What a command answers: the text to print (ADD's result), nothing, or the error.
pub type Handled = Result<Option<String>, CniError>;

/// The arguments of ADD and CHECK, which always have a sandbox: `CNI_NETNS` is
/// required for them (`Invocation::from_parts` refuses an invocation without it),
/// so it is a plain path here.
#[derive(Debug, Clone, Copy)]
pub struct AddArgs<'a> {
    /// The whole invocation (config, CNI_ARGS, CNI_PATH, the negotiated version).
    pub inv: &'a Invocation,
    pub container_id: &'a str,
    /// `CNI_NETNS`: the sandbox's network namespace file.
    pub netns: &'a str,
    pub ifname: &'a str,
}

impl<'a> AddArgs<'a> {
    /// The typed arguments of an ADD or CHECK invocation.
    ///
    /// # Panics
    /// On an invocation without `CNI_NETNS`: `Invocation::from_parts` never makes
    /// one for ADD or CHECK, so this is a bug in the caller.
    pub fn of(inv: &'a Invocation) -> AddArgs<'a> {
        AddArgs {
            inv,
            container_id: &inv.container_id,
            netns: inv
                .netns
                .as_deref()
                .expect("ADD and CHECK have CNI_NETNS (Invocation::from_parts requires it)"),
            ifname: &inv.ifname,
        }
    }
}

impl std::ops::Deref for AddArgs<'_> {
    type Target = Invocation;
    fn deref(&self) -> &Invocation {
        self.inv
    }
}

/// What CHECK expects of the pod's interface.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The link kind the plugin makes (`macvtap`, `veth`).
    pub kind: &'a str,
    /// The interface as prevResult lists it.
    pub prev: &'a Interface,
    /// The MAC the configuration asked for, if any.
    pub requested_mac: Option<MacAddr>,
    /// The MTU the configuration asked for, if any (else prevResult's).
    pub mtu: Option<u32>,
    /// Whether promiscuous mode was asked for.
    pub promisc: bool,
}

/// How CHECK's findings name the interface: as "it" (the message names it once,
/// before the list) or by its name in every finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    It,
    ByName,
}

/// The one CHECK comparison: what is wrong with the pod's interface `link` (named
/// `ifname`) against what ADD promised, in a fixed order (kind, MAC against
/// prevResult, MAC against the request, MTU, promiscuous mode, up). Empty when it
/// matches.
pub fn pod_link_problems(
    link: &LinkFacts,
    ifname: &str,
    want: &Expected<'_>,
    naming: Naming,
) -> Vec<String> {
    let (subject, mtu_of) = match naming {
        Naming::It => ("it".to_string(), String::new()),
        Naming::ByName => (ifname.to_string(), format!(" of {ifname}")),
    };
    let mut problems = Vec::new();
    if link.kind.as_deref() != Some(want.kind) {
        problems.push(format!(
            "{subject} is a {} rather than a {}",
            link.kind.as_deref().unwrap_or("link of unknown kind"),
            want.kind
        ));
    }
    let actual_mac = link.mac.map(|m| MacAddr(m).to_string()).unwrap_or_default();
    if let Some(prev) = &want.prev.mac
        && !prev.eq_ignore_ascii_case(&actual_mac)
    {
        problems.push(format!("MAC is {actual_mac}, prevResult says {prev}"));
    }
    if let Some(requested) = want.requested_mac
        && requested.to_string() != actual_mac
    {
        problems.push(format!(
            "MAC is {actual_mac}, the requested MAC is {requested}"
        ));
    }
    if let Some(mtu) = want.mtu.or(want.prev.mtu)
        && link.mtu != mtu
    {
        problems.push(format!("MTU{mtu_of} is {}, expected {mtu}", link.mtu));
    }
    if want.promisc && !link.promisc {
        problems.push("promiscuous mode is off although promiscMode is true".into());
    }
    if !link.up {
        problems.push(format!("{subject} is down"));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> LinkFacts {
        LinkFacts {
            index: 3,
            name: "net1".into(),
            kind: Some("veth".into()),
            mac: Some([2, 0, 0, 0, 0, 1]),
            mtu: 1500,
            up: false,
            promisc: false,
            txqueuelen: 1000,
            parent: None,
            alias: None,
        }
    }

    fn prev() -> Interface {
        Interface {
            name: "net1".into(),
            mac: Some("02:00:00:00:00:02".into()),
            mtu: Some(1400),
            sandbox: Some("/run/netns/x".into()),
        }
    }

    #[test]
    fn findings_come_in_one_order_and_name_the_interface_as_asked() {
        let prev = prev();
        let want = Expected {
            kind: "macvtap",
            prev: &prev,
            requested_mac: Some(MacAddr([2, 0, 0, 0, 0, 3])),
            mtu: None,
            promisc: true,
        };
        assert_eq!(
            pod_link_problems(&link(), "net1", &want, Naming::It),
            [
                "it is a veth rather than a macvtap",
                "MAC is 02:00:00:00:00:01, prevResult says 02:00:00:00:00:02",
                "MAC is 02:00:00:00:00:01, the requested MAC is 02:00:00:00:00:03",
                "MTU is 1500, expected 1400",
                "promiscuous mode is off although promiscMode is true",
                "it is down",
            ]
        );
        let want = Expected {
            kind: "veth",
            requested_mac: None,
            mtu: Some(1500),
            promisc: false,
            ..want
        };
        assert_eq!(
            pod_link_problems(&link(), "net1", &want, Naming::ByName),
            [
                "MAC is 02:00:00:00:00:01, prevResult says 02:00:00:00:00:02",
                "net1 is down",
            ]
        );
    }

    #[test]
    fn a_matching_link_has_no_findings() {
        let mut l = link();
        l.up = true;
        l.mac = Some([2, 0, 0, 0, 0, 2]);
        l.mtu = 1400;
        let prev = prev();
        let want = Expected {
            kind: "veth",
            prev: &prev,
            requested_mac: None,
            mtu: None,
            promisc: false,
        };
        assert!(pod_link_problems(&l, "net1", &want, Naming::ByName).is_empty());
    }
}
