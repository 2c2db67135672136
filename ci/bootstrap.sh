#!/usr/bin/env bash
# Installs what secnet needs on a Debian/Ubuntu machine with Rust: the system
# packages its tests and runs use, and cargo-nextest. Idempotent; needs root for apt.
set -euo pipefail

packages=(
  iproute2               # ip: namespaces, veth, macvtap
  iputils-ping           # reachability probes
  containernetworking-plugins  # reference plugins: macvlan, bridge, host-local
  hyperfine              # benchmarks of whole commands
  dnsmasq-base           # the fabric's DHCP server (the seed's macvlan lab)
  busybox-static         # udhcpc, the DHCP client of that lab; the VM guests' userland
  qemu-system-x86        # VM guests (TCG; KVM when it works)
  linux-image-amd64      # the guest kernel + virtio modules
  nftables               # masquerade binding (NAT in the launcher pod and the node)
  xz-utils               # unpacks the guest kernel from the vmlinuz
  chromium               # the test that opens report.html headless
  openvswitch-switch     # userspace OVS (ovsdb-server, ovs-vswitchd) for the ovs backend
  tcpdump                # tagged frames on OVS trunk ports (no 8021q module needed)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "secnet bootstrap: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "secnet bootstrap: installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
