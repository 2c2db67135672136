//! `secnet doctor`: what this machine has for each tier, what is missing, and the
//! exact command that fixes it (`--fix` runs the Debian/Ubuntu installs).

use std::time::Duration;

use crate::lab::run;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// The netns tier cannot run without it.
    Required,
    /// Some scenarios (OVS, VMs) or tiers (kind) need it.
    Optional,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub(crate) what: String,
    pub(crate) need: Need,
    pub(crate) ok: bool,
    pub(crate) detail: String,
    /// Debian package that provides it, when one does.
    pub package: Option<&'static str>,
    pub(crate) fix: Option<String>,
}

fn program(name: &str) -> Option<String> {
    crate::prereq::find_program(name).map(|p| p.display().to_string())
}

fn program_check(what: &str, name: &str, package: &'static str, need: Need) -> Check {
    let found = program(name);
    Check {
        what: what.into(),
        need,
        ok: found.is_some(),
        detail: found.unwrap_or_else(|| format!("{name} not found")),
        package: Some(package),
        fix: Some(format!("apt-get install -y {package}")),
    }
}

/// Creates each link kind in a throw-away namespace: the kernel's answer, not a guess.
fn kernel_checks() -> Vec<Check> {
    let ns = format!("{}-doctor", crate::lab::new_run_id());
    let t = Duration::from_secs(5);
    let mut out = Vec::new();
    let netns = run("ip", &["netns", "add", &ns], t);
    out.push(Check {
        what: "network namespaces".into(),
        need: Need::Required,
        ok: netns.is_ok(),
        detail: netns
            .as_ref()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "ip netns add works".into()),
        package: None,
        fix: Some("run as root on a kernel with CONFIG_NET_NS".into()),
    });
    if netns.is_ok() {
        let ip = |args: &[&str]| {
            let mut full = vec!["-n", ns.as_str()];
            full.extend_from_slice(args);
            run("ip", &full, t)
        };
        let veth = ip(&["link", "add", "d0", "type", "veth", "peer", "name", "d1"]);
        let tap_index = (900_000 + std::process::id() % 90_000).to_string();
        for (kind, args, need) in [
            ("veth", None, Need::Required),
            (
                "macvlan",
                Some(vec![
                    "link", "add", "mvl0", "link", "d0", "type", "macvlan", "mode", "bridge",
                ]),
                Need::Required,
            ),
            (
                "macvtap",
                // A high index of its own: /dev/tap<ifindex> is shared by all namespaces.
                Some(vec![
                    "link", "add", "mvt0", "index", &tap_index, "link", "d0", "type", "macvtap",
                    "mode", "bridge",
                ]),
                Need::Required,
            ),
            (
                "bridge",
                Some(vec!["link", "add", "br0", "type", "bridge"]),
                Need::Required,
            ),
        ] {
            let result = match args {
                None => veth
                    .as_ref()
                    .map(|_| String::new())
                    .map_err(|e| e.to_string()),
                Some(a) => ip(&a).map_err(|e| e.to_string()),
            };
            out.push(Check {
                what: format!("kernel: {kind} links"),
                need,
                ok: result.is_ok(),
                detail: result
                    .err()
                    .unwrap_or_else(|| "created in a test namespace".into()),
                package: None,
                fix: Some(format!(
                    "modprobe {kind} (or use a kernel with it built in)"
                )),
            });
        }
        let _ = run("ip", &["netns", "del", &ns], t);
    }
    out
}

/// Whether KVM really works: opening /dev/kvm is not enough under nested
/// virtualization, so create a VM and a vCPU.
fn kvm_usable() -> bool {
    use std::os::fd::AsRawFd;
    const KVM_GET_API_VERSION: u64 = 0xAE00;
    const KVM_CREATE_VM: u64 = 0xAE01;
    const KVM_CREATE_VCPU: u64 = 0xAE41;
    let Ok(kvm) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    else {
        return false;
    };
    // SAFETY: plain KVM ioctls on fds we own; returned fds are closed below.
    unsafe {
        if nix::libc::ioctl(kvm.as_raw_fd(), KVM_GET_API_VERSION as _, 0) != 12 {
            return false;
        }
        let vm = nix::libc::ioctl(kvm.as_raw_fd(), KVM_CREATE_VM as _, 0);
        if vm < 0 {
            return false;
        }
        let vcpu = nix::libc::ioctl(vm, KVM_CREATE_VCPU as _, 0);
        if vcpu >= 0 {
            nix::libc::close(vcpu);
        }
        nix::libc::close(vm);
        vcpu >= 0
    }
}

fn kvm_check() -> Check {
    let usable = kvm_usable();
    Check {
        what: "KVM for guests".into(),
        need: Need::Optional,
        ok: usable,
        detail: if usable {
            "a VM and a vCPU can be created (guests still probe a real boot)".into()
        } else {
            "no usable /dev/kvm: guests run under TCG (slower, still fine)".into()
        },
        package: None,
        fix: None,
    }
}

fn guest_kernel_check() -> Check {
    let found = std::fs::read_dir("/boot")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-"))
        })
        .unwrap_or(false);
    Check {
        what: "a kernel for guests".into(),
        need: Need::Optional,
        ok: found,
        detail: if found {
            "/boot/vmlinuz-* present".into()
        } else {
            "no /boot/vmlinuz-*".into()
        },
        package: Some("linux-image-amd64"),
        fix: Some("apt-get install -y linux-image-amd64".into()),
    }
}

/// The Kubernetes server binaries of the bare tier, in `$SECNET_K8S_BIN_DIR` (what
/// `--k8s-bin-dir` defaults to).
fn k8s_bin_dir_check() -> Check {
    let dir = std::env::var_os("SECNET_K8S_BIN_DIR").map(std::path::PathBuf::from);
    let missing: Vec<&str> = match &dir {
        Some(d) => crate::cluster::bare::cluster::K8S_BINARIES
            .into_iter()
            .filter(|b| !d.join(b).is_file())
            .collect(),
        None => crate::cluster::bare::cluster::K8S_BINARIES.to_vec(),
    };
    Check {
        what: "Kubernetes server binaries (the bare tier: --k8s-bin-dir)".into(),
        need: Need::Optional,
        ok: missing.is_empty(),
        detail: match (&dir, missing.is_empty()) {
            (Some(d), true) => format!("{} (SECNET_K8S_BIN_DIR)", d.display()),
            (Some(d), false) => format!("{} lacks {}", d.display(), missing.join(", ")),
            (None, _) => "SECNET_K8S_BIN_DIR not set".into(),
        },
        package: None,
        fix: Some("unpack kubernetes-server-linux-amd64.tar.gz (server/bin) and set SECNET_K8S_BIN_DIR or pass --k8s-bin-dir".into()),
    }
}

pub fn checks() -> Vec<Check> {
    let mut out = vec![Check {
        what: "root".into(),
        need: Need::Required,
        ok: crate::prereq::is_root(),
        detail: if crate::prereq::is_root() {
            "running as root".into()
        } else {
            "not root".into()
        },
        package: None,
        fix: Some("run as root (e.g. sudo -E secnet ...)".into()),
    }];
    if crate::prereq::is_root() {
        out.extend(kernel_checks());
    }
    out.extend([
        program_check("iproute2 (ip)", "ip", "iproute2", Need::Required),
        program_check("ping", "ping", "iputils-ping", Need::Required),
        program_check(
            "reference CNI plugins (bridge, host-local, macvlan)",
            "/usr/lib/cni/macvlan",
            "containernetworking-plugins",
            Need::Required,
        ),
        program_check(
            "DHCP server for the fabric (dnsmasq)",
            "dnsmasq",
            "dnsmasq-base",
            Need::Required,
        ),
        program_check(
            "DHCP client for the macvlan lab (busybox udhcpc)",
            "busybox",
            "busybox-static",
            Need::Required,
        ),
        program_check(
            "userspace Open vSwitch (OVS scenarios)",
            "ovs-vswitchd",
            "openvswitch-switch",
            Need::Optional,
        ),
        program_check(
            "QEMU (VM scenarios)",
            "qemu-system-x86_64",
            "qemu-system-x86",
            Need::Optional,
        ),
        guest_kernel_check(),
        kvm_check(),
        kind_check(),
        program_check(
            "etcd (the bare tier)",
            "etcd",
            "etcd-server",
            Need::Optional,
        ),
        program_check(
            "containerd (the bare and containerd tiers)",
            "containerd",
            "containerd",
            Need::Optional,
        ),
        program_check(
            "runc (the bare and containerd tiers)",
            "runc",
            "runc",
            Need::Optional,
        ),
        k8s_bin_dir_check(),
    ]);
    let docker = run(
        "docker",
        &["info", "--format", "{{.ServerVersion}}"],
        Duration::from_secs(5),
    );
    out.push(Check {
        what: "Docker engine (the kind tier)".into(),
        need: Need::Optional,
        ok: docker.is_ok(),
        detail: docker
            .map(|v| format!("server {}", v.trim()))
            .unwrap_or_else(|_| "no Docker engine answers: the kind tier cannot run here".into()),
        package: None,
        fix: Some("install and start a Docker engine".into()),
    });
    out.extend(BUNDLED.iter().map(bundled_check));
    out.push(pins_check());
    out
}

/// A bundled binary: its crate (for the fix) and whether it is a CNI (asked VERSION).
struct Bundled {
    bin: &'static str,
    krate: &'static str,
    cni: bool,
    need: Need,
}

/// Every binary the workspace builds for a run: the two CNIs, the device plugin,
/// and the image's install step (only the image needs it).
const BUNDLED: [Bundled; 4] = [
    Bundled {
        bin: "macvtap",
        krate: "macvtap-cni",
        cni: true,
        need: Need::Required,
    },
    Bundled {
        bin: "ovs",
        krate: "ovs-cni",
        cni: true,
        need: Need::Required,
    },
    Bundled {
        bin: "macvtap-deviceplugin",
        krate: "macvtap-deviceplugin",
        cni: false,
        need: Need::Required,
    },
    Bundled {
        bin: "install-cni",
        krate: "macvtap-cni",
        cni: false,
        need: Need::Optional,
    },
];

/// A bundled binary next to secnet (or in SECNET_BIN_DIR); a CNI must also answer
/// VERSION, the way a runtime first talks to it.
fn bundled_check(b: &Bundled) -> Check {
    let path = crate::bins::bin_dir().join(b.bin);
    let (ok, detail) = if !path.exists() {
        (false, format!("{} not found", path.display()))
    } else if b.cni {
        match crate::conform::implementation::cni_versions(&path) {
            Ok(v) => (true, format!("{} (CNI {})", path.display(), v.join(", "))),
            Err(e) => (
                false,
                format!("{} does not answer VERSION: {e}", path.display()),
            ),
        }
    } else {
        (true, path.display().to_string())
    };
    Check {
        what: format!("bundled {}", b.bin),
        need: b.need.clone(),
        ok,
        detail,
        package: None,
        fix: Some(format!(
            "cargo build --release --workspace --bins in a checkout, or cargo install --locked --path plugins/{} (secnet looks next to itself, or in SECNET_BIN_DIR)",
            b.krate
        )),
    }
}

/// The kind release whose default node image secnet pins (`KIND_NODE_IMAGE`);
/// another kind release needs `--node-image` with its own.
pub const KIND_VERSION: &str = "v0.32.0";

fn kind_check() -> Check {
    let found = program("kind");
    let version = found.as_ref().and_then(|_| {
        run("kind", &["version"], Duration::from_secs(5))
            .ok()
            .and_then(|out| {
                out.split_whitespace()
                    .find(|w| {
                        w.starts_with('v') && w[1..].starts_with(|c: char| c.is_ascii_digit())
                    })
                    .map(str::to_string)
            })
    });
    let node_image = crate::cluster::kube::kind::KIND_NODE_IMAGE;
    let detail = match (&found, &version) {
        (None, _) => format!(
            "kind not found (secnet pins kind {KIND_VERSION} and its node image {node_image})"
        ),
        (Some(path), Some(v)) if v == KIND_VERSION => format!("{path} {v}, as pinned"),
        (Some(path), v) => format!(
            "{path} {}: secnet's default node image is kind {KIND_VERSION}'s; with this kind pass --node-image from its release notes",
            v.as_deref().unwrap_or("(version unknown)")
        ),
    };
    Check {
        what: "kind (the kind tier)".into(),
        need: Need::Optional,
        ok: found.is_some(),
        detail,
        package: None,
        fix: Some(format!(
            "go install sigs.k8s.io/kind@{KIND_VERSION} (or its release binary of {KIND_VERSION})"
        )),
    }
}

/// What the real-cluster tiers install, pinned: named so a user knows the versions.
fn pins_check() -> Check {
    use crate::cluster::kube::components as c;
    Check {
        what: "pinned versions (kind/existing tiers)".into(),
        need: Need::Optional,
        ok: true,
        detail: format!(
            "kind {KIND_VERSION}, node image {}, multus {}, KubeVirt {}, CNAO {}, upstream macvtap-cni {}",
            crate::cluster::kube::kind::KIND_NODE_IMAGE
                .split('@')
                .next()
                .unwrap_or_default(),
            c::MULTUS_VERSION,
            c::KUBEVIRT_VERSION,
            c::CNAO_VERSION,
            c::UPSTREAM_MACVTAP_IMAGE
                .split('@')
                .next()
                .and_then(|i| i.rsplit_once(':'))
                .map_or("", |(_, tag)| tag),
        ),
        package: None,
        fix: None,
    }
}

/// The report, one line per check, and whether every required check passed.
pub fn render(checks: &[Check]) -> (String, bool) {
    let mut text = String::new();
    let mut ok = true;
    for c in checks {
        let mark = match (c.ok, &c.need) {
            (true, _) => "ok  ",
            (false, Need::Required) => {
                ok = false;
                "MISS"
            }
            (false, Need::Optional) => "opt ",
        };
        text.push_str(&format!("[{mark}] {:<52} {}\n", c.what, c.detail));
        if !c.ok
            && let Some(fix) = &c.fix
        {
            text.push_str(&format!("       fix: {fix}\n"));
        }
    }
    (text, ok)
}

/// Installs the Debian packages of failed checks (apt-get update first).
pub fn fix(checks: &[Check]) -> Result<Vec<&'static str>, crate::lab::CommandError> {
    let mut packages: Vec<&'static str> = checks
        .iter()
        .filter(|c| !c.ok)
        .filter_map(|c| c.package)
        .filter(|p| *p != "kind")
        .collect();
    packages.dedup();
    if packages.is_empty() {
        return Ok(packages);
    }
    let t = Duration::from_secs(900);
    run("apt-get", &["update", "-qq"], t)?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(packages.iter().copied());
    run("apt-get", &args, t)?;
    Ok(packages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bundled_binary_is_checked_and_kind_is_pinned() {
        let checks = checks();
        for bin in ["macvtap", "ovs", "macvtap-deviceplugin", "install-cni"] {
            assert!(
                checks.iter().any(|c| c.what == format!("bundled {bin}")),
                "doctor does not check {bin}"
            );
        }
        let kind = checks.iter().find(|c| c.what.starts_with("kind")).unwrap();
        let fix = kind.fix.as_deref().unwrap();
        assert!(fix.contains(&format!("kind@{KIND_VERSION}")), "{fix}");
        assert!(!fix.contains("@latest"), "{fix}");
        let pins = checks
            .iter()
            .find(|c| c.what.starts_with("pinned"))
            .unwrap();
        assert!(
            pins.detail.contains("kindest/node:v1.36.1"),
            "{}",
            pins.detail
        );
        assert!(pins.detail.contains("KubeVirt v1.6.0"), "{}", pins.detail);
    }

    #[test]
    fn a_missing_required_check_fails_and_shows_its_fix() {
        let checks = vec![
            Check {
                what: "x".into(),
                need: Need::Required,
                ok: false,
                detail: "x not found".into(),
                package: Some("xpkg"),
                fix: Some("apt-get install -y xpkg".into()),
            },
            Check {
                what: "y".into(),
                need: Need::Optional,
                ok: false,
                detail: "no y".into(),
                package: None,
                fix: None,
            },
        ];
        let (text, ok) = render(&checks);
        assert!(!ok);
        assert!(
            text.contains("[MISS] x") && text.contains("fix: apt-get install -y xpkg"),
            "{text}"
        );
        assert!(text.contains("[opt ] y"));
        let (_, ok) = render(&checks[1..]);
        assert!(ok, "optional misses do not fail");
    }
}
