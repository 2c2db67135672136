//! Test fixtures: a node namespace with a veth lower device, a per-test device-plugin
//! directory, the kubelet double on it, and the plugin process inside the node.
//! Everything is removed on drop, also when a test fails.

#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use secnet::kubelet::DeviceManager;
use secnet::lab::{Lab, Ns};

/// The plugin binary: `MACVTAP_DEVICEPLUGIN_BIN` if set (to measure another build),
/// else the bundled one beside this test or example (target/<profile>/).
pub fn bin() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("MACVTAP_DEVICEPLUGIN_BIN") {
        return path.into();
    }
    // target/<profile>/examples/<example> → target/<profile>/macvtap-deviceplugin
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("exe dir");
    let profile = if dir.ends_with("examples") || dir.ends_with("deps") {
        dir.parent().expect("profile dir")
    } else {
        dir
    };
    let path = profile.join("macvtap-deviceplugin");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build --workspace --bins` (or set MACVTAP_DEVICEPLUGIN_BIN)",
        path.display()
    );
    path
}
pub const PREFIX: &str = "macvtap.network.kubevirt.io";

/// The plugin process, running in a node namespace; killed on drop.
pub struct Plugin {
    child: Child,
    log: PathBuf,
}

impl Plugin {
    /// Starts the plugin in `node` with `DP_MACVTAP_CONF=config` (when given).
    pub fn spawn(node: &Ns, dir: &Path, config: Option<&str>, args: &[&str], log: &Path) -> Plugin {
        let ns = node.open().expect("open node netns");
        let log_file = std::fs::File::create(log).expect("create plugin log");
        let mut cmd = Command::new(bin());
        cmd.env_clear()
            .env("RUST_LOG", "info")
            .arg("--device-plugin-dir")
            .arg(dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("dup log"))
            .stderr(log_file);
        if let Some(config) = config {
            cmd.env("DP_MACVTAP_CONF", config);
        }
        let fd = ns.raw_fd();
        // SAFETY: setns is async-signal-safe; the child only enters the namespace.
        unsafe {
            cmd.pre_exec(move || {
                if nix::libc::setns(fd, nix::libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn macvtap-deviceplugin");
        drop(ns);
        Plugin {
            child,
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status if the process ends within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let pid = nix::unistd::Pid::from_raw(self.pid());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        self.wait_exit(timeout)
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- macvtap-deviceplugin log ---\n{}", self.logs());
        }
    }
}

/// A node namespace with lower device `ens33` (a veth to a peer namespace), a
/// device-plugin directory, and the kubelet double serving on it. Field order is
/// drop order: plugin, kubelet, directory, namespaces.
pub struct Node {
    pub plugin: Option<Plugin>,
    pub kubelet: DeviceManager,
    pub dir: secnet::lab::ScratchDir,
    pub lab: Lab,
    pub node: Ns,
    pub peer: Ns,
}

impl Node {
    pub fn new() -> Node {
        let mut lab = Lab::new();
        let node = lab.netns("node").expect("node netns");
        let peer = lab.netns("peer").expect("peer netns");
        lab.veth(&node, "ens33", &peer, "peer0")
            .expect("lower veth");
        // Named after the run, like its namespaces, so a killed run's is told apart.
        let dir = secnet::lab::ScratchDir::new(&format!("{}-dp", lab.run_id)).expect("scratch dir");
        let kubelet = DeviceManager::start(dir.path()).expect("kubelet double");
        Node {
            plugin: None,
            kubelet,
            dir,
            lab,
            node,
            peer,
        }
    }

    pub fn start_plugin(&mut self, config: Option<&str>, args: &[&str]) -> &mut Plugin {
        let log = self.dir.path().join("plugin.log");
        let plugin = Plugin::spawn(&self.node, self.dir.path(), config, args, &log);
        self.plugin.insert(plugin)
    }

    pub fn plugin(&mut self) -> &mut Plugin {
        self.plugin.as_mut().expect("plugin started")
    }

    pub fn ip(&self, args: &[&str]) -> String {
        self.lab
            .ip(&self.node, args)
            .unwrap_or_else(|e| panic!("ip {args:?}: {e}"))
    }

    pub fn socket(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{PREFIX}_{name}"))
    }
}

pub fn resource(name: &str) -> String {
    format!("{PREFIX}/{name}")
}

pub fn config(name: &str, lower: &str, extra: &str) -> String {
    format!(r#"[{{"name": "{name}", "lowerDevice": "{lower}"{extra}}}]"#)
}
