//! The implementation under test, chosen per plugin: the bundled binaries by
//! default, a whole directory of CNIs (`--cni-bin-dir`), and single binaries
//! (`--plugin macvtap=PATH`, repeatable) on top of either.
//!
//! Rules: a `--plugin` wins over the directory; a CNI missing from the directory is
//! missing (the scenarios that use it fail naming the directory, the others run);
//! the device plugin is `--device-plugin CMD` or `--plugin macvtap-deviceplugin=PATH`,
//! else the directory's `macvtap-deviceplugin` when it has one (a CNI directory
//! usually has none), else the bundled one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

// Asking a plugin binary what it claims is the CNI runtime's job (`cni::version`).
pub use crate::cni::version::{cni_versions, preferred_version};

/// The CNI plugins secnet's scenarios call by type.
pub const CNIS: [&str; 2] = ["macvtap", "ovs"];
/// The device plugin the seed's DaemonSet runs.
pub const DEVICE_PLUGIN: &str = "macvtap-deviceplugin";

/// What is wrong with the chosen implementation; the user's mistakes name the flag.
#[derive(Debug, thiserror::Error)]
pub enum ImplementationError {
    #[error("--plugin {arg:?}: expected NAME=PATH, e.g. macvtap=/opt/cni/bin/macvtap")]
    PluginSyntax { arg: String },
    #[error("--plugin {arg:?}: unknown plugin {name:?}; the plugins are {}, {DEVICE_PLUGIN}", CNIS.join(", "))]
    UnknownPlugin { arg: String, name: String },
    #[error("--plugin {arg:?}: the path is empty")]
    EmptyPath { arg: String },
    #[error(
        "{flag} {}: not a directory; point it at the directory holding your macvtap/ovs CNI binaries",
        dir.display()
    )]
    NotADirectory { flag: &'static str, dir: PathBuf },
    #[error(
        "{flag} {name}={}: no such file; give the path of the {name} binary to put under test",
        path.display()
    )]
    NoSuchFile {
        flag: &'static str,
        name: String,
        path: PathBuf,
    },
    #[error("{flag} {name}=… is given twice; give it once")]
    GivenTwice { flag: &'static str, name: String },
    #[error("--device-plugin and {flag} {DEVICE_PLUGIN}=… both pick the device plugin; give one")]
    TwoDevicePlugins { flag: &'static str },
    #[error("failed to create {}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to resolve {}: {source}", path.display())]
    Canonicalize {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to link {} to {}: {source}", link.display(), target.display())]
    Link {
        link: PathBuf,
        target: PathBuf,
        source: std::io::Error,
    },
}

/// The flags a choice came from, named in its errors: `conform`'s, or one side's of
/// an A/B run (`compare`, `bench`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    pub(crate) bin_dir: &'static str,
    pub(crate) plugin: &'static str,
}

impl Flags {
    pub const CONFORM: Flags = Flags {
        bin_dir: "--cni-bin-dir",
        plugin: "--plugin",
    };
    pub const A: Flags = Flags {
        bin_dir: "--a-bin-dir",
        plugin: "--a-plugin",
    };
    pub const B: Flags = Flags {
        bin_dir: "--b-bin-dir",
        plugin: "--b-plugin",
    };
}

impl Default for Flags {
    fn default() -> Self {
        Flags::CONFORM
    }
}

/// What the command line picked (before defaults are filled in).
#[derive(Debug, Clone, Default)]
pub struct Choice {
    pub cni_bin_dir: Option<PathBuf>,
    /// `--device-plugin CMD` (program and arguments).
    pub device_plugin: Option<Vec<String>>,
    /// `--plugin NAME=PATH`, in the order given.
    pub plugins: Vec<(String, PathBuf)>,
    /// The flags the fields above came from.
    pub flags: Flags,
}

/// Parses one `--plugin NAME=PATH`.
pub fn parse_plugin(arg: &str) -> Result<(String, PathBuf), ImplementationError> {
    let (name, path) = arg
        .split_once('=')
        .ok_or_else(|| ImplementationError::PluginSyntax { arg: arg.into() })?;
    if !CNIS.contains(&name) && name != DEVICE_PLUGIN {
        return Err(ImplementationError::UnknownPlugin {
            arg: arg.into(),
            name: name.into(),
        });
    }
    if path.is_empty() {
        return Err(ImplementationError::EmptyPath { arg: arg.into() });
    }
    Ok((name.to_string(), PathBuf::from(path)))
}

/// The implementation a run puts under test, resolved to files.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The directory the CNIs not picked one by one come from.
    pub(crate) cni_bin_dir: PathBuf,
    /// CNIs picked one by one (`--plugin`), by type.
    pub(crate) plugins: BTreeMap<String, PathBuf>,
    pub(crate) device_plugin: Vec<String>,
    /// Where the device plugin came from: bundled, --device-plugin, --plugin.
    pub(crate) device_plugin_from: &'static str,
}

impl Choice {
    /// Fills in the bundled defaults and checks every path the user named.
    pub fn resolve(&self) -> Result<Resolved, ImplementationError> {
        let bundled = crate::bins::bin_dir();
        let flags = self.flags;
        if let Some(dir) = &self.cni_bin_dir
            && !dir.is_dir()
        {
            return Err(ImplementationError::NotADirectory {
                flag: flags.bin_dir,
                dir: dir.clone(),
            });
        }
        let mut plugins = BTreeMap::new();
        let mut device_plugin = None;
        for (name, path) in &self.plugins {
            if !path.is_file() {
                return Err(ImplementationError::NoSuchFile {
                    flag: flags.plugin,
                    name: name.clone(),
                    path: path.clone(),
                });
            }
            let seen = if name == DEVICE_PLUGIN {
                device_plugin
                    .replace(vec![path.display().to_string()])
                    .is_some()
            } else {
                plugins.insert(name.clone(), path.clone()).is_some()
            };
            if seen {
                return Err(ImplementationError::GivenTwice {
                    flag: flags.plugin,
                    name: name.clone(),
                });
            }
        }
        let (device_plugin, device_plugin_from) = match (&self.device_plugin, device_plugin) {
            (Some(_), Some(_)) => {
                return Err(ImplementationError::TwoDevicePlugins { flag: flags.plugin });
            }
            (Some(cmd), None) => (cmd.clone(), "--device-plugin"),
            (None, Some(cmd)) => (cmd, "--plugin"),
            (None, None) => match &self.cni_bin_dir {
                Some(dir) if dir.join(DEVICE_PLUGIN).is_file() => (
                    vec![dir.join(DEVICE_PLUGIN).display().to_string()],
                    "--cni-bin-dir",
                ),
                _ => (
                    vec![bundled.join(DEVICE_PLUGIN).display().to_string()],
                    "bundled",
                ),
            },
        };
        Ok(Resolved {
            cni_bin_dir: self.cni_bin_dir.clone().unwrap_or(bundled),
            plugins,
            device_plugin,
            device_plugin_from,
        })
    }
}

impl Resolved {
    /// The bundled plugins, nothing replaced.
    pub fn bundled() -> Resolved {
        Choice::default()
            .resolve()
            .expect("the bundled choice names no path to check")
    }

    /// The file CNI `name` runs from, and where that came from (`None`: missing).
    pub fn cni(&self, name: &str) -> (Option<PathBuf>, &'static str) {
        if let Some(p) = self.plugins.get(name) {
            return (Some(p.clone()), "--plugin");
        }
        let from = if self.cni_bin_dir == crate::bins::bin_dir() {
            "bundled"
        } else {
            "--cni-bin-dir"
        };
        let path = self.cni_bin_dir.join(name);
        (path.exists().then_some(path), from)
    }

    /// The directory the runtime searches for CNIs: the chosen directory itself, or,
    /// when plugins are picked one by one, `dir` filled with links to each chosen
    /// binary (a CNI missing from the chosen directory stays missing).
    pub fn cni_dir(&self, dir: &Path) -> Result<PathBuf, ImplementationError> {
        if self.plugins.is_empty() {
            return Ok(self.cni_bin_dir.clone());
        }
        std::fs::create_dir_all(dir).map_err(|source| ImplementationError::CreateDir {
            dir: dir.to_path_buf(),
            source,
        })?;
        for name in CNIS {
            if let (Some(path), _) = self.cni(name) {
                let target = std::fs::canonicalize(&path)
                    .map_err(|source| ImplementationError::Canonicalize { path, source })?;
                let link = dir.join(name);
                let _ = std::fs::remove_file(&link);
                if let Err(source) = std::os::unix::fs::symlink(&target, &link) {
                    return Err(ImplementationError::Link {
                        link,
                        target,
                        source,
                    });
                }
            }
        }
        Ok(dir.to_path_buf())
    }

    /// The report's record of what ran: per plugin its path and where it came from.
    pub fn describe(&self) -> Value {
        let mut plugins = serde_json::Map::new();
        for name in CNIS {
            let (path, from) = self.cni(name);
            plugins.insert(
                name.to_string(),
                match path {
                    // What it claims, in its own words (scenarios of other versions skip).
                    Some(p) => json!({"path": p.display().to_string(), "from": from,
                        "cni_versions": cni_versions(&p).unwrap_or_else(|e| vec![e.to_string()])}),
                    None => json!({"path": null, "from": from,
                        "missing": format!("not in {}", self.cni_bin_dir.display())}),
                },
            );
        }
        plugins.insert(
            DEVICE_PLUGIN.to_string(),
            json!({"path": self.device_plugin.join(" "), "from": self.device_plugin_from}),
        );
        json!({
            "cni_bin_dir": self.cni_bin_dir.display().to_string(),
            "device_plugin": self.device_plugin.join(" "),
            "plugins": plugins,
        })
    }

    /// What to warn about before the run: a CNI under test that does not answer
    /// VERSION as the spec asks (it still runs; scenarios that need a version of
    /// it are not skipped for it, and its failures will say how it answers).
    pub fn warnings(&self) -> Vec<String> {
        CNIS.iter()
            .filter_map(|name| {
                let path = self.cni(name).0?;
                let e = cni_versions(&path).err()?;
                Some(format!("{name}={}: {e}", path.display()))
            })
            .collect()
    }

    /// One line per plugin for the run's header.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = CNIS
            .iter()
            .map(|name| match self.cni(name) {
                (Some(p), from) => format!("{name}={} ({from})", p.display()),
                (None, _) => format!(
                    "{name}: not in {} (scenarios that use it fail)",
                    self.cni_bin_dir.display()
                ),
            })
            .collect();
        parts.push(format!(
            "{DEVICE_PLUGIN}={} ({})",
            self.device_plugin.join(" "),
            self.device_plugin_from
        ));
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exe(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        p
    }

    #[test]
    fn plugin_flags_parse_and_name_the_valid_plugins() {
        assert_eq!(
            parse_plugin("ovs=/x/ovs").unwrap(),
            ("ovs".to_string(), PathBuf::from("/x/ovs"))
        );
        let e = parse_plugin("sriov=/x").unwrap_err().to_string();
        assert!(e.contains("macvtap, ovs, macvtap-deviceplugin"), "{e}");
        let e = parse_plugin("macvtap").unwrap_err().to_string();
        assert!(e.contains("NAME=PATH"), "{e}");
        let e = parse_plugin("macvtap=").unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn one_plugin_replaced_keeps_the_rest_of_the_directory() {
        let dir = crate::lab::ScratchDir::new("secnet-impl-test").unwrap();
        let only = dir.path().join("only");
        std::fs::create_dir(&only).unwrap();
        let patched = exe(&only, "macvtap");
        let other = exe(dir.path(), "my-ovs");
        // A directory with only macvtap: ovs is missing, the device plugin bundled.
        let r = Choice {
            cni_bin_dir: Some(only.clone()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(r.cni("macvtap"), (Some(patched.clone()), "--cni-bin-dir"));
        assert_eq!(r.cni("ovs"), (None, "--cni-bin-dir"));
        assert_eq!(r.device_plugin_from, "bundled");
        assert_eq!(r.cni_dir(&dir.path().join("unused")).unwrap(), only);
        let d = r.describe();
        assert!(
            d["plugins"]["ovs"]["missing"]
                .as_str()
                .unwrap()
                .contains("only"),
            "{d}"
        );
        // --plugin ovs on top: both present, through a directory of links.
        let r = Choice {
            cni_bin_dir: Some(only.clone()),
            plugins: vec![("ovs".into(), other.clone())],
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let linked = r.cni_dir(&dir.path().join("links")).unwrap();
        assert_eq!(
            std::fs::read_link(linked.join("ovs")).unwrap(),
            other.canonicalize().unwrap()
        );
        assert_eq!(
            std::fs::read_link(linked.join("macvtap")).unwrap(),
            patched.canonicalize().unwrap()
        );
        assert_eq!(r.describe()["plugins"]["ovs"]["from"], "--plugin");
    }

    #[test]
    fn version_answer_of_the_bundled_macvtap() {
        let bin = crate::bins::bundled("macvtap");
        if !crate::prereq::require("the VERSION answer", bin.clone().err()) {
            return;
        }
        let bin = bin.unwrap();
        let v = cni_versions(&bin).unwrap();
        assert!(v.contains(&"1.0.0".to_string()), "{v:?}");
        assert_eq!(preferred_version(&v), "1.0.0");
        let old: Vec<String> = ["0.1.0", "0.3.1", "0.4.0", "0.2.0"]
            .map(String::from)
            .to_vec();
        assert_eq!(preferred_version(&old), "0.4.0");
    }

    #[test]
    fn bad_choices_are_refused_naming_the_flag() {
        let e = Choice {
            plugins: vec![("macvtap".into(), "/nonexistent/macvtap".into())],
            ..Default::default()
        }
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(e.contains("--plugin macvtap=/nonexistent/macvtap"), "{e}");
        let e = Choice {
            cni_bin_dir: Some("/nonexistent".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(e.contains("--cni-bin-dir /nonexistent"), "{e}");
        // One side of an A/B run: its own flags are named.
        let e = Choice {
            cni_bin_dir: Some("/nonexistent".into()),
            flags: Flags::B,
            ..Default::default()
        }
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("--b-bin-dir /nonexistent: "), "{e}");
        let e = Choice {
            plugins: vec![("ovs".into(), "/nonexistent/ovs".into())],
            flags: Flags::A,
            ..Default::default()
        }
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("--a-plugin ovs=/nonexistent/ovs: "), "{e}");
        let dir = crate::lab::ScratchDir::new("secnet-impl-test").unwrap();
        let dp = exe(dir.path(), DEVICE_PLUGIN);
        let e = Choice {
            device_plugin: Some(vec!["x".into()]),
            plugins: vec![(DEVICE_PLUGIN.into(), dp.clone())],
            ..Default::default()
        }
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(e.contains("give one"), "{e}");
        let r = Choice {
            plugins: vec![(DEVICE_PLUGIN.into(), dp.clone())],
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(r.device_plugin, vec![dp.display().to_string()]);
        assert_eq!(r.cni("macvtap").1, "bundled");
        // A directory with a device plugin supplies it too.
        let r = Choice {
            cni_bin_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(r.device_plugin, vec![dp.display().to_string()]);
        assert_eq!(r.device_plugin_from, "--cni-bin-dir");
    }
}
