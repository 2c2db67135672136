//! The node's links, kept current from rtnetlink's link multicast group
//! (RTNLGRP_LINK): a lower device going down or away is seen as soon as the kernel
//! announces it, without polling.
//!
//! Subscribe first, then dump: an event that races the dump is applied after it, and
//! events carry full link state, so the last one applied is the newest.

use std::collections::BTreeMap;
use std::time::Duration;

use cni_kit::netns::LinkFacts;
use futures::{StreamExt, TryStreamExt};
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::link::{LinkFlags, LinkMessage};
use rtnetlink::sys::AsyncSocket;
use tokio::sync::watch;

/// The kernel drops multicast messages when the socket buffer is full; a large one
/// survives bursts of link churn (bonds flapping, many macvtaps created at once).
const RECEIVE_BUFFER: usize = 4 << 20;
const RESUBSCRIBE_DELAY: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum LinksError {
    #[error("failed to open rtnetlink socket for link monitoring: {0}")]
    Open(std::io::Error),
    #[error("failed to join rtnetlink group RTNLGRP_LINK: {0}")]
    Subscribe(std::io::Error),
    #[error("failed to list links: {0}")]
    Dump(rtnetlink::Error),
}

/// What the plugin needs to know about one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// The netlink kind (`veth`, `bond`, ...); `None` for physical devices.
    pub kind: Option<String>,
    pub up: bool,
    pub loopback: bool,
}

impl Link {
    fn from_message(msg: &LinkMessage) -> Link {
        let facts = LinkFacts::from_message(msg);
        Link {
            index: facts.index,
            name: facts.name,
            kind: facts.kind,
            up: facts.up,
            loopback: msg.header.flags.contains(LinkFlags::Loopback),
        }
    }

    /// Upstream's auto-discovery: physical devices (no netlink kind, Go netlink's
    /// "device") and bonds; veth, bridge, vlan, macvlan, macvtap, dummy, tun... only
    /// when listed in `extra_kinds` (e.g. `veth` for a kind node's eth0).
    pub fn discoverable(&self, extra_kinds: &[String]) -> bool {
        !self.loopback
            && match self.kind.as_deref() {
                None | Some("bond") => true,
                // Never our own macvtaps: that would grow resources without end.
                Some("macvtap") => false,
                Some(kind) => extra_kinds.iter().any(|k| k == kind),
            }
    }
}

/// Every link of the namespace, by index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links {
    by_index: BTreeMap<u32, Link>,
}

impl Links {
    pub fn by_name(&self, name: &str) -> Option<&Link> {
        self.by_index.values().find(|l| l.name == name)
    }

    /// True while `name` exists and is administratively up.
    pub fn is_up(&self, name: &str) -> bool {
        self.by_name(name).is_some_and(|l| l.up)
    }

    /// Names of the links auto-discovery turns into resources.
    pub fn discoverable(&self, extra_kinds: &[String]) -> Vec<String> {
        let mut names: Vec<String> = self
            .by_index
            .values()
            .filter(|l| l.discoverable(extra_kinds))
            .map(|l| l.name.clone())
            .collect();
        names.sort();
        names
    }

    fn apply(&mut self, message: &RouteNetlinkMessage) {
        match message {
            RouteNetlinkMessage::NewLink(msg) | RouteNetlinkMessage::SetLink(msg) => {
                let link = Link::from_message(msg);
                self.by_index.insert(link.index, link);
            }
            RouteNetlinkMessage::DelLink(msg) => {
                self.by_index.remove(&msg.header.index);
            }
            _ => {}
        }
    }
}

/// A live view of the links of the caller's network namespace.
pub type LinkWatch = watch::Receiver<Links>;

/// Starts watching the links of the current namespace. The first snapshot is in
/// the returned receiver; the watcher runs until every receiver is dropped.
pub async fn watch_links() -> Result<LinkWatch, LinksError> {
    let (links, events) = subscribe().await?;
    let (tx, rx) = watch::channel(links);
    tokio::spawn(tracing::Instrument::in_current_span(follow(tx, events)));
    Ok(rx)
}

type Events = futures::channel::mpsc::UnboundedReceiver<(
    rtnetlink::packet_core::NetlinkMessage<RouteNetlinkMessage>,
    rtnetlink::sys::SocketAddr,
)>;

async fn subscribe() -> Result<(Links, Events), LinksError> {
    let (mut conn, handle, events) = rtnetlink::new_connection().map_err(LinksError::Open)?;
    let socket = conn.socket_mut().socket_mut();
    // A smaller buffer still works, just with less headroom: not worth failing for.
    let _ = socket.set_rx_buf_sz(RECEIVE_BUFFER);
    socket
        .add_membership(nix::libc::RTNLGRP_LINK)
        .map_err(LinksError::Subscribe)?;
    tokio::spawn(conn);
    let mut links = Links::default();
    let mut dump = handle.link().get().execute();
    while let Some(msg) = dump.try_next().await.map_err(LinksError::Dump)? {
        let link = Link::from_message(&msg);
        links.by_index.insert(link.index, link);
    }
    Ok((links, events))
}

/// Applies events until nobody watches. If the subscription breaks (the connection
/// ends, e.g. after a receive overrun) it subscribes again and re-dumps, so a missed
/// event cannot leave a stale state behind.
async fn follow(tx: watch::Sender<Links>, mut events: Events) {
    loop {
        tokio::select! {
            _ = tx.closed() => return,
            event = events.next() => match event {
                Some((message, _)) => {
                    if let NetlinkPayload::InnerMessage(inner) = message.payload {
                        tx.send_if_modified(|links| {
                            let before = links.clone();
                            links.apply(&inner);
                            *links != before
                        });
                    }
                }
                None => {
                    tracing::warn!("link monitoring connection ended; subscribing again");
                    events = loop {
                        tokio::time::sleep(RESUBSCRIBE_DELAY).await;
                        match subscribe().await {
                            Ok((links, events)) => {
                                tx.send_replace(links);
                                break events;
                            }
                            Err(e) => tracing::warn!("{e}; retrying"),
                        }
                        if tx.is_closed() {
                            return;
                        }
                    };
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, kind: Option<&str>) -> Link {
        Link {
            index,
            name: name.into(),
            kind: kind.map(str::to_string),
            up: true,
            loopback: name == "lo",
        }
    }

    #[test]
    fn discovery_keeps_physical_and_bond_links_only() {
        let mut links = Links::default();
        for (i, (name, kind)) in [
            ("lo", None),
            ("eth0", None),
            ("bond0", Some("bond")),
            ("veth1", Some("veth")),
            ("br0", Some("bridge")),
            ("eth0.100", Some("vlan")),
            ("mv0", Some("macvlan")),
            ("mvt0", Some("macvtap")),
            ("dummy0", Some("dummy")),
        ]
        .into_iter()
        .enumerate()
        {
            links
                .by_index
                .insert(i as u32 + 1, link(i as u32 + 1, name, kind));
        }
        assert_eq!(links.discoverable(&[]), vec!["bond0", "eth0"]);
        let extra = ["veth".to_string(), "macvtap".to_string()];
        assert_eq!(links.discoverable(&extra), vec!["bond0", "eth0", "veth1"]);
    }

    #[test]
    fn health_follows_presence_and_up() {
        let mut links = Links::default();
        assert!(!links.is_up("eth0"));
        links.by_index.insert(2, link(2, "eth0", None));
        assert!(links.is_up("eth0"));
        links.by_index.get_mut(&2).unwrap().up = false;
        assert!(!links.is_up("eth0"));
    }
}
