//! secnet's multus against multus' own test cases.
//!
//! Each case restates, in our own data, one case of the unit tests of
//! k8snetworkplumbingwg/multus-cni (`pkg/k8sclient/k8sclient_test.go`,
//! `pkg/types/conf_test.go`, `pkg/multus/multus_cni*_test.go`,
//! `pkg/checkpoint/checkpoint_test.go`) or of the network-attachment-definition
//! client multus writes network-status with (`pkg/utils/net-attach-def_test.go`),
//! or a rule of the code those tests exercise, as input → multus' outcome. The
//! `from` field names the upstream test. Each table runs every case and reports
//! all disagreements at once.

use serde_json::{Value, json};

use super::delegate::{DeviceIds, Nad, PodInfo, Runtime, plan_with};
use super::selection::{NetworkSelection, PortMapping, parse_networks};
use super::status::{self, NetworkStatus};

/// Runs `check` over `cases` and fails listing every case that disagrees.
fn run<C>(
    table: &str,
    cases: &[C],
    from: impl Fn(&C) -> &str,
    check: impl Fn(&C) -> Result<(), String>,
) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| check(c).err().map(|e| format!("[{}] {e}", from(c))))
        .collect();
    assert!(
        failures.is_empty(),
        "{table}: {} of {} cases disagree with multus:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

// ---- selection parsing --------------------------------------------------------

/// A selection as multus' `NetworkSelectionElement` would print it: only the
/// fields that are set.
fn selection_view(list: &[NetworkSelection]) -> Value {
    let list: Vec<Value> = list
        .iter()
        .map(|s| {
            let mut o = json!({"name": s.name, "namespace": s.namespace});
            let m = o.as_object_mut().expect("object");
            let mut put = |k: &str, v: Value| {
                m.insert(k.into(), v);
            };
            if let Some(i) = &s.interface {
                put("interface", json!(i));
            }
            if let Some(v) = &s.mac {
                put("mac", json!(v));
            }
            if let Some(v) = &s.infiniband_guid {
                put("infiniband-guid", json!(v));
            }
            if let Some(v) = &s.ips {
                put("ips", json!(v));
            }
            if let Some(v) = &s.default_route {
                put("default-route", json!(v));
            }
            if let Some(v) = &s.port_mappings {
                put("portMappings", json!(v));
            }
            if let Some(v) = &s.bandwidth {
                put("bandwidth", json!(v));
            }
            if let Some(v) = &s.device_id {
                put("deviceID", json!(v));
            }
            if let Some(v) = &s.cni_args {
                put("cni-args", Value::Object(v.clone()));
            }
            o
        })
        .collect();
    Value::Array(list)
}

struct ParseCase {
    from: &'static str,
    annotation: &'static str,
    /// The selections multus reads, or `None` when it refuses the annotation.
    want: Option<Value>,
}

fn parse_cases() -> Vec<ParseCase> {
    let ok = |from, annotation, want: Value| ParseCase {
        from,
        annotation,
        want: Some(want),
    };
    let refused = |from, annotation| ParseCase {
        from,
        annotation,
        want: None,
    };
    vec![
        ok(
            "k8sclient_test parsePodNetworkObjectName: network without namespace",
            "lan",
            json!([{"name": "lan", "namespace": "web"}]),
        ),
        ok(
            "k8sclient_test parsePodNetworkObjectName: network with namespace",
            "infra/lan",
            json!([{"name": "lan", "namespace": "infra"}]),
        ),
        ok(
            "k8sclient_test parsePodNetworkObjectName: network with interface name",
            "lan@data_port",
            json!([{"name": "lan", "namespace": "web", "interface": "data_port"}]),
        ),
        ok(
            "k8sclient_test parsePodNetworkObjectName: network with interface name and namespace",
            "infra/lan@data_port",
            json!([{"name": "lan", "namespace": "infra", "interface": "data_port"}]),
        ),
        ok(
            "k8sclient.go parsePodNetworkObjectName: only length, whitespace and '/' are checked in an interface name",
            "lan@eth0.100, lan2@Lan2",
            json!([{"name": "lan", "namespace": "web", "interface": "eth0.100"},
                   {"name": "lan2", "namespace": "web", "interface": "Lan2"}]),
        ),
        refused(
            "k8sclient_test parsePodNetworkObjectName: more than 2 items separated by \"/\"",
            "a@x/b@y/c@z",
        ),
        refused(
            "k8sclient_test parsePodNetworkObjectName: more than 2 items separated by \"@\"",
            "a@x/b@y@z",
        ),
        refused(
            "k8sclient_test parsePodNetworkObjectName: not matching comma-delimited format",
            "a@x/b@y",
        ),
        refused(
            "k8sclient_test parsePodNetworkObjectName: space in netdev name",
            "infra/lan@data port",
        ),
        refused(
            "k8sclient_test parsePodNetworkObjectName: interface name too long",
            "infra/lan@a_much_too_long_name",
        ),
        ok(
            "k8sclient_test retrieves delegates from kubernetes using simple format annotation",
            "lan,storage",
            json!([{"name": "lan", "namespace": "web"}, {"name": "storage", "namespace": "web"}]),
        ),
        ok(
            "k8sclient_test retrieves delegates from kubernetes using JSON format annotation (old ipRequest/macRequest keys are ignored)",
            r#"[{"name":"lan"},{"name":"storage","ipRequest":"192.0.2.9","macRequest":"02:aa:bb:cc:dd:ee"},{"name":"mgmt","namespace":"ops"}]"#,
            json!([{"name": "lan", "namespace": "web"}, {"name": "storage", "namespace": "web"},
                   {"name": "mgmt", "namespace": "ops"}]),
        ),
        refused(
            "k8sclient_test fails when the JSON format annotation is invalid",
            "[qwertyuiop]",
        ),
        ok(
            "k8sclient_test can set the default-gateway on an additional interface",
            r#"[{"name":"lan"},{"name":"storage","default-route":["198.51.100.1"]}]"#,
            json!([{"name": "lan", "namespace": "web"},
                   {"name": "storage", "namespace": "web", "default-route": ["198.51.100.1"]}]),
        ),
        ok(
            "net-attach-def_test parse network selection element in pod",
            r#"
            [{ "name": "fast-net", "interface": "fast0" }]"#,
            json!([{"name": "fast-net", "namespace": "web", "interface": "fast0"}]),
        ),
        ok(
            "conf_test verify the network selection elements goes into delegateconf",
            r#"[{"name":"fast-net","interface":"fast0","mac":"0a:11:22:33:44:55",
                 "infiniband-guid":"0a:11:22:33:44:55:66:77","ips":["192.0.2.20/24"],
                 "bandwidth":{"ingressRate":1000,"ingressBurst":2000,"egressRate":3000,"egressBurst":4000},
                 "portMappings":[{"hostPort":8443,"containerPort":443,"protocol":"tcp","hostIP":"192.0.2.1"}]}]"#,
            json!([{"name": "fast-net", "namespace": "web", "interface": "fast0",
                    "mac": "0a:11:22:33:44:55", "infiniband-guid": "0a:11:22:33:44:55:66:77",
                    "ips": ["192.0.2.20/24"],
                    "bandwidth": {"ingressRate": 1000, "ingressBurst": 2000, "egressRate": 3000, "egressBurst": 4000},
                    "portMappings": [{"hostPort": 8443, "containerPort": 443, "protocol": "tcp", "hostIP": "192.0.2.1"}]}]),
        ),
        ok(
            "conf_test test LoadDelegateNetConf keeps without GatewayRequest",
            r#"[{"name":"lan"}]"#,
            json!([{"name": "lan", "namespace": "web"}]),
        ),
        ok(
            "conf_test test LoadDelegateNetConf keeps empty GatewayRequest",
            r#"[{"name":"lan","default-route":[]}]"#,
            json!([{"name": "lan", "namespace": "web", "default-route": []}]),
        ),
        ok(
            "conf_test test LoadDelegateNetConf keeps dual GatewayRequest",
            r#"[{"name":"lan","default-route":["203.0.113.1","fd00:10::1"]}]"#,
            json!([{"name": "lan", "namespace": "web", "default-route": ["203.0.113.1", "fd00:10::1"]}]),
        ),
        refused(
            "k8sclient.go parsePodNetworkAnnotation: an invalid infiniband GUID is refused",
            r#"[{"name":"ib","infiniband-guid":"not-a-guid-at-all"}]"#,
        ),
        refused(
            "k8sclient.go parsePodNetworkAnnotation: mac is checked with net.ParseMAC (no sign)",
            r#"[{"name":"lan","mac":"+2:00:00:00:00:01"}]"#,
        ),
        ok(
            "k8sclient.go parsePodNetworkAnnotation: net.ParseMAC takes '-' and dotted forms",
            r#"[{"name":"lan","mac":"0a-11-22-33-44-55"},{"name":"lan2","mac":"0a11.2233.4455"}]"#,
            json!([{"name": "lan", "namespace": "web", "mac": "0a-11-22-33-44-55"},
                   {"name": "lan2", "namespace": "web", "mac": "0a11.2233.4455"}]),
        ),
        refused(
            "k8sclient.go parsePodNetworkAnnotation: ips with '/' go through net.ParseCIDR (no sign)",
            r#"[{"name":"lan","ips":["192.0.2.5/+24"]}]"#,
        ),
        ok(
            "k8sclient.go parsePodNetworkAnnotation: net.ParseCIDR takes leading zeros in the prefix",
            r#"[{"name":"lan","ips":["192.0.2.5/024","2001:db8::5"]}]"#,
            json!([{"name": "lan", "namespace": "web", "ips": ["192.0.2.5/024", "2001:db8::5"]}]),
        ),
        refused(
            "k8sclient.go parsePodNetworkAnnotation: net.ParseIP refuses leading zeros in IPv4",
            r#"[{"name":"lan","ips":["192.0.2.05"]}]"#,
        ),
        ok(
            "k8sclient.go parsePodNetworkAnnotation: a blank annotation is one entry without a name",
            "  ",
            json!([{"name": "", "namespace": "web"}]),
        ),
        ok(
            "conf_test add cni-args in config (cni-args read from the selection)",
            r#"[{"name":"lan","cni-args":{"flavor":"vanilla","size":3}}]"#,
            json!([{"name": "lan", "namespace": "web", "cni-args": {"flavor": "vanilla", "size": 3}}]),
        ),
        refused(
            "multus_cni100_test executes delegates with runtimeConfigs (bandwidth is a Go int)",
            r#"[{"name":"lan","bandwidth":{"ingressRate":1e3}}]"#,
        ),
    ]
}

#[test]
fn multus_upstream_selection_parsing() {
    let cases = parse_cases();
    run(
        "selection parsing",
        &cases,
        |c| c.from,
        |c| {
            let got = parse_networks(c.annotation, "web");
            match (&c.want, got) {
                (Some(want), Ok(got)) if selection_view(&got) == *want => Ok(()),
                (Some(want), Ok(got)) => Err(format!(
                    "{:?}: multus reads {want}, secnet {}",
                    c.annotation,
                    selection_view(&got)
                )),
                (Some(_), Err(e)) => Err(format!(
                    "{:?}: multus accepts it, secnet refuses: {e}",
                    c.annotation
                )),
                (None, Ok(got)) => Err(format!(
                    "{:?}: multus refuses it, secnet reads {}",
                    c.annotation,
                    selection_view(&got)
                )),
                (None, Err(_)) => Ok(()),
            }
        },
    );
}

// ---- delegates, runtimeConfig, CNI_ARGS -----------------------------------------

struct DelegateCase {
    from: &'static str,
    annotation: &'static str,
    /// (namespace, name, spec.config, resourceName)
    nads: Vec<(&'static str, &'static str, Value, Option<&'static str>)>,
    devices: Vec<(&'static str, Vec<&'static str>)>,
    runtime: Runtime,
    /// Per delegate, the keys to compare: `ifname`, `plugins` (stdin configs),
    /// `cni_args`; or `Err(substring)` when multus fails the pod.
    want: Result<Vec<Value>, &'static str>,
}

fn pod() -> PodInfo {
    PodInfo {
        namespace: "web".into(),
        name: "shop".into(),
        uid: "4f1c".into(),
        sandbox_id: "c0ffee".into(),
    }
}

fn base_args() -> &'static str {
    "IgnoreUnknown=true;K8S_POD_NAMESPACE=web;K8S_POD_NAME=shop;K8S_POD_INFRA_CONTAINER_ID=c0ffee;K8S_POD_UID=4f1c"
}

fn delegate_cases() -> Vec<DelegateCase> {
    let case = |from, annotation, nads, want| DelegateCase {
        from,
        annotation,
        nads,
        devices: Vec::new(),
        runtime: Runtime::default(),
        want,
    };
    let all_caps = json!({"mac": true, "ips": true, "bandwidth": true, "portMappings": true,
                          "infinibandGUID": true, "deviceID": true, "CNIDeviceInfoFile": true});
    let rich = r#"[{"name":"fast","mac":"0a:11:22:33:44:55","ips":["192.0.2.20"],
        "infiniband-guid":"0a:11:22:33:44:55:66:77",
        "bandwidth":{"ingressRate":2048,"ingressBurst":1600,"egressRate":4096,"egressBurst":1600},
        "portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"},
                        {"hostPort":8000,"containerPort":8001,"protocol":"udp"}]}]"#;
    let rich_rc = json!({
        "mac": "0a:11:22:33:44:55", "ips": ["192.0.2.20"],
        "infinibandGUID": "0a:11:22:33:44:55:66:77",
        "bandwidth": {"ingressRate": 2048, "ingressBurst": 1600, "egressRate": 4096, "egressBurst": 1600},
        "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                         {"hostPort": 8000, "containerPort": 8001, "protocol": "udp"}]});
    vec![
        DelegateCase {
            devices: vec![("vendor.example/nic", vec!["0000:00:00.0"])],
            ..case(
                "conf_test assigns deviceID in delegated conf + assigns pciBusID in delegated conf",
                "nic",
                vec![("web", "nic", json!({"cniVersion": "1.0.0", "name": "nic", "type": "sriov"}), Some("vendor.example/nic"))],
                Ok(vec![json!({"ifname": "net1", "plugins": [
                    {"cniVersion": "1.0.0", "name": "nic", "type": "sriov",
                     "deviceID": "0000:00:00.0", "pciBusID": "0000:00:00.0"}]})]),
            )
        },
        DelegateCase {
            devices: vec![("vendor.example/nic", vec!["0000:00:00.1"])],
            ..case(
                "conf_test assigns deviceID in delegated conf list multiple plugins + pciBusID in conf list",
                "nic",
                vec![("web", "nic", json!({"cniVersion": "1.0.0", "name": "nic",
                    "plugins": [{"type": "sriov"}, {"type": "tuning"}]}), Some("vendor.example/nic"))],
                Ok(vec![json!({"plugins": [
                    {"cniVersion": "1.0.0", "name": "nic", "type": "sriov",
                     "deviceID": "0000:00:00.1", "pciBusID": "0000:00:00.1"},
                    {"cniVersion": "1.0.0", "name": "nic", "type": "tuning",
                     "deviceID": "0000:00:00.1", "pciBusID": "0000:00:00.1"}]})]),
            )
        },
        case(
            "conf_test add cni-args in config",
            r#"[{"name":"br","cni-args":{"color":"blue"}}]"#,
            vec![("web", "br", json!({"cniVersion": "1.0.0", "name": "br", "type": "bridge"}), None)],
            Ok(vec![json!({"plugins": [{"cniVersion": "1.0.0", "name": "br", "type": "bridge",
                "args": {"cni": {"color": "blue"}}}]})]),
        ),
        case(
            "conf_test add cni-args in config which has cni args already (merge case)",
            r#"[{"name":"br","cni-args":{"color":"green"}}]"#,
            vec![("web", "br", json!({"cniVersion": "1.0.0", "name": "br", "type": "bridge",
                "args": {"cni": {"shape": "round", "color": "blue"}}}), None)],
            Ok(vec![json!({"plugins": [{"cniVersion": "1.0.0", "name": "br", "type": "bridge",
                "args": {"cni": {"shape": "round", "color": "green"}}}]})]),
        ),
        case(
            "conf_test add cni-args in conflist",
            r#"[{"name":"br","cni-args":{"color":"blue"}}]"#,
            vec![("web", "br", json!({"cniVersion": "1.0.0", "name": "br",
                "plugins": [{"type": "bridge"}, {"type": "tuning"}]}), None)],
            Ok(vec![json!({"plugins": [
                {"cniVersion": "1.0.0", "name": "br", "type": "bridge", "args": {"cni": {"color": "blue"}}},
                {"cniVersion": "1.0.0", "name": "br", "type": "tuning", "args": {"cni": {"color": "blue"}}}]})]),
        ),
        case(
            "multus_cni100_test executes delegates with runtimeConfigs",
            rich,
            vec![("web", "fast", json!({"cniVersion": "1.0.0", "name": "fast", "type": "mynet",
                "capabilities": {"mac": true, "ips": true, "bandwidth": true, "portMappings": true}}), None)],
            Ok(vec![json!({"plugins": [{"cniVersion": "1.0.0", "name": "fast", "type": "mynet",
                "capabilities": {"mac": true, "ips": true, "bandwidth": true, "portMappings": true},
                "runtimeConfig": {"mac": "0a:11:22:33:44:55", "ips": ["192.0.2.20"],
                    "bandwidth": {"ingressRate": 2048, "ingressBurst": 1600, "egressRate": 4096, "egressBurst": 1600},
                    "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                                     {"hostPort": 8000, "containerPort": 8001, "protocol": "udp"}]}}],
                "cni_args": format!("{};MAC=0a:11:22:33:44:55;IP=192.0.2.20", base_args())})]),
        ),
        case(
            "conf_test test mergeCNIRuntimeConfig with delegate plugin (infinibandGUID too)",
            rich,
            vec![("web", "fast", json!({"cniVersion": "1.0.0", "name": "fast", "type": "ib-sriov",
                "capabilities": all_caps}), None)],
            Ok(vec![json!({"plugins": [{"cniVersion": "1.0.0", "name": "fast", "type": "ib-sriov",
                "capabilities": all_caps, "runtimeConfig": rich_rc}]})]),
        ),
        case(
            "libcni injectRuntimeConfig (via multus_cni100_test runtimeConfigs): undeclared capabilities are not passed",
            rich,
            vec![("web", "fast", json!({"cniVersion": "1.0.0", "name": "fast", "type": "mynet",
                "capabilities": {"bandwidth": true, "mac": false}}), None)],
            Ok(vec![json!({"plugins": [{"cniVersion": "1.0.0", "name": "fast", "type": "mynet",
                "capabilities": {"bandwidth": true, "mac": false},
                "runtimeConfig": {"bandwidth": {"ingressRate": 2048, "ingressBurst": 1600,
                    "egressRate": 4096, "egressBurst": 1600}}}]})]),
        ),
        DelegateCase {
            runtime: Runtime {
                port_mappings: vec![PortMapping { host_port: 8080, container_port: 80, protocol: "tcp".into(), host_ip: String::new() }],
                ..Runtime::default()
            },
            ..case(
                "multus_cni100_test ensure delegates get portmap runtime config (the pod's own portMappings)",
                "pm",
                vec![("web", "pm", json!({"cniVersion": "1.0.0", "name": "pm",
                    "plugins": [{"type": "firstPlugin", "capabilities": {"portMappings": true}}]}), None)],
                Ok(vec![json!({"plugins": [{"cniVersion": "1.0.0", "name": "pm", "type": "firstPlugin",
                    "capabilities": {"portMappings": true},
                    "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}}]})]),
            )
        },
        DelegateCase {
            runtime: Runtime {
                port_mappings: vec![PortMapping { host_port: 8080, container_port: 80, protocol: "tcp".into(), host_ip: String::new() }],
                ..Runtime::default()
            },
            ..case(
                "conf.go mergeCNIRuntimeConfig: a selection's portMappings replace the pod's",
                r#"[{"name":"pm","portMappings":[{"hostPort":9090,"containerPort":90}]}]"#,
                vec![("web", "pm", json!({"cniVersion": "1.0.0", "name": "pm", "type": "portmap",
                    "capabilities": {"portMappings": true}}), None)],
                Ok(vec![json!({"plugins": [{"cniVersion": "1.0.0", "name": "pm", "type": "portmap",
                    "capabilities": {"portMappings": true},
                    "runtimeConfig": {"portMappings": [{"hostPort": 9090, "containerPort": 90}]}}]})]),
            )
        },
        case(
            "k8sclient_test retrieves delegates from kubernetes using simple format annotation",
            "lan,storage",
            vec![
                ("web", "lan", json!({"cniVersion": "1.0.0", "name": "lan", "type": "mynet"}), None),
                ("web", "storage", json!({"cniVersion": "1.0.0", "name": "storage", "type": "mynet2"}), None),
                ("web", "unused", json!({"cniVersion": "1.0.0", "name": "unused", "type": "mynet3"}), None),
            ],
            Ok(vec![
                json!({"ifname": "net1", "plugins": [{"cniVersion": "1.0.0", "name": "lan", "type": "mynet"}]}),
                json!({"ifname": "net2", "plugins": [{"cniVersion": "1.0.0", "name": "storage", "type": "mynet2"}]}),
            ]),
        ),
        case(
            "k8sclient_test fails when the network does not exist",
            "lan,storage",
            vec![("web", "unused", json!({"cniVersion": "1.0.0", "name": "unused", "type": "mynet3"}), None)],
            Err("NetworkAttachmentDefinition web/lan does not exist"),
        ),
        case(
            "k8sclient_test retrieves delegates from kubernetes using JSON format annotation (other namespace)",
            r#"[{"name":"lan"},{"name":"mgmt","namespace":"ops"}]"#,
            vec![
                ("web", "lan", json!({"cniVersion": "1.0.0", "name": "lan", "type": "mynet"}), None),
                ("ops", "mgmt", json!({"cniVersion": "1.0.0", "name": "mgmt", "type": "mynet3"}), None),
            ],
            Ok(vec![
                json!({"ifname": "net1"}),
                json!({"ifname": "net2", "plugins": [{"cniVersion": "1.0.0", "name": "mgmt", "type": "mynet3"}]}),
            ]),
        ),
        case(
            "k8sclient_test injects network name into minimal thick plugin CNI config",
            "lan",
            vec![("web", "lan", json!({"cniVersion": "1.0.0", "type": "mynet"}), None)],
            Ok(vec![json!({"plugins": [{"cniVersion": "1.0.0", "name": "lan", "type": "mynet"}]})]),
        ),
        DelegateCase {
            devices: vec![("vendor.example/nic", vec!["0000:00:00.4"])],
            ..case(
                "conf.go LoadDelegateNetConf: Both RuntimeConfig and ResourceMap provide deviceID. Ignoring RuntimeConfig",
                r#"[{"name":"nic","deviceID":"0000:00:00.9"}]"#,
                vec![("web", "nic", json!({"cniVersion": "1.0.0", "name": "nic", "type": "sriov",
                    "capabilities": {"deviceID": true}}), Some("vendor.example/nic"))],
                Ok(vec![json!({"plugins": [{"cniVersion": "1.0.0", "name": "nic", "type": "sriov",
                    "capabilities": {"deviceID": true}, "deviceID": "0000:00:00.4", "pciBusID": "0000:00:00.4",
                    "runtimeConfig": {"deviceID": "0000:00:00.4"}}]})]),
            )
        },
        case(
            "conf.go delegateRuntimeConfig: a deviceID brings CNIDeviceInfoFile named after network, container and interface",
            r#"[{"name":"nic","deviceID":"0000:00:00.9","interface":"fast0"}]"#,
            vec![("web", "nic", json!({"cniVersion": "1.0.0", "name": "nic", "type": "sriov",
                "capabilities": {"deviceID": true, "CNIDeviceInfoFile": true}}), None)],
            Ok(vec![json!({"plugins": [{"cniVersion": "1.0.0", "name": "nic", "type": "sriov",
                "capabilities": {"deviceID": true, "CNIDeviceInfoFile": true},
                "runtimeConfig": {"deviceID": "0000:00:00.9",
                    "CNIDeviceInfoFile": "/var/run/k8s.cni.cncf.io/devinfo/cni/web-nic-c0ffee_fast0"}}]})]),
        ),
        DelegateCase {
            devices: vec![("vendor.example/nic", vec!["0000:03:02.3", "0000:03:02.0"])],
            ..case(
                "checkpoint_test DeviceIDs are sorted for deterministic order across callers",
                "nic,nic@nic2",
                vec![("web", "nic", json!({"cniVersion": "1.0.0", "name": "nic", "type": "sriov"}), Some("vendor.example/nic"))],
                Ok(vec![
                    json!({"ifname": "net1", "plugins": [{"cniVersion": "1.0.0", "name": "nic", "type": "sriov",
                        "deviceID": "0000:03:02.0", "pciBusID": "0000:03:02.0"}]}),
                    json!({"ifname": "nic2", "plugins": [{"cniVersion": "1.0.0", "name": "nic", "type": "sriov",
                        "deviceID": "0000:03:02.3", "pciBusID": "0000:03:02.3"}]}),
                ]),
            )
        },
        case(
            "conf_test CheckGatewayConfig: multus does not support ECMP for default-route",
            r#"[{"name":"lan","default-route":["203.0.113.1"]},{"name":"storage","default-route":["198.51.100.1"]}]"#,
            vec![
                ("web", "lan", json!({"cniVersion": "1.0.0", "name": "lan", "type": "mynet"}), None),
                ("web", "storage", json!({"cniVersion": "1.0.0", "name": "storage", "type": "mynet"}), None),
            ],
            Err("more than one IPv4 default-route gateway"),
        ),
        case(
            "conf_test test LoadDelegateNetConf keeps dual GatewayRequest (one per family is fine)",
            r#"[{"name":"lan","default-route":["203.0.113.1","fd00:10::1"]}]"#,
            vec![("web", "lan", json!({"cniVersion": "1.0.0", "name": "lan", "type": "mynet"}), None)],
            Ok(vec![json!({"ifname": "net1"})]),
        ),
        case(
            "multus.go DelegateAdd validateIfName: the interface already exists in the sandbox",
            "lan@eth0",
            vec![("web", "lan", json!({"cniVersion": "1.0.0", "name": "lan", "type": "mynet"}), None)],
            Err("interface eth0, which already exists"),
        ),
        case(
            "multus.go DelegateAdd validateIfName: a second network asks for the first one's interface",
            "lan@data0,storage@data0",
            vec![
                ("web", "lan", json!({"cniVersion": "1.0.0", "name": "lan", "type": "mynet"}), None),
                ("web", "storage", json!({"cniVersion": "1.0.0", "name": "storage", "type": "mynet"}), None),
            ],
            Err("interface data0 is used by both"),
        ),
        case(
            "libcni ValidateInterfaceName (multus runs delegates through libcni): a JSON interface longer than 15",
            r#"[{"name":"lan","interface":"a_much_too_long_name"}]"#,
            vec![("web", "lan", json!({"cniVersion": "1.0.0", "name": "lan", "type": "mynet"}), None)],
            Err("longer than Linux's 15"),
        ),
        case(
            "libcni ValidateNetworkName (multus runs delegates through libcni): a config name with a space",
            "lan",
            vec![("web", "lan", json!({"cniVersion": "1.0.0", "name": "my lan", "type": "mynet"}), None)],
            Err("not a valid CNI network name"),
        ),
        case(
            "k8sclient.go getKubernetesDelegate: an entry without a name finds no NetworkAttachmentDefinition",
            "lan,,storage",
            vec![
                ("web", "lan", json!({"cniVersion": "1.0.0", "name": "lan", "type": "mynet"}), None),
                ("web", "storage", json!({"cniVersion": "1.0.0", "name": "storage", "type": "mynet"}), None),
            ],
            Err("entry 2"),
        ),
        // CNI_ARGS
        case(
            "multus_cni040_test (thick plugin) CNI_ARGS: IgnoreUnknown, pod namespace, name, sandbox, UID",
            "lan",
            vec![("web", "lan", json!({"cniVersion": "1.0.0", "name": "lan", "type": "mynet"}), None)],
            Ok(vec![json!({"cni_args": base_args()})]),
        ),
        DelegateCase {
            runtime: Runtime {
                cni_args: Some("K8S_POD_NAME=other;K8S_POD_UID=;EXTRA=a=b;junk;".into()),
                ..Runtime::default()
            },
            ..case(
                "conf_test creates a valid CNI runtime config with K8s args passed via CNI_ARGS environment variable",
                "lan",
                vec![("web", "lan", json!({"cniVersion": "1.0.0", "name": "lan", "type": "mynet"}), None)],
                Ok(vec![json!({"cni_args": format!("{};K8S_POD_NAME=other;K8S_POD_UID=;EXTRA=a=b", base_args())})]),
            )
        },
        DelegateCase {
            runtime: Runtime {
                cni_args: Some("K8S_POD_NAME=shop;K8S_POD_NAMESPACE=web;K8S_POD_INFRA_CONTAINER_ID=c0ffee;K8S_POD_UID=4f1c;BLAH=x".into()),
                ..Runtime::default()
            },
            ..case(
                "conf_test creates a valid CNI runtime config with K8s args passed via CNI_ARGS (empty values filled in)",
                "lan",
                vec![("web", "lan", json!({"cniVersion": "1.0.0", "name": "lan", "type": "mynet"}), None)],
                Ok(vec![json!({"cni_args": format!("{};K8S_POD_NAME=shop;K8S_POD_NAMESPACE=web;K8S_POD_INFRA_CONTAINER_ID=c0ffee;K8S_POD_UID=4f1c;BLAH=x", base_args())})]),
            )
        },
        case(
            "multus.go DelegateAdd: MAC= and IP= appended to CNI_ARGS whatever the capabilities",
            r#"[{"name":"lan","mac":"0a:11:22:33:44:55","ips":["192.0.2.20/24","2001:db8::20/64"]}]"#,
            vec![("web", "lan", json!({"cniVersion": "1.0.0", "name": "lan", "type": "mynet"}), None)],
            Ok(vec![json!({"plugins": [{"cniVersion": "1.0.0", "name": "lan", "type": "mynet"}],
                "cni_args": format!("{};MAC=0a:11:22:33:44:55;IP=192.0.2.20/24,2001:db8::20/64", base_args())})]),
        ),
        case(
            "multus.go DelegateAdd: an empty ips list still gives IP= (IPRequest is not nil)",
            r#"[{"name":"lan","ips":[]}]"#,
            vec![("web", "lan", json!({"cniVersion": "1.0.0", "name": "lan", "type": "mynet",
                "capabilities": {"ips": true}}), None)],
            Ok(vec![json!({"plugins": [{"cniVersion": "1.0.0", "name": "lan", "type": "mynet",
                "capabilities": {"ips": true}}],
                "cni_args": format!("{};IP=", base_args())})]),
        ),
    ]
}

#[test]
fn multus_upstream_delegates() {
    let cases = delegate_cases();
    run(
        "delegates",
        &cases,
        |c| c.from,
        |c| {
            let nads: Vec<Nad> = c
                .nads
                .iter()
                .map(|(ns, name, config, resource)| Nad {
                    namespace: ns.to_string(),
                    name: name.to_string(),
                    config: config.to_string(),
                    resource_name: resource.map(str::to_string),
                })
                .collect();
            let mut devices = DeviceIds::new();
            for (r, ids) in &c.devices {
                devices.insert(r, ids.iter().copied());
            }
            let got = parse_networks(c.annotation, "web").and_then(|sels| {
                plan_with(
                    &pod(),
                    &c.runtime,
                    &sels,
                    |ns, name| {
                        nads.iter()
                            .find(|n| n.namespace == ns && n.name == name)
                            .cloned()
                    },
                    &mut devices,
                )
            });
            match (&c.want, got) {
                (Err(want), Err(e)) if e.to_string().contains(want) => Ok(()),
                (Err(want), Err(e)) => Err(format!(
                    "multus fails ({want}), secnet fails otherwise: {e}"
                )),
                (Err(want), Ok(_)) => Err(format!("multus fails ({want}), secnet plans it")),
                (Ok(_), Err(e)) => Err(format!("multus runs it, secnet fails: {e}")),
                (Ok(want), Ok(got)) => {
                    if want.len() != got.len() {
                        return Err(format!("{} delegates, multus {}", got.len(), want.len()));
                    }
                    for (w, d) in want.iter().zip(&got) {
                        let view = json!({"ifname": d.ifname, "plugins": d.plugins, "cni_args": d.cni_args});
                        for (key, value) in w.as_object().expect("object") {
                            if view[key] != *value {
                                return Err(format!("{key}: multus {value}, secnet {}", view[key]));
                            }
                        }
                    }
                    Ok(())
                }
            }
        },
    );
}

// ---- network-status -------------------------------------------------------------

struct StatusCase {
    from: &'static str,
    network: &'static str,
    default: bool,
    result: Value,
    device_info: Option<Value>,
    /// The statuses multus writes (as JSON), or `None` when it fails the ADD.
    want: Option<Value>,
}

fn status_cases() -> Vec<StatusCase> {
    let case = |from, default, result, want| StatusCase {
        from,
        network: "web/fast",
        default,
        result,
        device_info: None,
        want,
    };
    let one_iface = || {
        json!({"cniVersion": "1.0.0",
            "interfaces": [{"name": "fast0", "mac": "0a:58:c0:00:02:07", "sandbox": "/var/run/netns/shop", "mtu": 9000}],
            "ips": [{"address": "192.0.2.7/24"}, {"address": "2001:db8::7/64"}]})
    };
    let with_routes = |routes: Value| {
        let mut r = one_iface();
        r["routes"] = routes;
        r
    };
    let one_status = |gateway: Option<Value>| {
        let mut s = json!({"name": "web/fast", "interface": "fast0", "ips": ["192.0.2.7", "2001:db8::7"],
            "mac": "0a:58:c0:00:02:07", "mtu": 9000, "dns": {}});
        if let Some(g) = gateway {
            s["gateway"] = g;
        }
        json!([s])
    };
    let two_ifaces = || {
        json!({"cniVersion": "1.1.0",
            "interfaces": [
                {"name": "host-side", "mac": "0a:00:00:00:00:33"},
                {"name": "left0", "mac": "0a:00:00:00:00:01", "sandbox": "/var/run/netns/shop", "mtu": 1500},
                {"name": "right0", "mac": "0a:00:00:00:00:02", "sandbox": "/var/run/netns/shop", "mtu": 1500}],
            "ips": [{"address": "198.51.100.1/24", "interface": 1}, {"address": "198.51.100.2/24", "interface": 1},
                    {"address": "198.51.100.3/24", "interface": 2}],
            "dns": {"nameservers": ["192.0.2.53", "192.0.2.54"], "search": ["shop.example"], "options": ["ndots:3"]}})
    };
    let two_statuses = |first_default: bool| {
        let dns = json!({"nameservers": ["192.0.2.53", "192.0.2.54"], "search": ["shop.example"], "options": ["ndots:3"]});
        let mut first = json!({"name": "web/fast", "interface": "left0", "ips": ["198.51.100.1", "198.51.100.2"],
            "mac": "0a:00:00:00:00:01", "mtu": 1500, "dns": dns});
        if first_default {
            first["default"] = json!(true);
        }
        json!([first, {"name": "web/fast", "interface": "right0", "ips": ["198.51.100.3"],
            "mac": "0a:00:00:00:00:02", "mtu": 1500, "dns": dns}])
    };
    vec![
        case(
            "net-attach-def_test create network status from cni result",
            false,
            one_iface(),
            Some(one_status(None)),
        ),
        StatusCase {
            device_info: Some(json!({"type": "pci", "version": "1.1.0",
                "pci": {"pci-address": "0000:05:00.2", "pf-pci-address": "0000:05:00.0", "representor-device": "eth7"}})),
            ..case(
                "net-attach-def_test DeviceInfo is used as an attribute",
                false,
                one_iface(),
                Some({
                    let mut s = one_status(None);
                    s[0]["device-info"] = json!({"type": "pci", "version": "1.1.0",
                        "pci": {"pci-address": "0000:05:00.2", "pf-pci-address": "0000:05:00.0", "representor-device": "eth7"}});
                    s
                }),
            )
        },
        case(
            "net-attach-def_test The CNI results features routes with default route: report a gateway",
            false,
            with_routes(json!([{"dst": "0.0.0.0/0", "gw": "192.0.2.1"}])),
            Some(one_status(Some(json!(["192.0.2.1"])))),
        ),
        case(
            "net-attach-def_test the network status handles multiple default routes (one without dst)",
            false,
            with_routes(json!([{"dst": "0.0.0.0/0", "gw": "192.0.2.1"}, {"gw": "192.0.2.254"}])),
            Some(one_status(Some(json!(["192.0.2.1", "192.0.2.254"])))),
        ),
        case(
            "net-attach-def_test routes that are not the default route: no gateway",
            false,
            with_routes(json!([{"dst": "203.0.113.0/24", "gw": "192.0.2.1"}])),
            Some(one_status(None)),
        ),
        case(
            "net-attach-def.go isDefaultRoute: any spelling of ::/0",
            false,
            with_routes(
                json!([{"dst": "0:0::0/0", "gw": "2001:db8::1"}, {"dst": "::/0", "gw": "2001:db8:0:0::2"}]),
            ),
            Some(one_status(Some(json!(["2001:db8::1", "2001:db8::2"])))),
        ),
        case(
            "net-attach-def.go isDefaultRoute: the dst address decides, not its prefix length",
            false,
            with_routes(
                json!([{"dst": "0.0.0.0/8", "gw": "192.0.2.1"}, {"dst": "203.0.113.0/0", "gw": "192.0.2.2"},
                               {"dst": "::ffff:0.0.0.0/96", "gw": "::ffff:192.0.2.3"}]),
            ),
            Some(one_status(Some(json!(["192.0.2.1", "192.0.2.3"])))),
        ),
        case(
            "net-attach-def.go CreateNetworkStatus: a default route without gw is Go's nil IP",
            false,
            with_routes(json!([{"dst": "::/0"}])),
            Some(one_status(Some(json!(["<nil>"])))),
        ),
        case(
            "net-attach-def_test matches default=true when gateway is present for an interface",
            true,
            json!({"cniVersion": "1.0.0",
                "interfaces": [{"name": "0xaaa", "mac": "0a:00:00:00:00:a1"},
                    {"name": "eth0", "mac": "0a:00:00:00:00:a2", "sandbox": "/var/run/netns/shop"},
                    {"name": "0xbbb", "mac": "0a:00:00:00:00:a3"},
                    {"name": "alt-primary", "mac": "0a:00:00:00:00:a4", "sandbox": "/var/run/netns/shop"}],
                "ips": [{"address": "10.244.7.6/24", "interface": 1},
                        {"address": "10.99.1.3/24", "gateway": "10.99.1.1", "interface": 3}]}),
            Some(json!([
                {"name": "web/fast", "interface": "eth0", "ips": ["10.244.7.6"], "mac": "0a:00:00:00:00:a2", "dns": {}},
                {"name": "web/fast", "interface": "alt-primary", "ips": ["10.99.1.3"], "mac": "0a:00:00:00:00:a4",
                 "default": true, "dns": {}}])),
        ),
        case(
            "net-attach-def_test one sandbox interface is specified: IPs without index go to it",
            false,
            json!({"cniVersion": "1.0.0",
                "interfaces": [{"name": "eth0", "mac": "0A:BB:CC:DD:EE:01", "sandbox": "/var/run/netns/shop"}, {"name": "host"}],
                "ips": [{"address": "203.0.113.9/24"}]}),
            Some(
                json!([{"name": "web/fast", "interface": "eth0", "ips": ["203.0.113.9"], "mac": "0A:BB:CC:DD:EE:01", "dns": {}}]),
            ),
        ),
        case(
            "net-attach-def_test two sandbox interfaces are specified: IPs without index go to the last",
            false,
            json!({"cniVersion": "1.0.0",
                "interfaces": [{"name": "host"}, {"name": "eth0", "mac": "0a:bb:cc:dd:ee:01", "sandbox": "/a"},
                               {"name": "eth1", "mac": "0a:bb:cc:dd:ee:02", "sandbox": "/b"}],
                "ips": [{"address": "203.0.113.9/24"}]}),
            Some(
                json!([{"name": "web/fast", "interface": "eth0", "mac": "0a:bb:cc:dd:ee:01", "dns": {}},
                {"name": "web/fast", "interface": "eth1", "ips": ["203.0.113.9"], "mac": "0a:bb:cc:dd:ee:02", "dns": {}}]),
            ),
        ),
        case(
            "net-attach-def_test multiple interfaces, for a secondary network",
            false,
            two_ifaces(),
            Some(two_statuses(false)),
        ),
        case(
            "net-attach-def_test multiple interfaces, for the cluster default network",
            true,
            two_ifaces(),
            Some(two_statuses(true)),
        ),
        case(
            "net-attach-def_test a single interface which omits the sandbox info",
            true,
            json!({"cniVersion": "1.1.0", "interfaces": [{"name": "host"}],
                "ips": [{"address": "10.244.9.152/32"}, {"address": "fd10:244::c497/128"}]}),
            Some(
                json!([{"name": "web/fast", "ips": ["10.244.9.152", "fd10:244::c497"], "default": true, "dns": {}}]),
            ),
        ),
        case(
            "net-attach-def.go CreateNetworkStatuses: an IP indexed to a host-side interface is dropped",
            false,
            json!({"cniVersion": "1.0.0",
                "interfaces": [{"name": "veth1234", "mac": "0a:00:00:00:00:01"},
                               {"name": "net1", "mac": "0a:58:0a:02:00:05", "sandbox": "/var/run/netns/shop"}],
                "ips": [{"address": "10.2.0.5/24", "interface": 1}, {"address": "192.168.9.9/24", "interface": 0}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.2.0.1"}]}),
            Some(
                json!([{"name": "web/fast", "interface": "net1", "ips": ["10.2.0.5"], "mac": "0a:58:0a:02:00:05",
                "dns": {}, "gateway": ["10.2.0.1"]}]),
            ),
        ),
        case(
            "conf_test can loadnetworkstatus (a 0.2.0 result has no interfaces: no status)",
            false,
            json!({"cniVersion": "0.2.0", "ip4": {"ip": "192.0.2.2/24"}}),
            Some(json!([])),
        ),
        case(
            "conf_test cannot loadnetworkstatus given incompatible CNIVersion",
            false,
            json!({"cniVersion": "1.2.3", "ip4": {"ip": "192.0.2.2/24"}}),
            None,
        ),
        case(
            "multus_cni100_test executes delegates (plugin without interface): an IPAM-only result has no status",
            false,
            json!({"cniVersion": "1.0.0", "ips": [{"address": "192.0.2.3/24"}]}),
            Some(json!([])),
        ),
        case(
            "net-attach-def.go CreateNetworkStatus: IPs printed as Go prints them (IPv4-mapped as IPv4)",
            false,
            json!({"cniVersion": "0.4.0",
                "interfaces": [{"name": "net1", "sandbox": "/var/run/netns/shop"}],
                "ips": [{"version": "6", "address": "::ffff:192.0.2.8/120", "interface": 0},
                        {"version": "6", "address": "2001:0db8:0000::0008/64", "interface": 0}]}),
            Some(
                json!([{"name": "web/fast", "interface": "net1", "ips": ["192.0.2.8", "2001:db8::8"], "dns": {}}]),
            ),
        ),
    ]
}

#[test]
fn multus_upstream_network_status() {
    let cases = status_cases();
    run(
        "network-status",
        &cases,
        |c| c.from,
        |c| {
            let got = status::from_result(c.network, &c.result, c.default, c.device_info.as_ref());
            match (&c.want, got) {
                (None, Err(_)) => Ok(()),
                (None, Ok(s)) => Err(format!(
                    "multus fails the ADD, secnet writes {}",
                    status::annotation(&s)
                )),
                (Some(_), Err(e)) => Err(format!("multus writes a status, secnet fails: {e}")),
                (Some(want), Ok(s)) => {
                    let text = status::annotation(&s);
                    let got: Value = serde_json::from_str(&text).expect("annotation is JSON");
                    (got == *want)
                        .then_some(())
                        .ok_or_else(|| format!("multus writes {want}, secnet {got}"))
                }
            }
        },
    );
}

/// The bytes, not just the data: the client marshals each status indented with
/// four spaces and joins them with "," inside "[...]" (net-attach-def.go
/// SetNetworkStatus), escaping `<`/`>` as Go does.
#[test]
fn multus_upstream_network_status_bytes() {
    let statuses = vec![
        NetworkStatus {
            name: "cni0".into(),
            interface: Some("eth0".into()),
            ips: vec!["10.244.1.2".into()],
            mac: Some("0a:79:27:01:7c:ce".into()),
            mtu: Some(1500),
            default: true,
            dns: Some(Default::default()),
            ..Default::default()
        },
        NetworkStatus {
            name: "web/fast".into(),
            interface: Some("net1".into()),
            gateway: vec!["<nil>".into()],
            dns: Some(Default::default()),
            ..Default::default()
        },
    ];
    // As the NAD client writes it (checked against the Go client).
    let want = "[{\n    \"name\": \"cni0\",\n    \"interface\": \"eth0\",\n    \"ips\": [\n        \"10.244.1.2\"\n    ],\n    \"mac\": \"0a:79:27:01:7c:ce\",\n    \"mtu\": 1500,\n    \"default\": true,\n    \"dns\": {}\n},{\n    \"name\": \"web/fast\",\n    \"interface\": \"net1\",\n    \"dns\": {},\n    \"gateway\": [\n        \"\\u003cnil\\u003e\"\n    ]\n}]";
    assert_eq!(status::annotation(&statuses), want);
    assert_eq!(status::parse_annotation(want).unwrap(), statuses);
}

// ---- reading real multus annotations -------------------------------------------------

/// (interface, mac, ips, gateway, default) of one status as the client reads it.
type ReadStatus = (
    &'static str,
    &'static str,
    Vec<&'static str>,
    Vec<&'static str>,
    bool,
);

struct ReadCase {
    from: &'static str,
    text: &'static str,
    /// The statuses, or `None` when the client's `GetNetworkStatus` fails.
    want: Option<Vec<ReadStatus>>,
}

fn read_cases() -> Vec<ReadCase> {
    vec![
        ReadCase {
            from: "net-attach-def_test set network status into pod (what SetNetworkStatus wrote, read back)",
            text: "[{\n    \"name\": \"cni0\",\n    \"interface\": \"eth0\",\n    \"ips\": [\n        \"10.244.1.2\"\n    ],\n    \"mac\": \"0a:79:27:01:7c:ce\",\n    \"mtu\": 1500,\n    \"dns\": {}\n},{\n    \"name\": \"web/lan\",\n    \"interface\": \"net1\",\n    \"ips\": [\n        \"192.0.2.1\"\n    ],\n    \"mac\": \"0a:0e:fa:63:95:f9\",\n    \"dns\": {}\n}]",
            want: Some(vec![
                (
                    "eth0",
                    "0a:79:27:01:7c:ce",
                    vec!["10.244.1.2"],
                    vec![],
                    false,
                ),
                (
                    "net1",
                    "0a:0e:fa:63:95:f9",
                    vec!["192.0.2.1"],
                    vec![],
                    false,
                ),
            ]),
        },
        ReadCase {
            from: "net-attach-def.go NetworkStatus: a multus annotation with gateway, device-info and default",
            text: r#"[{"name":"kindnet","interface":"eth0","ips":["10.244.0.7"],"mac":"0a:58:0a:f4:00:07","default":true,"dns":{},"gateway":["10.244.0.1"]},
                     {"name":"web/sriov","interface":"net1","ips":["192.0.2.7","2001:db8::7"],"mac":"0a:11:22:33:44:55","mtu":9000,
                      "dns":{"nameservers":["192.0.2.53"]},"device-info":{"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:03:00.1"}},
                      "gateway":["192.0.2.1","2001:db8::1"]}]"#,
            want: Some(vec![
                (
                    "eth0",
                    "0a:58:0a:f4:00:07",
                    vec!["10.244.0.7"],
                    vec!["10.244.0.1"],
                    true,
                ),
                (
                    "net1",
                    "0a:11:22:33:44:55",
                    vec!["192.0.2.7", "2001:db8::7"],
                    vec!["192.0.2.1", "2001:db8::1"],
                    false,
                ),
            ]),
        },
        ReadCase {
            from: "net-attach-def.go GetNetworkStatus: missing and null fields, unknown keys",
            text: r#"[{"name":"web/lan","ips":null,"default":null,"dns":null,"future-field":{"x":1}},{"interface":"net2"}]"#,
            want: Some(vec![
                ("", "", vec![], vec![], false),
                ("net2", "", vec![], vec![], false),
            ]),
        },
        ReadCase {
            from: "net-attach-def.go GetNetworkStatus: a status that is not a list fails",
            text: r#"{"name":"web/lan"}"#,
            want: None,
        },
        ReadCase {
            from: "net-attach-def.go GetNetworkStatus: a field of the wrong type fails",
            text: r#"[{"name":"web/lan","mtu":"jumbo"}]"#,
            want: None,
        },
    ]
}

#[test]
fn multus_upstream_read_annotations() {
    let cases = read_cases();
    run(
        "reading network-status",
        &cases,
        |c| c.from,
        |c| match (&c.want, status::parse_annotation(c.text)) {
            (None, Err(_)) => Ok(()),
            (None, Ok(s)) => Err(format!("the client fails, secnet reads {s:?}")),
            (Some(_), Err(e)) => Err(format!("the client reads it, secnet fails: {e}")),
            (Some(want), Ok(got)) => {
                let got: Vec<_> = got
                    .iter()
                    .map(|s| {
                        (
                            s.interface.clone().unwrap_or_default(),
                            s.mac.clone().unwrap_or_default(),
                            s.ips.clone(),
                            s.gateway.clone(),
                            s.default,
                        )
                    })
                    .collect();
                let want: Vec<_> = want
                    .iter()
                    .map(|(i, m, ips, gw, d)| {
                        (
                            i.to_string(),
                            m.to_string(),
                            ips.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                            gw.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                            *d,
                        )
                    })
                    .collect();
                (got == want)
                    .then_some(())
                    .ok_or_else(|| format!("the client reads {want:?}, secnet {got:?}"))
            }
        },
    );
}

/// Enough cases to stand for multus: at least 50 over the tables.
#[test]
fn multus_upstream_case_count() {
    let n = parse_cases().len()
        + delegate_cases().len()
        + status_cases().len()
        + read_cases().len()
        + 1;
    assert!(n >= 50, "only {n} upstream cases");
}
