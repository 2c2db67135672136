//! One nextest test per `secnet conform` scenario: the same code, run alone, on the
//! bundled implementations and the built-in netns topology.

use secnet::cluster::capability::{Capability, package_of};
use secnet::conform::{Options, run_one};

async fn scenario(name: &str) {
    if !secnet::prereq::require_root(name) {
        return;
    }
    // What every netns cluster uses, then what this scenario declares it needs.
    let s = secnet::scenario::all()
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no scenario named {name:?}"));
    let mut programs = vec!["ip", "ping", "/usr/lib/cni/bridge"];
    for cap in &s.needs {
        match cap {
            Capability::Program(p) => programs.push(p),
            other => programs.extend(other.programs()),
        }
    }
    for program in programs {
        if !secnet::prereq::require_program(name, program, package_of(program)) {
            return;
        }
    }
    if let Err(failure) = run_one(&Options::bundled(), name).await {
        panic!("{name}: {failure}");
    }
}

macro_rules! scenarios {
    ($($test:ident => $name:expr),* $(,)?) => {
        $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $test() { scenario($name).await } )*

        /// Every scenario has its test here (a new scenario without one fails this).
        #[test]
        fn every_scenario_has_a_test() {
            let listed = [$($name),*];
            for s in secnet::scenario::all() {
                assert!(listed.contains(&s.name.as_str()), "scenario {:?} has no suite test: add it to suites/tests/scenarios.rs", s.name);
            }
        }
    };
}

scenarios! {
    macvtap_cni_0_3_0 => "macvtap-cni/[0.3.0] device attach, check, delete",
    macvtap_cni_0_3_1 => "macvtap-cni/[0.3.1] device attach, check, delete",
    macvtap_cni_0_4_0 => "macvtap-cni/[0.4.0] device attach, check, delete",
    macvtap_cni_1_0_0 => "macvtap-cni/[1.0.0] device attach, check, delete",
    macvtap_cni_1_1_0 => "macvtap-cni/[1.1.0] device attach, check, delete",
    macvtap_cni_requested_mac_mtu => "macvtap-cni/requested MAC, MTU and promisc",
    macvtap_cni_del_after_netns_gone => "macvtap-cni/DEL after the pod netns is gone",
    macvtap_cni_standalone => "macvtap-cni/standalone mode on master",
    macvtap_cni_killed_add => "macvtap-cni/ADD killed half-way: DEL and the next ADD converge",
    seed_daemonset_capacity => "seed/device plugin DaemonSet: capacity 50 on every node",
    seed_macvtap_pod => "seed/macvtap-pod: net1 is a macvtap on ens33",
    seed_macvtap_pod_with_mac => "seed/macvtap-pod-with-mac: the requested MAC everywhere",
    seed_capacity_accounting => "seed/capacity accounting: allocate, release, Insufficient",
    seed_macvtap_reachability => "seed/macvtap reachability: same node, across nodes, not the own uplink",
    seed_macvlan_host_local => "seed/macvlan-test NAD with host-local: addresses and cross-node ping",
    seed_macvlan_dhcp_lab => "seed/manual macvlan lab: DHCP from the LAN, gateway reachable",
    fault_kubelet_restart => "fault/kubelet restart: resources back, allocations kept",
    fault_device_plugin_killed => "fault/device plugin SIGKILL and restart: capacity back, no stale links",
    fault_lower_device => "fault/lower device down, deleted, recreated: Unhealthy then Healthy",
    fault_netns_gone_before_del => "fault/pod netns deleted before CNI DEL: devices and leases freed",
    fault_fifty_pods_at_once => "fault/50 pods at once on one node: distinct devices and MACs",
    bad_input_device_plugin_configs => "bad-input/device plugin ConfigMaps: the seed's, unknown mode, capacity 0",
    bad_input_pods => "bad-input/pods: missing NAD, malformed annotation, bad MAC, MTU above the lower's",
    bad_input_fixtures => "bad-input/fixtures: typos named by file, document and field",
    security_standalone_uplink => "security/macvtap: standalone master on the node's uplink, no node policy",
    security_standalone_bridge => "security/macvtap: standalone master on a host bridge the policy does not list",
    security_passthru => "security/macvtap: passthru with promiscMode on the uplink",
    security_vm_macvtap0 => "security/macvtap: a deviceID naming a VM's macvtap0",
    security_device_id_uplink => "security/macvtap: a deviceID naming the node's uplink",
    security_tap_owner_root => "security/macvtap: owner/group of /dev/tapN set to root",
    security_ovs_proc_socket => "security/ovs: socket_file through /proc/<pid>/root",
    security_ovs_symlink_socket => "security/ovs: socket_file a symlink to the node's ovsdb-server",
    security_ovs_trunk_all => "security/ovs: trunk of every VLAN (no vlan) without the policy allowing trunks",
    security_ovs_trunk_list => "security/ovs: trunk list without the policy allowing trunks",
    security_ovs_ipam_self => "security/ovs: ipam type naming the plugin itself",
    security_ovs_container_ids => "security/ovs: absolute and ../ container ids on DEL",
    security_other_pods_device => "security/macvtap: a deviceID of another pod's allocation",
    ovs_vlan100_reachability => "ovs/VLAN 100 pods reach each other on one node and across nodes",
    ovs_vlan200_isolated => "ovs/a VLAN 200 pod is isolated from VLAN 100",
    ovs_trunk_allowed_vlans_only => "ovs/trunk attachment receives tagged frames of its allowed VLANs only",
    ovs_mtu_mac_and_cleanup => "ovs/MTU and MAC as requested, no port left after delete",
    vm_macvtap => "vm/macvtap frontend: guest MAC is the macvtap's, capacity counted, pings a pod and a VM on one node and across nodes",
    vm_macvlan_bridge => "vm/bridge binding on macvlan-test: host-local address in the guest, reaches a pod",
    vm_masquerade => "vm/masquerade on the pod network: the guest reaches the fabric gateway",
    vm_ovs_bridge => "vm/bridge binding on ovs-vlan-100: the guest reaches a VLAN 100 pod on the other node",
    vm_boot_failure => "vm/guest that cannot boot: the failure carries the console, nothing left running",
}
