//! Userspace Open vSwitch on a netns node: ovsdb-server and ovs-vswitchd started
//! inside the node's namespaces with private run/db/log directories, a `netdev`
//! bridge, and the node's OVS uplink as a trunk port so VLANs span the nodes.
//!
//! No kernel module is needed: bridges use `datapath_type=netdev` and the daemons
//! reach their ports with AF_PACKET sockets, which is why ovs-vswitchd must run in
//! the node's network namespace (it also creates the bridge's tap device there).
//! `userspace-tso-enable` is set before ovs-vswitchd starts: without it TCP over the
//! veths fails with bad checksums (ping still works).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::lab::enter::Enter;
use crate::lab::{CommandError, command, run};

/// How to get the OVS programs, for error messages.
const INSTALL: &str = "apt-get install openvswitch-switch";

#[derive(Debug, thiserror::Error)]
pub enum OvsError {
    #[error("failed to create {dir}: {source}")]
    CreateDir {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} ({INSTALL})")]
    CreateDb(#[source] CommandError),
    #[error("failed to enter the node's namespaces for {program}: {source}")]
    Enter {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to start {program}: {source} ({INSTALL})")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// `log` is the tail of the daemon's log.
    #[error("ovsdb-server exited ({status}): {log}")]
    DbExited { status: String, log: String },
    #[error("ovsdb-server did not accept connections on {socket} within {timeout:?}: {log}")]
    DbNotListening {
        socket: String,
        timeout: Duration,
        log: String,
    },
    #[error("{source}\n--- ovs-vswitchd log ---\n{log}")]
    Vsctl {
        #[source]
        source: CommandError,
        log: String,
    },
    #[error("node {node}: {source}")]
    Node {
        node: String,
        #[source]
        source: Box<OvsError>,
    },
    #[error("failed to plug the OVS uplink of node {node}: {source}")]
    Plug {
        node: String,
        #[source]
        source: CommandError,
    },
    /// Entering a node's namespaces (the node is named in the source).
    #[error(transparent)]
    NodeNamespaces(Box<super::NetnsError>),
    #[error("OVS start-up panicked")]
    Panicked,
}

const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";
const T: Duration = Duration::from_secs(10);

/// The two daemons of one node, killed on drop.
#[derive(Debug)]
pub struct Ovs {
    /// OVS_RUNDIR = OVS_DBDIR = OVS_LOGDIR.
    pub dir: PathBuf,
    /// ovsdb-server's socket (`<dir>/db.sock`).
    pub socket: PathBuf,
    ovsdb: Option<Child>,
    vswitchd: Option<Child>,
    /// How long the daemons took to start (init included, bridges not).
    pub started_in: Duration,
}

impl Ovs {
    /// Starts ovsdb-server and ovs-vswitchd with everything under `dir`; both enter
    /// `enter`'s namespaces. On failure nothing is left running.
    pub fn start(enter: &Enter, dir: &Path) -> Result<Ovs, OvsError> {
        let t0 = Instant::now();
        std::fs::create_dir_all(dir).map_err(|source| OvsError::CreateDir {
            dir: dir.display().to_string(),
            source,
        })?;
        let db = dir.join("conf.db");
        let socket = dir.join("db.sock");
        let _ = std::fs::remove_file(&db);
        run(
            "ovsdb-tool",
            &["create", &db.display().to_string(), SCHEMA],
            T,
        )
        .map_err(OvsError::CreateDb)?;
        let mut ovs = Ovs {
            dir: dir.to_path_buf(),
            socket: socket.clone(),
            ovsdb: None,
            vswitchd: None,
            started_in: Duration::ZERO,
        };
        let ovsdb = ovs.spawn(
            enter,
            "ovsdb-server",
            &[
                &db.display().to_string(),
                &format!("--remote=punix:{}", socket.display()),
                &format!("--unixctl={}", dir.join("ovsdb-server.ctl").display()),
                &format!("--log-file={}", dir.join("ovsdb-server.log").display()),
                "--no-chdir",
            ],
        )?;
        ovs.ovsdb = Some(ovsdb);
        let deadline = Instant::now() + T;
        // The socket file appears at bind(), before listen(): wait for a connection.
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            if let Some(Ok(Some(status))) = ovs.ovsdb.as_mut().map(|c| c.try_wait()) {
                return Err(OvsError::DbExited {
                    status: status.to_string(),
                    log: ovs.log("ovsdb-server"),
                });
            }
            if Instant::now() > deadline {
                return Err(OvsError::DbNotListening {
                    socket: socket.display().to_string(),
                    timeout: T,
                    log: ovs.log("ovsdb-server"),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        ovs.vsctl(&[
            "--no-wait",
            "init",
            "--",
            "set",
            "Open_vSwitch",
            ".",
            "other_config:userspace-tso-enable=true",
        ])?;
        let vswitchd = ovs.spawn(
            enter,
            "ovs-vswitchd",
            &[
                &format!("unix:{}", socket.display()),
                &format!("--unixctl={}", dir.join("ovs-vswitchd.ctl").display()),
                &format!("--log-file={}", dir.join("ovs-vswitchd.log").display()),
                "--no-chdir",
            ],
        )?;
        ovs.vswitchd = Some(vswitchd);
        ovs.started_in = t0.elapsed();
        Ok(ovs)
    }

    fn spawn(&self, enter: &Enter, program: &str, args: &[&str]) -> Result<Child, OvsError> {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env("OVS_RUNDIR", &self.dir)
            .env("OVS_DBDIR", &self.dir)
            .env("OVS_LOGDIR", &self.dir)
            .env("OVS_SYSCONFDIR", &self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        enter
            .apply_std(&mut cmd)
            .map_err(|source| OvsError::Enter {
                program: program.into(),
                source,
            })?;
        command::own_group(&mut cmd)
            .spawn()
            .map_err(|source| OvsError::Spawn {
                program: program.into(),
                source,
            })
    }

    /// The daemons' pids (to move them into a cgroup).
    pub fn pids(&self) -> Vec<u32> {
        [&self.ovsdb, &self.vswitchd]
            .into_iter()
            .flatten()
            .map(Child::id)
            .collect()
    }

    /// The tail of a daemon's log (for error messages).
    pub fn log(&self, daemon: &str) -> String {
        let text =
            std::fs::read_to_string(self.dir.join(format!("{daemon}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// `ovs-vsctl --db=unix:<socket> <args>`.
    pub fn vsctl(&self, args: &[&str]) -> Result<String, OvsError> {
        let db = format!("--db=unix:{}", self.socket.display());
        let mut full = vec![db.as_str(), "--timeout=10"];
        full.extend_from_slice(args);
        run("ovs-vsctl", &full, T + Duration::from_secs(2)).map_err(|source| OvsError::Vsctl {
            source,
            log: self.log("ovs-vswitchd"),
        })
    }

    /// A `netdev` bridge; waits until ovs-vswitchd has configured it.
    pub fn add_bridge(&self, name: &str) -> Result<(), OvsError> {
        self.vsctl(&[
            "add-br",
            name,
            "--",
            "set",
            "Bridge",
            name,
            "datapath_type=netdev",
        ])
        .map(|_| ())
    }

    /// `port` (an existing link in the node) as a trunk port of `bridge`: all VLANs
    /// tagged, as a switch port facing another switch.
    pub fn add_trunk_port(&self, bridge: &str, port: &str) -> Result<(), OvsError> {
        self.vsctl(&[
            "add-port",
            bridge,
            port,
            "--",
            "set",
            "Port",
            port,
            "vlan_mode=trunk",
        ])
        .map(|_| ())
    }

    /// Names of the ports on `bridge`.
    pub fn ports(&self, bridge: &str) -> Result<Vec<String>, OvsError> {
        Ok(self
            .vsctl(&["list-ports", bridge])?
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect())
    }

    /// Sends SIGTERM to both daemons' process groups without waiting (see
    /// [`Ovs::reap`]).
    pub fn signal(&mut self) {
        for child in [&mut self.vswitchd, &mut self.ovsdb].into_iter().flatten() {
            command::signal_group(child, nix::sys::signal::Signal::SIGTERM);
        }
    }

    /// Waits up to `grace` for both daemons to exit, then kills their groups.
    pub fn reap(&mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        for slot in [&mut self.vswitchd, &mut self.ovsdb] {
            if let Some(mut child) = slot.take() {
                command::reap_group(
                    &mut child,
                    deadline.saturating_duration_since(Instant::now()),
                );
            }
        }
    }

    /// Stops both daemons (SIGTERM, then SIGKILL after a short grace).
    pub fn stop(&mut self) {
        self.signal();
        self.reap(Duration::from_secs(2));
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The bridge every node gets (the seed's `ovs-vlan-100` NAD names it).
pub const BRIDGE: &str = "br1";

/// The node's second uplink, dedicated to OVS.
///
/// Not the node's main uplink: the macvtap and macvlan backends use it as their
/// lower device and the node's address lives there. ovs-vswitchd reads a netdev port
/// with an AF_PACKET socket, so on that uplink it would see every frame of the node's own stack
/// and of the macvtaps, flood the broadcasts among them into br1 and send frames
/// out under their feet. A separate veth into the same fabric keeps the backends
/// apart while VLAN-tagged frames still cross the fabric's (VLAN-unaware) bridge.
pub const UPLINK: &str = "ens34";

/// Starts OVS on every node (in parallel): daemons, bridge `br1` (netdev), and the
/// node's `ens34` plugged into the fabric and attached to br1 as a trunk port. The
/// daemons' directory is the backing directory of the node's `/var/run/openvswitch`,
/// so the CNI finds `db.sock` at the default path inside the node's view.
pub fn up(
    lab: &crate::lab::Lab,
    fabric: &crate::lab::Ns,
    nodes: &[super::node::NetnsNode],
) -> Result<Vec<Ovs>, OvsError> {
    for node in nodes {
        super::fabric::plug(
            lab,
            fabric,
            &node.ns,
            UPLINK,
            &format!("oport{}", node.index),
        )
        .map_err(|source| OvsError::Plug {
            node: node.name.clone(),
            source,
        })?;
    }
    let started: Vec<Result<Ovs, OvsError>> = std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .map(|node| {
                s.spawn(move || {
                    let enter = node
                        .enter()
                        .map_err(|e| OvsError::NodeNamespaces(Box::new(e)))?;
                    let in_node = |source: OvsError| OvsError::Node {
                        node: node.name.clone(),
                        source: Box::new(source),
                    };
                    let ovs = Ovs::start(&enter, &node.view.host_path("/var/run/openvswitch"))
                        .map_err(in_node)?;
                    ovs.add_bridge(BRIDGE)
                        .and_then(|()| ovs.add_trunk_port(BRIDGE, UPLINK))
                        .map_err(in_node)?;
                    Ok(ovs)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(OvsError::Panicked)))
            .collect()
    });
    // On any failure the started ones are dropped (killed) here.
    started.into_iter().collect()
}
