//! OCI image-layout archives written by secnet itself, so a node's containerd gets
//! its images without a registry (`ctr -n k8s.io images import FILE`).
//!
//! An image is one uncompressed layer (a set of files: programs with the shared
//! libraries `ldd` names, symlinks, directories), a config, a manifest and an
//! index whose `org.opencontainers.image.ref.name` (and containerd's own
//! `io.containerd.image.name`) carry the full reference, so the import names it.
//! Blobs are addressed by sha256; everything is deterministic (mtime 0, root owner),
//! so the same inputs give the same digests.
//!
//! The images secnet needs: [`pause`] (the sandbox image), [`busybox`] (probe and
//! test pods), [`plugins`] (the binaries under test, plus busybox for install
//! scripts). All take their programs from this machine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use super::tar::{Kind, TarError, TarWriter};
use crate::lab::Cmd;

/// The annotation the OCI image layout uses to name a manifest.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's own name annotation; its importer reads it first.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";
pub const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Where Debian's busybox-static puts its one binary.
pub const BUSYBOX: &str = "/bin/busybox";
/// The directory of the plugin image that holds the binaries under test: the
/// Containerfile's layout, so the component sets run this image as they run that one.
pub const PLUGIN_DIR: &str = "/usr/local/bin";

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("failed to read {path} for the image: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write the image archive {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("image path {path:?} must be absolute (start with '/')")]
    RelativePath { path: String },
    #[error("failed to list the shared libraries of {program} with ldd: {message}")]
    Ldd { program: String, message: String },
    #[error("busybox {path} cannot list its applets ({message}); apt-get install busybox-static")]
    Busybox { path: String, message: String },
    #[error(transparent)]
    Tar(#[from] TarError),
}

fn read(path: &Path) -> Result<Vec<u8>, OciError> {
    std::fs::read(path).map_err(|source| OciError::Read {
        path: path.display().to_string(),
        source,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    File { data: Vec<u8>, mode: u32 },
    Symlink(String),
    Dir,
}

/// The files of an image's single layer, keyed by absolute path inside the image.
#[derive(Debug, Clone, Default)]
pub struct Layer {
    entries: BTreeMap<String, Entry>,
}

impl Layer {
    pub fn new() -> Layer {
        Layer::default()
    }

    fn key(path: &str) -> Result<String, OciError> {
        match path.strip_prefix('/') {
            Some(rel) if !rel.is_empty() => Ok(rel.trim_end_matches('/').to_string()),
            _ => Err(OciError::RelativePath { path: path.into() }),
        }
    }

    /// A regular file with `data` at `path`.
    pub fn file(&mut self, path: &str, data: Vec<u8>, mode: u32) -> Result<&mut Layer, OciError> {
        self.entries
            .insert(Layer::key(path)?, Entry::File { data, mode });
        Ok(self)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> Result<&mut Layer, OciError> {
        self.entries
            .insert(Layer::key(path)?, Entry::Symlink(target.into()));
        Ok(self)
    }

    pub fn dir(&mut self, path: &str) -> Result<&mut Layer, OciError> {
        self.entries.insert(Layer::key(path)?, Entry::Dir);
        Ok(self)
    }

    /// The host file `host` (symlinks followed) at `path`, with its permission bits.
    pub fn copy(&mut self, host: &Path, path: &str) -> Result<&mut Layer, OciError> {
        use std::os::unix::fs::PermissionsExt;
        let data = read(host)?;
        let mode = std::fs::metadata(host)
            .map_err(|source| OciError::Read {
                path: host.display().to_string(),
                source,
            })?
            .permissions()
            .mode();
        self.file(path, data, mode & 0o7777)
    }

    /// A program at `path` and, when it is dynamically linked, the shared libraries
    /// and loader it needs at the paths `ldd` names (so it runs in an empty image).
    pub fn program(&mut self, host: &Path, path: &str) -> Result<&mut Layer, OciError> {
        self.copy(host, path)?;
        for lib in shared_libraries(host)? {
            let image_path = lib.display().to_string();
            if !self.entries.contains_key(&Layer::key(&image_path)?) {
                self.copy(&lib, &image_path)?;
            }
        }
        Ok(self)
    }

    /// Busybox at [`BUSYBOX`] with every applet as a symlink at its usual place
    /// (`/bin/sh`, `/sbin/ip`, `/usr/bin/nc`, …).
    pub fn busybox(&mut self, host: &Path) -> Result<&mut Layer, OciError> {
        let busybox_err = |message: String| OciError::Busybox {
            path: host.display().to_string(),
            message,
        };
        let list = Cmd::new(host)
            .arg("--list-full")
            .timeout(Duration::from_secs(10))
            .run()
            .map_err(|e| busybox_err(e.to_string()))?;
        let applets: Vec<&str> = list.lines().filter(|l| !l.trim().is_empty()).collect();
        if applets.is_empty() {
            return Err(busybox_err("it listed no applets".into()));
        }
        self.copy(host, BUSYBOX)?;
        for applet in applets {
            let path = format!("/{}", applet.trim());
            if path != BUSYBOX {
                self.symlink(&path, BUSYBOX)?;
            }
        }
        Ok(self)
    }

    /// The layer as a tar stream, parents before children, every parent directory
    /// listed (some readers create missing parents with odd modes).
    pub fn tar(&self) -> Result<Vec<u8>, OciError> {
        let implied_dir = Entry::Dir;
        let mut all: BTreeMap<&str, &Entry> = BTreeMap::new();
        for (path, entry) in &self.entries {
            all.insert(path, entry);
        }
        let mut dirs = Vec::new();
        for path in self.entries.keys() {
            let mut at = path.as_str();
            while let Some((parent, _)) = at.rsplit_once('/') {
                dirs.push(parent);
                at = parent;
            }
        }
        for d in dirs {
            all.entry(d).or_insert(&implied_dir);
        }
        let mut w = TarWriter::new();
        // BTreeMap order puts "a" before "a/b": parents first.
        for (path, entry) in all {
            match entry {
                Entry::File { data, mode } => w.append(path, *mode, Kind::File(data))?,
                Entry::Symlink(target) => w.append(path, 0o777, Kind::Symlink(target))?,
                Entry::Dir => w.append(path, 0o755, Kind::Dir)?,
            }
        }
        Ok(w.finish())
    }
}

/// The shared libraries (and the loader) of `program`, as `ldd` resolves them;
/// empty for a static program.
pub fn shared_libraries(program: &Path) -> Result<Vec<PathBuf>, OciError> {
    let out = Cmd::new("ldd")
        .arg(program)
        .timeout(Duration::from_secs(10))
        .output()
        .map_err(|e| OciError::Ldd {
            program: program.display().to_string(),
            message: e.to_string(),
        })?;
    let text = out.stdout_text();
    if !out.success() {
        // glibc's ldd exits 1 and says so for a static program.
        let said = format!("{text}{}", out.stderr_text());
        return if said.contains("not a dynamic executable") || said.contains("statically linked") {
            Ok(Vec::new())
        } else {
            Err(OciError::Ldd {
                program: program.display().to_string(),
                message: said.trim().to_string(),
            })
        };
    }
    Ok(parse_ldd(&text))
}

/// Paths from ldd's lines `libc.so.6 => /lib/…/libc.so.6 (0x…)` and
/// `/lib64/ld-linux-x86-64.so.2 (0x…)`; the vDSO has no file.
fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// An image to write: its full reference, its one layer and how it starts.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// A full reference with a registry host, e.g. `secnet.local/pause:sn1a2b3c`.
    pub(crate) reference: String,
    pub(crate) layer: Layer,
    pub(crate) entrypoint: Vec<String>,
    pub(crate) cmd: Vec<String>,
    pub(crate) env: Vec<String>,
}

/// What [`ImageSpec::write`] wrote.
#[derive(Debug, Clone)]
pub struct Archive {
    pub path: PathBuf,
    pub reference: String,
    /// `sha256:…` of the manifest: the image's digest as containerd shows it.
    pub manifest_digest: String,
    /// `sha256:…` of the (uncompressed) layer: also its diff ID.
    pub layer_digest: String,
    pub layer_size: u64,
}

pub fn sha256(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn blob_path(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

impl ImageSpec {
    pub fn new(reference: impl Into<String>, layer: Layer) -> ImageSpec {
        ImageSpec {
            reference: reference.into(),
            layer,
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
        }
    }

    /// Writes the image as an OCI image-layout tar archive at `path`.
    pub fn write(&self, path: &Path) -> Result<Archive, OciError> {
        let layer = self.layer.tar()?;
        let layer_digest = sha256(&layer);
        let mut config = json!({
            "architecture": "amd64",
            "os": "linux",
            "config": { "Env": self.env },
            "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
            "history": [{ "created_by": "secnet (cluster/bare/oci.rs)" }],
        });
        if !self.entrypoint.is_empty() {
            config["config"]["Entrypoint"] = json!(self.entrypoint);
        }
        if !self.cmd.is_empty() {
            config["config"]["Cmd"] = json!(self.cmd);
        }
        let config = serde_json::to_vec(&config).expect("JSON values serialize");
        let config_digest = sha256(&config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": { "mediaType": MEDIA_CONFIG, "digest": config_digest, "size": config.len() },
            "layers": [{ "mediaType": MEDIA_LAYER, "digest": layer_digest, "size": layer.len() }],
        }))
        .expect("JSON values serialize");
        let manifest_digest = sha256(&manifest);
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [{
                "mediaType": MEDIA_MANIFEST,
                "digest": manifest_digest,
                "size": manifest.len(),
                "platform": { "architecture": "amd64", "os": "linux" },
                "annotations": { REF_NAME: self.reference, CONTAINERD_NAME: self.reference },
            }],
        }))
        .expect("JSON values serialize");
        let mut w = TarWriter::new();
        w.append(
            "oci-layout",
            0o644,
            Kind::File(br#"{"imageLayoutVersion":"1.0.0"}"#),
        )?;
        w.append("index.json", 0o644, Kind::File(&index))?;
        w.append("blobs", 0o755, Kind::Dir)?;
        w.append("blobs/sha256", 0o755, Kind::Dir)?;
        for (digest, data) in [
            (&layer_digest, &layer),
            (&config_digest, &config),
            (&manifest_digest, &manifest),
        ] {
            w.append(&blob_path(digest), 0o644, Kind::File(data))?;
        }
        std::fs::write(path, w.finish()).map_err(|source| OciError::Write {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Archive {
            path: path.to_path_buf(),
            reference: self.reference.clone(),
            manifest_digest,
            layer_digest,
            layer_size: layer.len() as u64,
        })
    }
}

/// Debian's busybox-static, where secnet looks for it.
pub fn busybox_program() -> PathBuf {
    crate::prereq::find_program("busybox").unwrap_or_else(|| PathBuf::from(BUSYBOX))
}

/// The sandbox ("pause") image: busybox's shell as PID 1 holding the pod's
/// namespaces, exiting 0 on SIGTERM or SIGINT (as kubernetes' pause does) and
/// otherwise sleeping.
pub fn pause(reference: &str) -> Result<ImageSpec, OciError> {
    let mut layer = Layer::new();
    let busybox = busybox_program();
    layer.copy(&busybox, BUSYBOX)?;
    layer.symlink("/bin/sh", BUSYBOX)?;
    layer.symlink("/bin/sleep", BUSYBOX)?;
    let mut image = ImageSpec::new(reference, layer);
    image.entrypoint = vec![
        "/bin/sh".into(),
        "-c".into(),
        // PID 1 gets only the signals it handles: the trap makes TERM/INT end it.
        "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done".into(),
    ];
    Ok(image)
}

/// The probe and test pod image: busybox-static with all its applets; it sleeps
/// unless given a command.
pub fn busybox(reference: &str) -> Result<ImageSpec, OciError> {
    let mut layer = Layer::new();
    layer.busybox(&busybox_program())?;
    layer.dir("/tmp")?;
    let mut image = ImageSpec::new(reference, layer);
    image.cmd = vec!["sleep".into(), "2147483647".into()];
    Ok(image)
}

/// The plugin image: each binary under test at [`PLUGIN_DIR`]`/<file name>` with its
/// shared libraries, plus busybox (the DaemonSets' install scripts use `sh`, `cp`).
pub fn plugins(reference: &str, binaries: &[PathBuf]) -> Result<ImageSpec, OciError> {
    let mut layer = Layer::new();
    layer.busybox(&busybox_program())?;
    for bin in binaries {
        let name = bin
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        layer.program(bin, &format!("{PLUGIN_DIR}/{name}"))?;
    }
    layer.dir("/tmp")?;
    Ok(ImageSpec::new(reference, layer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_ldd_lines_give_library_paths() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(text),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }

    #[test]
    fn oci_same_inputs_give_the_same_digests() {
        let dir = crate::lab::ScratchDir::new("secnet-oci-test").unwrap();
        let mut layer = Layer::new();
        layer.file("/etc/hello", b"hi\n".to_vec(), 0o644).unwrap();
        let image = ImageSpec::new("secnet.local/t:1", layer);
        let a = image.write(&dir.path().join("a.tar")).unwrap();
        let b = image.write(&dir.path().join("b.tar")).unwrap();
        assert_eq!(a.manifest_digest, b.manifest_digest);
        assert_eq!(
            std::fs::read(&a.path).unwrap(),
            std::fs::read(&b.path).unwrap()
        );
        let e = Layer::new().file("etc/x", vec![], 0o644).unwrap_err();
        assert!(e.to_string().contains("absolute"), "{e}");
    }
}
