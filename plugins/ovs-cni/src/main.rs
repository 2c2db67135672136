//! `ovs`: secnet's OVS CNI plugin binary.

const ABOUT: &str = "ovs: secnet's OVS CNI plugin, a drop-in replacement for ovs-cni's common configuration.\nConfig: bridge, vlan, trunk, mtu, socket_file, ipam; it talks OVSDB to ovsdb-server directly.";

fn main() {
    cni_kit::skel::main(ABOUT, ovs_cni::plugin::handle)
}
