#!/usr/bin/env bash
# Installs what secnet needs on a Debian or Ubuntu machine: the system packages that
# `secnet conform` uses and, with --tests, what the test suite needs on top
# (hyperfine, a headless browser, cargo-nextest). Idempotent; apt needs root, so it
# uses sudo when not run as root. Package names differ between the distributions
# only for the guest kernel and the browser: both are chosen below.
set -euo pipefail

tests=false
case "${1:-}" in
  --tests) tests=true ;;
  "") ;;
  *) echo "usage: ci/bootstrap.sh [--tests]" >&2; exit 2 ;;
esac

distro=unknown
if [ -r /etc/os-release ]; then
  # shellcheck disable=SC1091
  . /etc/os-release
  case " ${ID:-} ${ID_LIKE:-} " in
    *" ubuntu "*) distro=ubuntu ;;
    *" debian "*) distro=debian ;;
  esac
fi
if [ "$distro" = unknown ]; then
  echo "secnet bootstrap: this is not Debian or Ubuntu (/etc/os-release says ${PRETTY_NAME:-nothing});" >&2
  echo "  install by hand the packages listed in ci/bootstrap.sh" >&2
  exit 2
fi

packages=(
  iproute2               # ip: namespaces, veth, macvtap
  iputils-ping           # reachability probes
  netcat-openbsd         # TCP/UDP reachability probes (nc -u -l -p) in the netns nodes' pods
  containernetworking-plugins  # reference plugins: macvlan, bridge, host-local
  dnsmasq-base           # the fabric's DHCP server (the seed's macvlan lab)
  busybox-static         # udhcpc, the DHCP client of that lab; the VM guests' userland
  qemu-system-x86        # VM guests (TCG; KVM when it works)
  nftables               # masquerade binding (NAT in the launcher pod and the node)
  xz-utils               # unpacks the guest kernel from the vmlinuz
  openvswitch-switch     # userspace OVS (ovsdb-server, ovs-vswitchd) for the ovs backend
  tcpdump                # tagged frames on OVS trunk ports (no 8021q module needed)
  etcd-server            # the bare cluster's etcd (3.4; Kubernetes binaries come from --k8s-bin-dir)
  openssl                # reads the bare cluster's certificates back in the PKI tests
)
# The bare provider's and the containerd tier's runtime (1.6 + runc on bookworm),
# unless one is there already (Docker's containerd.io conflicts with the package).
command -v containerd >/dev/null && command -v runc >/dev/null || packages+=(containerd runc)
# The guest kernel + virtio modules.
case "$distro" in
  debian) packages+=(linux-image-amd64) ;;
  ubuntu) packages+=(linux-image-generic) ;;
esac
if $tests; then
  packages+=(hyperfine)  # benchmarks of whole commands
  packages+=(skopeo umoci)  # real OCI readers: the tests read secnet's image archives back
  # The test that opens report.html headless. Ubuntu ships Chromium only as a snap:
  # use a browser that is already there (GitHub's runners have google-chrome).
  if [ "$distro" = debian ]; then
    packages+=(chromium)
  elif ! command -v chromium >/dev/null && ! command -v google-chrome >/dev/null; then
    echo "secnet bootstrap: no chromium or google-chrome: the report.html browser test will fail" >&2
  fi
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "secnet bootstrap ($distro): installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if $tests && ! cargo nextest --version >/dev/null 2>&1; then
  if ! command -v cargo >/dev/null; then
    echo "secnet bootstrap: cargo is not on PATH; install Rust (https://rustup.rs) first" >&2
    exit 2
  fi
  echo "secnet bootstrap: installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
