//! `macvtap`: secnet's macvtap CNI plugin binary.

const ABOUT: &str = "macvtap: secnet's macvtap CNI plugin, a drop-in replacement for kubevirt/macvtap-cni's.\nConfig: deviceID (from the macvtap device plugin) or master + mode (standalone), mtu, promiscMode, owner, group.";

fn main() {
    cni_kit::skel::main(ABOUT, macvtap_cni::plugin::handle)
}
