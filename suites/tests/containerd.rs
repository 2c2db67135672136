//! The containerd tier: a real container runtime (Debian's containerd 1.6 + runc)
//! per node, in the node's network namespace on the netns fabric, fed with images
//! secnet writes itself, driven through CRI from Rust as a kubelet drives it, with
//! the plugins under test in the conflists it reads. What is asserted is what the
//! runtime really did: the sandbox's interfaces (kind, MAC, address, seen in its own
//! namespace), the CNI calls it made (ADD, DEL; whether it sends CHECK), its result
//! cache, and that DEL undid ADD. Needs root; under CI=true a missing containerd,
//! runc, skopeo or umoci fails instead of skipping.
//!
//! Timings are printed as `MEASURE <what> <ms>` lines (`--no-capture` shows them).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use secnet::cluster::bare::containerd::{Containerd, Options};
use secnet::cluster::bare::cri::{SandboxRequest, SandboxStatus};
use secnet::cluster::bare::oci::{self, Archive};
use secnet::cluster::netns::fabric;
use secnet::cluster::netns::ovs::Ovs;
use secnet::cluster::netns::topology::Topology;
use secnet::lab::enter::Enter;
use secnet::lab::{Cmd, Lab, Ns, ScratchDir};
use secnet::probe::ip::AddrFacts;
use serde_json::Value;

const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

fn measure(what: &str, d: Duration) {
    eprintln!("MEASURE {what} {:.1} ms", d.as_secs_f64() * 1000.0);
}

/// Root, containerd, runc, ctr and the reference plugins; else skip (fail under CI).
fn prerequisites(what: &str) -> bool {
    secnet::prereq::require_root(what)
        && secnet::prereq::require_program(what, "containerd", "containerd")
        && secnet::prereq::require_program(what, "ctr", "containerd")
        && secnet::prereq::require_program(what, "runc", "runc")
        && secnet::prereq::require_program(what, "busybox", "busybox-static")
        && secnet::prereq::require(
            what,
            (!Path::new(REFERENCE_PLUGINS).join("macvlan").exists()).then(|| {
                format!("{REFERENCE_PLUGINS}/macvlan missing: apt-get install containernetworking-plugins")
            }),
        )
}

/// `/run/secnet/<run id>`, removed on drop.
struct RunDir(PathBuf);

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One node on the fabric with its own containerd; torn down in field order
/// (containerd first, then OVS, then the namespaces, then the directories).
struct Node {
    containerd: Option<Containerd>,
    ovs: Option<Ovs>,
    lab: Lab,
    ns: Ns,
    run_id: String,
    busybox: Archive,
    _images: ScratchDir,
    _run_dir: RunDir,
}

const UPLINK: &str = "ens33";

/// The default pod network (the sandbox's eth0): Debian's macvlan on the uplink with
/// host-local addresses from the fabric's LAN.
fn default_network(topo: &Topology) -> (String, String) {
    let base = topo.fabric.subnet.trim_end_matches(".0/24");
    let conf = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "secnet-default",
        "plugins": [{
            "type": "macvlan",
            "master": UPLINK,
            "mode": "bridge",
            "ipam": {
                "type": "host-local",
                "subnet": topo.fabric.subnet,
                "rangeStart": format!("{base}.200"),
                "rangeEnd": format!("{base}.220"),
            },
        }],
    });
    ("10-default.conflist".into(), conf.to_string())
}

impl Node {
    /// Fabric + node namespace + (optionally) the node's userspace OVS + images +
    /// containerd with the default network and `extra` networks.
    async fn up(
        tag: &str,
        extra: Vec<(String, String)>,
        extra_plugins: Vec<(String, PathBuf)>,
        with_ovs: bool,
    ) -> Node {
        let topo = Topology::builtin();
        let run_id = secnet::lab::new_run_id();
        let run_dir = RunDir(secnet::cluster::netns::node::run_dir_for(&run_id));
        std::fs::create_dir_all(&run_dir.0).unwrap();
        let mut lab = Lab::scoped(&run_id, tag);
        let fabric_ns = fabric::up(&mut lab, &topo).unwrap();
        let ns = lab.netns("node1").unwrap();
        fabric::plug(&lab, &fabric_ns, &ns, UPLINK, "port0").unwrap();
        let addr = format!("{}/24", topo.nodes[0].address);
        lab.ip(&ns, &["addr", "add", &addr, "dev", UPLINK]).unwrap();

        let ovs = with_ovs.then(|| {
            let enter = Enter::net(ns.path()).unwrap();
            let ovs = Ovs::start(&enter, &run_dir.0.join("ovs")).unwrap();
            ovs.add_bridge("br1").unwrap();
            measure("ovs start", ovs.started_in);
            ovs
        });

        let images = ScratchDir::new(&format!("secnet-{run_id}-images")).unwrap();
        let pause_ref = format!("secnet.local/pause:{run_id}");
        let t0 = Instant::now();
        let pause = oci::pause(&pause_ref)
            .unwrap()
            .write(&images.path().join("pause.tar"))
            .unwrap();
        let busybox = oci::busybox(&format!("secnet.local/busybox:{run_id}"))
            .unwrap()
            .write(&images.path().join("busybox.tar"))
            .unwrap();
        measure("oci write pause+busybox", t0.elapsed());

        let mut plugins = vec![
            (
                "loopback".to_string(),
                Path::new(REFERENCE_PLUGINS).join("loopback"),
            ),
            (
                "macvlan".to_string(),
                Path::new(REFERENCE_PLUGINS).join("macvlan"),
            ),
            (
                "host-local".to_string(),
                Path::new(REFERENCE_PLUGINS).join("host-local"),
            ),
        ];
        plugins.extend(extra_plugins);
        let mut networks = vec![default_network(&topo)];
        networks.extend(extra);
        let containerd = Containerd::start(Options {
            run_id: run_id.clone(),
            node: format!("{tag}-node1"),
            netns: ns.path(),
            dir: run_dir.0.join("ctd"),
            pause_image: pause_ref,
            cni_plugins: plugins,
            networks,
            ovs_dir: ovs.as_ref().map(|o| o.dir.clone()),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        measure("containerd start", containerd.started_in);
        let version = containerd.cri().version().await.unwrap();
        eprintln!(
            "runtime: {} {} (CRI {})",
            version.runtime_name, version.runtime_version, version.runtime_api_version
        );
        for archive in [&pause, &busybox] {
            let took = containerd
                .import(&archive.path)
                .unwrap_or_else(|e| panic!("{e}"));
            measure(&format!("import {}", archive.reference), took);
        }
        Node {
            containerd: Some(containerd),
            ovs,
            lab,
            ns,
            run_id,
            busybox,
            _images: images,
            _run_dir: run_dir,
        }
    }

    fn ctd(&self) -> &Containerd {
        self.containerd
            .as_ref()
            .expect("containerd runs until teardown")
    }

    fn sandbox(&self, name: &str) -> SandboxRequest {
        SandboxRequest {
            name: name.into(),
            namespace: "secnet".into(),
            uid: format!("{}-{name}", self.run_id),
            cgroup_parent: self.ctd().cgroup_parent.clone(),
            log_directory: self
                .ctd()
                .opts
                .dir
                .join("logs")
                .join(name)
                .display()
                .to_string(),
            ..Default::default()
        }
    }

    /// Runs a sandbox and returns its ID and status (timed).
    async fn run_sandbox(&self, req: &SandboxRequest) -> (String, SandboxStatus) {
        let cri = self.ctd().cri();
        let t0 = Instant::now();
        let id = cri
            .run_pod_sandbox(req)
            .await
            .unwrap_or_else(|e| panic!("{e}\n--- containerd log ---\n{}", self.ctd().log_tail()));
        measure("sandbox start (RunPodSandbox)", t0.elapsed());
        let status = cri.pod_sandbox_status(&id).await.unwrap();
        assert!(status.ready, "sandbox {id} not ready: {:?}", status.info);
        (id, status)
    }

    async fn stop_sandbox(&self, id: &str) {
        let cri = self.ctd().cri();
        let t0 = Instant::now();
        cri.stop_pod_sandbox(id).await.unwrap();
        measure("sandbox stop (StopPodSandbox)", t0.elapsed());
        let t0 = Instant::now();
        cri.remove_pod_sandbox(id).await.unwrap();
        measure("sandbox remove (RemovePodSandbox)", t0.elapsed());
    }

    /// The runtime's CNI calls for `container_id`, as (plugin, command, ifname).
    fn calls(&self, container_id: &str) -> Vec<(String, String, String)> {
        self.ctd()
            .cni_calls()
            .into_iter()
            .filter(|c| c.container_id == container_id)
            .map(|c| (c.plugin, c.command, c.ifname))
            .collect()
    }

    /// libcni's cached result for `network` / `ifname` of a sandbox, if any.
    fn cache(&self, network: &str, id: &str, ifname: &str) -> Option<Value> {
        let path = self
            .ctd()
            .cni_state_dir()
            .join("results")
            .join(format!("{network}-{id}-{ifname}"));
        let text = std::fs::read_to_string(path).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Stops the runtime through CRI (DEL of what is left) and removes everything;
    /// asserts nothing of the node is left.
    async fn down(mut self) {
        let ctd = self.containerd.take().unwrap();
        let parent = ctd.cgroup_parent.clone();
        let dir = ctd.opts.dir.clone();
        let errors = ctd.shutdown().await;
        assert!(errors.is_empty(), "{errors:?}");
        assert!(!dir.exists(), "{} left", dir.display());
        let leftover: Vec<_> = ["pids", "memory", "cpu"]
            .iter()
            .map(|c| {
                Path::new("/sys/fs/cgroup")
                    .join(c)
                    .join(parent.trim_start_matches('/'))
            })
            .filter(|p| p.exists())
            .collect();
        assert!(leftover.is_empty(), "cgroups left: {leftover:?}");
        drop(self.ovs.take());
        let errors = self.lab.teardown();
        assert!(errors.is_empty(), "{errors:?}");
    }
}

/// `ip -j -d addr show <ifname>` in the sandbox's network namespace (entered through
/// its pause process), or None when there is no such link.
fn sandbox_link(status: &SandboxStatus, ifname: &str) -> Option<AddrFacts> {
    let pid = status
        .pid()
        .expect("containerd's verbose info has the sandbox pid");
    let out = Cmd::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["ip", "-j", "-d", "addr", "show", "dev", ifname])
        .run()
        .ok()?;
    secnet::probe::ip::addrs(&out).ok()?.into_iter().next()
}

fn ipv4(link: &AddrFacts) -> Option<String> {
    link.addrs
        .iter()
        .find(|a| a.family == "inet")
        .map(|a| a.local.to_string())
}

/// The commands (in order) one plugin received for one sandbox.
fn commands(calls: &[(String, String, String)], plugin: &str) -> Vec<String> {
    calls
        .iter()
        .filter(|(p, _, _)| p == plugin)
        .map(|(_, c, _)| c.clone())
        .collect()
}

/// Asserts the default network: eth0 is a macvlan with the address host-local gave
/// it, which is also the pod IP CRI reports and what libcni cached.
fn assert_default_eth0(node: &Node, id: &str, status: &SandboxStatus) {
    let eth0 = sandbox_link(status, "eth0").expect("sandbox has eth0");
    assert_eq!(eth0.link.kind, "macvlan", "{eth0:?}");
    let ip = ipv4(&eth0).expect("eth0 has an IPv4 address");
    assert_eq!(ip, status.ip, "CRI's pod IP is eth0's");
    let cache = node
        .cache("secnet-default", id, "eth0")
        .expect("libcni cached the ADD result of the default network");
    assert_eq!(cache["kind"], "cniCacheV1", "{cache}");
    let cached_ips = cache.pointer("/result/ips").cloned().unwrap_or_default();
    assert!(
        cached_ips.to_string().contains(&format!("\"{ip}/24\"")),
        "cache {cached_ips} lacks {ip}"
    );
    let cached_mac = cache
        .pointer("/result/interfaces/0/mac")
        .and_then(Value::as_str)
        .unwrap_or("");
    assert_eq!(cached_mac, eth0.link.shown_mac(), "cached MAC is eth0's");
    let lease = node
        .ctd()
        .cni_state_dir()
        .join("networks/secnet-default")
        .join(&ip);
    let holder = std::fs::read_to_string(&lease).expect("host-local lease file");
    assert!(
        holder.contains(id),
        "lease {} held by {holder}",
        lease.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_runs_a_sandbox_on_macvlan_with_host_local() {
    if !prerequisites("containerd tier: macvlan + host-local") {
        return;
    }
    let node = Node::up("ca", Vec::new(), Vec::new(), false).await;
    let req = node.sandbox("web");
    let (id, status) = node.run_sandbox(&req).await;
    assert_default_eth0(&node, &id, &status);
    let ip = status.ip.clone();

    // A container of secnet's busybox image in the sandbox sees the same eth0.
    let cri = node.ctd().cri();
    let t0 = Instant::now();
    let cid = cri
        .start_container(
            &id,
            &req,
            "probe",
            &node.busybox.reference,
            &["sleep", "600"],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", node.ctd().log_tail()));
    measure("container create+start", t0.elapsed());
    let out = cri
        .exec_sync(
            &cid,
            &["ip", "-4", "-o", "addr", "show", "eth0"],
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert!(out.stdout.contains(&format!("{ip}/24")), "{out:?}");

    let calls = node.calls(&id);
    assert_eq!(commands(&calls, "macvlan"), ["ADD"], "{calls:?}");
    assert_eq!(commands(&calls, "loopback"), ["ADD"], "{calls:?}");
    node.stop_sandbox(&id).await;
    let calls = node.calls(&id);
    let macvlan = commands(&calls, "macvlan");
    eprintln!(
        "containerd sent CHECK: {} (macvlan got {macvlan:?})",
        macvlan.iter().any(|c| c == "CHECK")
    );
    assert_eq!(
        macvlan.first().map(String::as_str),
        Some("ADD"),
        "{calls:?}"
    );
    assert_eq!(macvlan.last().map(String::as_str), Some("DEL"), "{calls:?}");
    assert!(
        node.cache("secnet-default", &id, "eth0").is_none(),
        "the cache entry outlived DEL"
    );
    let lease = node
        .ctd()
        .cni_state_dir()
        .join("networks/secnet-default")
        .join(&ip);
    assert!(!lease.exists(), "host-local kept {ip} after DEL");
    node.down().await;
}

/// A secondary network (the sandbox's eth1) of one plugin under test.
fn secondary(name: &str, plugin: Value) -> (String, String) {
    let conf = serde_json::json!({ "cniVersion": "1.0.0", "name": name, "plugins": [plugin] });
    (format!("20-{name}.conflist"), conf.to_string())
}

fn bundled(name: &str) -> Option<PathBuf> {
    let found = secnet::bins::bundled(name);
    secnet::prereq::require(&format!("containerd tier: {name}"), found.as_ref().err())
        .then(|| found.expect("checked"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_gives_a_sandbox_the_device_plugins_macvtap() {
    if !prerequisites("containerd tier: macvtap") {
        return;
    }
    let Some(macvtap) = bundled("macvtap") else {
        return;
    };
    // What the device plugin does at Allocate: a macvtap on the uplink named after
    // the deviceID and marked with it (the CNI takes only marked links).
    let device_id = "secnetMvp1";
    let plugin = serde_json::json!({ "type": "macvtap", "deviceID": device_id });
    let node = Node::up(
        "cb",
        vec![secondary("secnet-macvtap", plugin)],
        vec![("macvtap".into(), macvtap)],
        false,
    )
    .await;
    // A host-wide unique ifindex: /dev/tapN is shared by every namespace.
    let index = 300_000 + (std::process::id() % 30_000) * 10;
    node.lab
        .ip(
            &node.ns,
            &[
                "link",
                "add",
                device_id,
                "index",
                &index.to_string(),
                "link",
                UPLINK,
                "type",
                "macvtap",
                "mode",
                "bridge",
            ],
        )
        .unwrap();
    let alias = format!("secnet-deviceplugin:{device_id}");
    node.lab
        .ip(&node.ns, &["link", "set", device_id, "alias", &alias, "up"])
        .unwrap();
    let host_link = node
        .lab
        .ip(&node.ns, &["-j", "link", "show", device_id])
        .unwrap();
    let host_mac = secnet::probe::ip::links(&host_link).unwrap()[0].mac.clone();

    let (id, status) = node.run_sandbox(&node.sandbox("vm")).await;
    assert_default_eth0(&node, &id, &status);
    let eth1 = sandbox_link(&status, "eth1").expect("the macvtap is the sandbox's eth1");
    assert_eq!(eth1.link.kind, "macvtap", "{eth1:?}");
    assert_eq!(
        eth1.link.mac, host_mac,
        "the device plugin's link itself, MAC kept"
    );
    assert!(
        node.lab.ip(&node.ns, &["link", "show", device_id]).is_err(),
        "the link left the node for the sandbox"
    );
    assert!(
        Path::new(&format!("/dev/tap{index}")).exists(),
        "the macvtap's character device is there for the VM"
    );
    let cache = node
        .cache("secnet-macvtap", &id, "eth1")
        .expect("libcni cached the macvtap ADD result");
    assert_eq!(
        cache
            .pointer("/result/interfaces/0/mac")
            .and_then(Value::as_str),
        host_mac.as_deref(),
        "{cache}"
    );
    let calls = node.calls(&id);
    assert_eq!(commands(&calls, "macvtap"), ["ADD"], "{calls:?}");
    assert!(
        calls
            .iter()
            .any(|(p, c, i)| p == "macvtap" && c == "ADD" && i == "eth1")
    );

    node.stop_sandbox(&id).await;
    let calls = node.calls(&id);
    let got = commands(&calls, "macvtap");
    eprintln!(
        "containerd sent CHECK: {}",
        got.iter().any(|c| c == "CHECK")
    );
    assert_eq!(got.last().map(String::as_str), Some("DEL"), "{calls:?}");
    // DEL deletes the pod's macvtap (as upstream: the device plugin makes a new one
    // at the next Allocate); its /dev/tapN goes with it.
    assert!(
        node.lab.ip(&node.ns, &["link", "show", device_id]).is_err(),
        "DEL left the macvtap on the node"
    );
    let tap = PathBuf::from(format!("/dev/tap{index}"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while tap.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!tap.exists(), "{} outlived DEL", tap.display());
    assert!(node.cache("secnet-macvtap", &id, "eth1").is_none());
    node.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_plugs_a_sandbox_into_the_nodes_ovs() {
    if !prerequisites("containerd tier: ovs")
        || !secnet::prereq::require_program(
            "containerd tier: ovs",
            "ovs-vswitchd",
            "openvswitch-switch",
        )
    {
        return;
    }
    let Some(ovs_cni) = bundled("ovs") else {
        return;
    };
    let plugin = serde_json::json!({ "type": "ovs", "bridge": "br1", "vlan": 100 });
    let node = Node::up(
        "cc",
        vec![secondary("secnet-ovs", plugin)],
        vec![("ovs".into(), ovs_cni)],
        true,
    )
    .await;
    let ovs = node.ovs.as_ref().expect("started");
    let before = ovs.ports("br1").unwrap();

    let (id, status) = node.run_sandbox(&node.sandbox("sw")).await;
    assert_default_eth0(&node, &id, &status);
    let eth1 = sandbox_link(&status, "eth1").expect("the OVS port's peer is eth1");
    assert_eq!(eth1.link.kind, "veth", "{eth1:?}");
    let ports = ovs.ports("br1").unwrap();
    let added: Vec<&String> = ports.iter().filter(|p| !before.contains(p)).collect();
    assert_eq!(added.len(), 1, "one new port on br1: {ports:?}");
    let tag = ovs.vsctl(&["get", "Port", added[0], "tag"]).unwrap();
    assert_eq!(tag.trim(), "100", "access VLAN of {}", added[0]);
    let cache = node
        .cache("secnet-ovs", &id, "eth1")
        .expect("libcni cached the ovs ADD result");
    assert!(
        cache
            .pointer("/result/interfaces")
            .map(Value::to_string)
            .unwrap_or_default()
            .contains(eth1.link.shown_mac()),
        "cache {cache} names eth1's MAC {}",
        eth1.link.shown_mac()
    );

    node.stop_sandbox(&id).await;
    let calls = node.calls(&id);
    let got = commands(&calls, "ovs");
    eprintln!(
        "containerd sent CHECK: {}",
        got.iter().any(|c| c == "CHECK")
    );
    assert_eq!(got.first().map(String::as_str), Some("ADD"), "{calls:?}");
    assert_eq!(got.last().map(String::as_str), Some("DEL"), "{calls:?}");
    assert_eq!(ovs.ports("br1").unwrap(), before, "DEL removed the port");
    assert!(node.cache("secnet-ovs", &id, "eth1").is_none());
    node.down().await;
}

/// Every image secnet writes, read back by real OCI readers: skopeo (manifest and
/// config digests, verified blob by blob on copy) and umoci (the layout's names, the
/// layer unpacked into a root filesystem whose busybox runs).
#[test]
fn oci_archives_are_read_back_by_skopeo_and_umoci() {
    let what = "OCI archives read back";
    if !secnet::prereq::require_program(what, "skopeo", "skopeo")
        || !secnet::prereq::require_program(what, "umoci", "umoci")
        || !secnet::prereq::require_program(what, "busybox", "busybox-static")
    {
        return;
    }
    let Some(macvtap) = bundled("macvtap") else {
        return;
    };
    let dir = ScratchDir::new("secnet-oci-read").unwrap();
    let plugin_bins = vec![macvtap, secnet::bins::bundled("ovs").unwrap()];
    let images = [
        ("pause", oci::pause("secnet.local/pause:t1").unwrap()),
        ("busybox", oci::busybox("secnet.local/busybox:t1").unwrap()),
        (
            "plugins",
            oci::plugins("secnet.local/plugins:t1", &plugin_bins).unwrap(),
        ),
    ];
    for (name, spec) in images {
        let t0 = Instant::now();
        let archive = spec.write(&dir.path().join(format!("{name}.tar"))).unwrap();
        measure(&format!("oci write {name}"), t0.elapsed());
        let size = std::fs::metadata(&archive.path).unwrap().len();
        eprintln!("{name}: {} bytes, layer {} bytes", size, archive.layer_size);
        let src = format!("oci-archive:{}", archive.path.display());
        let inspect: Value =
            serde_json::from_str(&Cmd::new("skopeo").args(["inspect", &src]).run().unwrap())
                .unwrap();
        assert_eq!(inspect["Digest"], archive.manifest_digest, "{inspect}");
        assert_eq!(inspect["Layers"][0], archive.layer_digest, "{inspect}");
        assert_eq!(inspect["Architecture"], "amd64");
        assert_eq!(inspect["Os"], "linux");
        let config: Value = serde_json::from_str(
            &Cmd::new("skopeo")
                .args(["inspect", "--config", &src])
                .run()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], archive.layer_digest);
        // copy re-reads every blob and checks it against its digest.
        let copied = dir.path().join(format!("{name}-dir"));
        Cmd::new("skopeo")
            .args(["copy", &src, &format!("dir:{}", copied.display())])
            .timeout(Duration::from_secs(60))
            .run()
            .unwrap();

        // umoci reads the layout itself (unpacked from our tar with GNU tar).
        let layout = dir.path().join(format!("{name}-layout"));
        std::fs::create_dir(&layout).unwrap();
        Cmd::new("tar")
            .arg("-xf")
            .arg(&archive.path)
            .arg("-C")
            .arg(&layout)
            .run()
            .unwrap();
        let tags = Cmd::new("umoci")
            .args(["ls", "--layout"])
            .arg(&layout)
            .run()
            .unwrap();
        assert!(
            tags.lines().any(|t| t == archive.reference),
            "umoci ls: {tags}"
        );
        let bundle = dir.path().join(format!("{name}-bundle"));
        Cmd::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:{}", layout.display(), archive.reference))
            .arg(&bundle)
            .timeout(Duration::from_secs(60))
            .run()
            .unwrap();
        let rootfs = bundle.join("rootfs");
        let sh = std::fs::read_link(rootfs.join("bin/sh")).unwrap();
        assert_eq!(sh, Path::new(oci::BUSYBOX));
        let out = Cmd::new("chroot")
            .arg(&rootfs)
            .args(["/bin/sh", "-c", "echo ok"])
            .run()
            .unwrap();
        assert_eq!(out.trim(), "ok");
        if name == "plugins" {
            // The dynamically linked plugin runs in the image: its libraries came along.
            let out = Cmd::new("chroot")
                .arg(&rootfs)
                .args([&format!("{}/macvtap", oci::PLUGIN_DIR)])
                .env("CNI_COMMAND", "VERSION")
                .stdin(b"{}".to_vec())
                .run()
                .unwrap();
            assert!(out.contains("supportedVersions"), "{out}");
        }
    }
}
