//! Start-up: every config mistake stops the plugin with a clear error before it
//! serves anything; auto-discovery follows links as they come and go.

#[path = "plugins/macvtap_deviceplugin.rs"]
mod common;

use std::time::Duration;

use common::{Node, resource};
use deviceplugin_api::{HEALTHY, UNHEALTHY};

const BOUND: Duration = Duration::from_secs(5);

/// Runs the plugin with `conf` and expects exit code 1 with all of `expected` in its
/// output, no socket, and no registration.
async fn rejects(conf: Option<&str>, args: &[&str], expected: &[&str]) {
    let mut n = Node::new();
    let plugin = n.start_plugin(conf, args);
    let status = plugin.wait_exit(BOUND).expect("exits at start-up");
    let logs = plugin.logs();
    assert_eq!(status.code(), Some(1), "{conf:?}: {logs}");
    for want in expected {
        assert!(
            logs.contains(want),
            "{conf:?}: missing {want:?} in:\n{logs}"
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(n.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("macvtap.network.kubevirt.io_"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(n.kubelet.snapshot().registrations.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_stop_the_plugin_at_start_up() {
    if !secnet::prereq::require_root("config_errors_stop_the_plugin_at_start_up") {
        return;
    }
    // The seed document's second ConfigMap: `master` and a trailing comma.
    let seed = "[\n    {\n        \"name\"     : \"dataplane\",\n        \"master\"   : \"ens33\",\n        \"mode\"     : \"bridge\",\n        \"capacity\" : 50\n    },\n]\n";
    rejects(
        Some(seed),
        &[],
        &[
            "trailing comma at line 7 column 6",
            "    },",
            "remove the comma",
        ],
    )
    .await;
    let cases: &[(&str, &[&str])] = &[
        (
            r#"[{"name": "dataplane", "lowerDevice": "ens33", "capcity": 5}]"#,
            &[
                "entry 1 (\"dataplane\")",
                "field \"capcity\"",
                "unknown key",
                "fix:",
            ],
        ),
        (
            r#"[{"name": "dataplane", "lowerDevice": "ens33", "mode": "passthrough"}]"#,
            &[
                "field \"mode\"",
                "unknown mode \"passthrough\"",
                "\"private\", \"vepa\"",
            ],
        ),
        (
            r#"[{"name": "a", "lowerDevice": "ens33"}, {"name": "a", "lowerDevice": "ens33"}]"#,
            &["entry 2 (\"a\")", "already the name of entry 1"],
        ),
        (
            r#"[{"name": "dataplane", "lowerDevice": "ens33-with-a-long-name"}]"#,
            &["field \"lowerDevice\"", "22 characters", "(15)"],
        ),
        (
            r#"[{"name": "dataplane", "lowerDevice": "ens33", "capacity": 0}]"#,
            &[
                "field \"capacity\"",
                "0 is not a usable capacity",
                "from 1 to",
            ],
        ),
        (
            r#"[{"name": "dataplane", "lowerDevice": "ens33", "capacity": -5}]"#,
            &["field \"capacity\"", "-5 is not a usable capacity"],
        ),
        (r#"{"name": "dataplane"}"#, &["expected a JSON array"]),
    ];
    for (conf, expected) in cases {
        rejects(Some(conf), &[], expected).await;
    }
    rejects(
        None,
        &[],
        &["neither --config FILE nor DP_MACVTAP_CONF is set"],
    )
    .await;
    rejects(
        None,
        &["--config", "/nonexistent/macvtap.json"],
        &["/nonexistent/macvtap.json"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_capacity_defaults_to_100() {
    if !secnet::prereq::require_root("missing_capacity_defaults_to_100") {
        return;
    }
    let mut n = Node::new();
    n.start_plugin(
        Some(r#"[{"name": "dataplane", "lowerDevice": "ens33"}]"#),
        &[],
    );
    n.kubelet
        .wait_for_devices(&resource("dataplane"), 100, HEALTHY, BOUND)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_discovery_follows_links_and_survives_churn() {
    if !secnet::prereq::require_root("auto_discovery_follows_links_and_survives_churn") {
        return;
    }
    let mut n = Node::new();
    // Upstream discovers only physical devices and bonds, neither of which a
    // namespace can create here; --discover-kinds veth makes the veths count.
    n.start_plugin(Some("[]"), &["--discover-kinds", "veth"]);
    n.kubelet
        .wait_for_devices(&resource("ens33"), 100, HEALTHY, BOUND)
        .await
        .unwrap();

    // A new link becomes a resource; its down state shows as Unhealthy.
    n.ip(&[
        "link", "add", "uplink1", "type", "veth", "peer", "name", "uplink1p",
    ]);
    n.kubelet
        .wait_for_devices(&resource("uplink1"), 100, UNHEALTHY, BOUND)
        .await
        .unwrap();
    n.kubelet
        .wait_for_devices(&resource("uplink1p"), 100, UNHEALTHY, BOUND)
        .await
        .unwrap();
    n.ip(&["link", "set", "uplink1", "up"]);
    n.ip(&["link", "set", "uplink1p", "up"]);
    n.kubelet
        .wait_for_devices(&resource("uplink1"), 100, HEALTHY, BOUND)
        .await
        .unwrap();
    let socket = n.socket("uplink1");
    assert!(socket.exists());

    // A link that goes away takes its resource (socket, stream) with it.
    n.ip(&["link", "del", "uplink1"]);
    n.kubelet
        .wait_until("uplink1's stream to end", BOUND, |s| {
            s.resource(&resource("uplink1"))
                .filter(|r| !r.streaming)
                .map(|_| ())
        })
        .await
        .unwrap();
    assert!(!socket.exists(), "socket of a vanished link removed");

    // Churn: links appearing and vanishing quickly must not crash the plugin.
    for i in 0..15 {
        let name = format!("churn{i}");
        n.ip(&[
            "link",
            "add",
            &name,
            "type",
            "veth",
            "peer",
            "name",
            &format!("{name}p"),
        ]);
        n.ip(&["link", "del", &name]);
    }
    n.ip(&[
        "link", "add", "last", "type", "veth", "peer", "name", "lastp",
    ]);
    n.kubelet
        .wait_for_devices(&resource("last"), 100, UNHEALTHY, BOUND)
        .await
        .unwrap();
    assert!(n.plugin().is_running(), "{}", n.plugin().logs());
    // Macvtaps made by Allocate are never discovered as lower devices.
    n.kubelet
        .allocate(&resource("ens33"), &["ens33Mvp0".to_string()])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let snapshot = n.kubelet.snapshot();
    assert!(
        snapshot.resources.keys().all(|r| !r.contains("/mvt")),
        "{:?}",
        snapshot.resources.keys()
    );
    let status = n.plugin().terminate(BOUND).expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0));
    let leftovers: Vec<_> = std::fs::read_dir(n.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("macvtap.network.kubevirt.io_"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Registration must follow within 1 s once both the plugin and a kubelet that answers
/// exist, in whatever order and however late they appear.
const REGISTER_WITHIN: Duration = Duration::from_secs(1);

async fn registered_within(n: &Node, since: std::time::Instant) -> Duration {
    let reg = n
        .kubelet
        .wait_for_registration(&resource("ens33"), since, BOUND)
        .await
        .unwrap();
    reg.at - since
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_when_the_kubelet_comes_after_the_plugin() {
    if !secnet::prereq::require_root("registers_when_the_kubelet_comes_after_the_plugin") {
        return;
    }
    let mut n = Node::new();
    n.kubelet.go_away().await.unwrap();
    n.start_plugin(Some(&common::config("ens33", "ens33", "")), &[]);
    // The plugin serves and waits; the kubelet shows up much later.
    let socket = n.socket("ens33");
    let deadline = std::time::Instant::now() + BOUND;
    while !socket.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            n.plugin().logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let since = std::time::Instant::now();
    n.kubelet.serve_again().unwrap();
    let took = registered_within(&n, since).await;
    assert!(
        took < REGISTER_WITHIN,
        "registered {took:?} after kubelet.sock appeared"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_at_once_when_the_kubelet_is_there_first() {
    if !secnet::prereq::require_root("registers_at_once_when_the_kubelet_is_there_first") {
        return;
    }
    let mut n = Node::new();
    let since = std::time::Instant::now();
    n.start_plugin(Some(&common::config("ens33", "ens33", "")), &[]);
    let took = registered_within(&n, since).await;
    assert!(took < REGISTER_WITHIN, "registered {took:?} after start");
}

/// A `kubelet.sock` that exists long before anyone listens on it (a dead kubelet's, or
/// one slow to start): connections are refused, the plugin keeps trying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_when_kubelet_sock_exists_before_it_listens() {
    if !secnet::prereq::require_root("registers_when_kubelet_sock_exists_before_it_listens") {
        return;
    }
    let mut n = Node::new();
    n.kubelet.go_away().await.unwrap();
    // A socket file nobody listens on (what a dead kubelet leaves behind).
    let path = n.kubelet.kubelet_socket();
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    n.start_plugin(Some(&common::config("ens33", "ens33", "")), &[]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(n.kubelet.snapshot().registrations.is_empty());
    let since = std::time::Instant::now();
    n.kubelet.serve_again().unwrap();
    let took = registered_within(&n, since).await;
    assert!(
        took < REGISTER_WITHIN,
        "registered {took:?} after the kubelet listened"
    );
    assert!(n.plugin().is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_on_its_own_when_the_kubelet_refuses_register() {
    if !secnet::prereq::require_root("retries_on_its_own_when_the_kubelet_refuses_register") {
        return;
    }
    let mut n = Node::new();
    n.kubelet.refuse_registrations(3);
    let since = std::time::Instant::now();
    n.start_plugin(Some(&common::config("ens33", "ens33", "")), &[]);
    let took = registered_within(&n, since).await;
    assert!(took < REGISTER_WITHIN, "registered {took:?} after start");
    let logs = n.plugin().logs();
    assert!(
        logs.contains("refused on purpose") && logs.contains("retrying"),
        "the first refusal is logged:\n{logs}"
    );
    // Exactly one registration got through: the three refused ones left no trace.
    assert_eq!(n.kubelet.snapshot().registrations.len(), 1);
}

fn many(n: usize) -> String {
    let list: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"name":"r{i}","lowerDevice":"ens33","capacity":1}}"#))
        .collect();
    format!("[{}]", list.join(","))
}

fn plugin_sockets(n: &Node) -> Vec<String> {
    std::fs::read_dir(n.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("macvtap.network.kubevirt.io_"))
        .collect()
}

/// Sockets are 0600 even when the plugin (and the kubelet) run with umask 000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_are_0600_at_umask_000() {
    use std::os::unix::fs::PermissionsExt;
    if !secnet::prereq::require_root("sockets_are_0600_at_umask_000") {
        return;
    }
    // nextest runs every test in its own process: the umask is this test's alone.
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let mut n = Node::new();
    let since = std::time::Instant::now();
    n.start_plugin(Some(&common::config("ens33", "ens33", "")), &[]);
    registered_within(&n, since).await;
    for path in [n.socket("ens33"), n.kubelet.kubelet_socket()] {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }
}

/// SIGTERM at any moment of start-up: a prompt exit 0, every socket it made removed.
/// (A signal that lands before `main` runs kills the process by the kernel's default,
/// before it has made or logged anything: that is clean too, and told apart by the
/// empty log.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_start_up_stops_cleanly() {
    use std::os::unix::process::ExitStatusExt;
    if !secnet::prereq::require_root("sigterm_during_start_up_stops_cleanly") {
        return;
    }
    let conf = many(macvtap_deviceplugin::config::MAX_RESOURCES);
    let mut handled = 0;
    for delay_ms in [0, 3, 10, 25, 60, 150] {
        let mut n = Node::new();
        let plugin = n.start_plugin(Some(&conf), &[]);
        std::thread::sleep(Duration::from_millis(delay_ms));
        let sent = std::time::Instant::now();
        let status = plugin.terminate(Duration::from_secs(3)).expect("exits");
        let took = sent.elapsed();
        let logs = plugin.logs();
        match (status.code(), status.signal()) {
            (Some(0), _) => {
                assert!(logs.contains("SIGTERM: stopping"), "{logs}");
                handled += 1;
            }
            (None, Some(15)) => assert!(logs.is_empty(), "killed after it started:\n{logs}"),
            other => panic!("SIGTERM after {delay_ms} ms: {other:?}\n{logs}"),
        }
        assert!(
            took < Duration::from_secs(2),
            "SIGTERM after {delay_ms} ms: exit took {took:?}"
        );
        let left = plugin_sockets(&n);
        assert!(
            left.is_empty(),
            "after {delay_ms} ms: {} sockets left",
            left.len()
        );
    }
    assert!(
        handled >= 3,
        "only {handled} stops went through the handler"
    );
}

/// A large config gives a log that grows with the config, never with its square: no
/// line lists every resource; 20,000 entries (over 1 MiB) are refused in a few lines,
/// without reading the file whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_stay_bounded_for_large_configs() {
    if !secnet::prereq::require_root("logs_stay_bounded_for_large_configs") {
        return;
    }
    let max = macvtap_deviceplugin::config::MAX_RESOURCES;
    let mut n = Node::new();
    let since = std::time::Instant::now();
    n.start_plugin(Some(&many(max)), &[]);
    n.kubelet
        .wait_for_registration(&resource(&format!("r{}", max - 1)), since, BOUND)
        .await
        .unwrap();
    let plugin = n.plugin();
    plugin.terminate(BOUND);
    let logs = plugin.logs();
    let longest = logs.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 600, "a line of {longest} bytes");
    let most = logs
        .lines()
        .map(|l| l.matches("macvtap.network.kubevirt.io/r").count())
        .max()
        .unwrap_or(0);
    assert!(most <= 4, "a line names {most} resources");
    // Serving, registered, stopped: a few lines per resource, plus a few for the process.
    // A registration the loaded kubelet double did not answer in time is said once per
    // resource (then every ~10 s): counted apart, it may not exceed one per resource.
    let retries = logs.lines().filter(|l| l.contains("; retrying")).count();
    let lines = logs.lines().count() - retries;
    assert!(
        lines <= max * 4 + 20,
        "{lines} log lines (besides {retries} retries) for {max} resources"
    );
    assert!(retries <= max, "{retries} retry lines for {max} resources");

    let mut n = Node::new();
    // As a file: one environment string may not exceed 128 KiB.
    let file = n.dir.path().join("huge.json");
    std::fs::write(&file, many(20_000)).unwrap();
    let plugin = n.start_plugin(None, &["--config", file.to_str().unwrap()]);
    let status = plugin.wait_exit(BOUND).expect("refused at start-up");
    let logs = plugin.logs();
    assert_eq!(status.code(), Some(1), "{logs}");
    assert!(logs.contains("more than 1048576 bytes"), "{logs}");
    assert!(logs.len() < 2000, "{} bytes of log", logs.len());
}
