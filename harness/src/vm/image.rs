//! The guest image, built from Debian packages on this machine: the kernel of
//! `linux-image-*-amd64` (decompressed to an ELF `vmlinux` so QEMU boots it over PVH,
//! about twice as fast under TCG as the bzImage), and a busybox initramfs holding the
//! virtio network modules and the agent (see [`super::agent`]). Cached under
//! `/var/cache/secnet/guest-<hash of the inputs>`; rebuilt only when an input changes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use super::agent;

/// Bump when the layout or the init script changes in a way the inputs don't show.
const FORMAT: u32 = 1;

pub const DEFAULT_CACHE: &str = "/var/cache/secnet";

/// The modules the guest needs for a virtio-net NIC on PCI, in load order (their
/// dependencies from modules.dep are added first).
pub const GUEST_MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
];

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("failed to find {what}: {hint}")]
    Missing { what: String, hint: String },
    #[error("failed to build the guest image: {0}")]
    Build(String),
}

/// How QEMU boots the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    /// Uncompressed ELF with a PVH note (`-kernel vmlinux`).
    Pvh,
    /// The compressed bzImage (fallback when the payload could not be extracted).
    BzImage,
}

#[derive(Debug, Clone)]
pub struct GuestImage {
    pub(crate) dir: PathBuf,
    pub(crate) kernel: PathBuf,
    pub(crate) initrd: PathBuf,
    pub(crate) format: KernelFormat,
    pub(crate) kernel_version: String,
    /// Whether this call built the image (false: taken from the cache).
    pub(crate) built: bool,
    pub(crate) elapsed: Duration,
}

/// The host's inputs: a kernel with its modules and a static busybox.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub(crate) vmlinuz: PathBuf,
    pub(crate) modules_dir: PathBuf,
    pub(crate) busybox: PathBuf,
    pub(crate) version: String,
}

impl Inputs {
    /// The newest `/boot/vmlinuz-<ver>` that has `/lib/modules/<ver>` with virtio_net.
    pub fn discover() -> Result<Inputs, ImageError> {
        let mut versions: Vec<String> = std::fs::read_dir("/boot")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        e.file_name()
                            .to_str()
                            .and_then(|n| n.strip_prefix("vmlinuz-"))
                            .map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default();
        versions.sort_by_key(|v| version_key(v));
        let version = versions
            .into_iter()
            .rev()
            .find(|v| Path::new(&format!("/lib/modules/{v}/modules.dep")).exists())
            .ok_or_else(|| ImageError::Missing {
                what: "a guest kernel (/boot/vmlinuz-* with /lib/modules/*)".into(),
                hint: "apt-get install linux-image-amd64".into(),
            })?;
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or_else(|| ImageError::Missing {
                what: "busybox".into(),
                hint: "apt-get install busybox-static".into(),
            })?;
        Ok(Inputs {
            vmlinuz: PathBuf::from(format!("/boot/vmlinuz-{version}")),
            modules_dir: PathBuf::from(format!("/lib/modules/{version}")),
            busybox,
            version,
        })
    }

    /// A hash over what goes into the image: file identities (path, size, mtime),
    /// the init script and the format version.
    pub fn hash(&self) -> String {
        let mut text = format!("format {FORMAT}\n{}\n", agent::init_script());
        for p in [
            &self.vmlinuz,
            &self.busybox,
            &self.modules_dir.join("modules.dep"),
        ] {
            let meta = std::fs::metadata(p).ok();
            let mtime = meta
                .as_ref()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            text.push_str(&format!(
                "{} {} {mtime}\n",
                p.display(),
                meta.map(|m| m.len()).unwrap_or(0)
            ));
        }
        format!("{:016x}", xxhash_rust::xxh64::xxh64(text.as_bytes(), 0))
    }
}

/// `6.1.0-56-amd64` sorts by its numbers.
fn version_key(v: &str) -> Vec<u64> {
    v.split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// The guest image for this machine, from the cache or freshly built.
pub fn ensure(cache_root: &Path) -> Result<GuestImage, ImageError> {
    let start = Instant::now();
    let inputs = Inputs::discover()?;
    let dir = cache_root.join(format!("guest-{}", inputs.hash()));
    let done = |built: bool| -> Result<GuestImage, ImageError> {
        let format = if dir.join("vmlinux").exists() {
            KernelFormat::Pvh
        } else {
            KernelFormat::BzImage
        };
        Ok(GuestImage {
            kernel: match format {
                KernelFormat::Pvh => dir.join("vmlinux"),
                KernelFormat::BzImage => inputs.vmlinuz.clone(),
            },
            initrd: dir.join("initrd.cpio"),
            dir: dir.clone(),
            format,
            kernel_version: inputs.version.clone(),
            built,
            elapsed: start.elapsed(),
        })
    };
    if dir.join("complete").exists() {
        return done(false);
    }
    std::fs::create_dir_all(cache_root)
        .map_err(|e| ImageError::Build(format!("create {}: {e}", cache_root.display())))?;
    // Build next to the final place and rename: parallel test processes may race.
    let tmp = cache_root.join(format!(
        ".build-{}-{}",
        std::process::id(),
        start.elapsed().as_nanos()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| ImageError::Build(e.to_string()))?;
    let result = build_into(&inputs, &tmp);
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if std::fs::rename(&tmp, &dir).is_err() {
        // Another process won the race; its image is as good as ours.
        let _ = std::fs::remove_dir_all(&tmp);
        if !dir.join("complete").exists() {
            return Err(ImageError::Build(format!(
                "{} exists but is incomplete; remove it",
                dir.display()
            )));
        }
        return done(false);
    }
    done(true)
}

fn build_into(inputs: &Inputs, dir: &Path) -> Result<(), ImageError> {
    let bz = std::fs::read(&inputs.vmlinuz)
        .map_err(|e| ImageError::Build(format!("read {}: {e}", inputs.vmlinuz.display())))?;
    // Fall back to booting the bzImage when no payload can be extracted.
    if let Ok(elf) = extract_vmlinux(&bz) {
        std::fs::write(dir.join("vmlinux"), elf).map_err(|e| ImageError::Build(e.to_string()))?;
    }
    let busybox = std::fs::read(&inputs.busybox)
        .map_err(|e| ImageError::Build(format!("read {}: {e}", inputs.busybox.display())))?;
    let dep = std::fs::read_to_string(inputs.modules_dir.join("modules.dep"))
        .map_err(|e| ImageError::Build(format!("read modules.dep: {e}")))?;
    let order = module_load_order(&dep, GUEST_MODULES)?;
    let mut cpio = Cpio::default();
    for d in [
        "bin", "dev", "proc", "sys", "tmp", "modules", "sbin", "usr", "etc",
    ] {
        cpio.dir(d, 0o755);
    }
    cpio.file("bin/busybox", 0o755, &busybox);
    cpio.symlink("bin/sh", "busybox");
    cpio.file("init", 0o755, agent::init_script().as_bytes());
    let mut list = String::new();
    for (i, rel) in order.iter().enumerate() {
        let path = inputs.modules_dir.join(rel);
        let data = read_module(&path)?;
        let name = format!("modules/{i:02}-{}", module_name(rel));
        cpio.file(&format!("{name}.ko"), 0o644, &data);
        list.push_str(&format!("/{name}.ko\n"));
    }
    cpio.file("modules/order", 0o644, list.as_bytes());
    std::fs::write(dir.join("initrd.cpio"), cpio.finish())
        .map_err(|e| ImageError::Build(e.to_string()))?;
    std::fs::write(
        dir.join("inputs.txt"),
        format!(
            "kernel {}\nbusybox {}\nmodules {order:?}\n",
            inputs.vmlinuz.display(),
            inputs.busybox.display()
        ),
    )
    .map_err(|e| ImageError::Build(e.to_string()))?;
    std::fs::write(dir.join("complete"), b"").map_err(|e| ImageError::Build(e.to_string()))
}

/// `kernel/drivers/net/virtio_net.ko.xz` → `virtio_net`.
fn module_name(rel: &str) -> String {
    let file = rel.rsplit('/').next().unwrap_or(rel);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// Module files (relative to the modules dir) to insmod, dependencies first, each once.
/// `modules.dep` lines: `path: dep1 dep2` where deps are themselves in load-after order.
pub fn module_load_order(dep: &str, wanted: &[&str]) -> Result<Vec<String>, ImageError> {
    let mut deps: Vec<(String, Vec<String>)> = Vec::new();
    for line in dep.lines() {
        let Some((path, rest)) = line.split_once(':') else {
            continue;
        };
        deps.push((
            path.trim().to_string(),
            rest.split_whitespace().map(str::to_string).collect(),
        ));
    }
    let find = |name: &str| deps.iter().find(|(p, _)| module_name(p) == name);
    let mut order: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    fn visit(
        path: &str,
        deps: &[(String, Vec<String>)],
        order: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) {
        if !seen.insert(path.to_string()) {
            return;
        }
        if let Some((_, d)) = deps.iter().find(|(p, _)| p == path) {
            // modules.dep lists dependencies so that the last one loads first.
            for dep in d.iter().rev() {
                visit(dep, deps, order, seen);
            }
        }
        order.push(path.to_string());
    }
    for name in wanted {
        match find(name) {
            Some((path, _)) => visit(path, &deps, &mut order, &mut seen),
            // Built into this kernel: nothing to load. virtio_net must exist somewhere.
            None if *name == "virtio_net" => {
                return Err(ImageError::Missing {
                    what: "virtio_net in modules.dep".into(),
                    hint: "the guest kernel needs virtio_net (as a module)".into(),
                });
            }
            None => {}
        }
    }
    Ok(order)
}

fn read_module(path: &Path) -> Result<Vec<u8>, ImageError> {
    let data = std::fs::read(path)
        .map_err(|e| ImageError::Build(format!("read {}: {e}", path.display())))?;
    let name = path.display().to_string();
    if name.ends_with(".xz") {
        decompress("xz", &["-dc", "--single-stream"], &data)
    } else if name.ends_with(".zst") {
        decompress("zstd", &["-dc"], &data)
    } else if name.ends_with(".gz") {
        decompress("gzip", &["-dc"], &data)
    } else {
        Ok(data)
    }
}

/// Runs a decompressor over `data` (stdin) and returns stdout; a non-zero exit with
/// output is accepted (gzip warns about trailing garbage after a kernel payload).
fn decompress(program: &str, args: &[&str], data: &[u8]) -> Result<Vec<u8>, ImageError> {
    let out = crate::lab::command::Cmd::new(program)
        .args(args)
        .stdin(data.to_vec())
        .timeout(Duration::from_secs(120))
        .output()
        .map_err(|e| ImageError::Build(e.to_string()))?;
    if out.stdout.is_empty() {
        return Err(ImageError::Build(format!(
            "{program} {args:?} produced nothing ({})",
            out.status
        )));
    }
    Ok(out.stdout)
}

/// Magic bytes of the compressors a bzImage payload may use, with the command.
const PAYLOADS: &[(&[u8], &str, &[&str])] = &[
    (b"\xfd7zXZ\x00", "xz", &["-dc", "--single-stream"]),
    (b"\x28\xb5\x2f\xfd", "zstd", &["-dc"]),
    (b"\x1f\x8b\x08", "gzip", &["-dc"]),
];

/// Finds the compressed payload in a bzImage and decompresses it to the ELF vmlinux.
/// Tries each magic occurrence until one yields an ELF file.
pub fn extract_vmlinux(bzimage: &[u8]) -> Result<Vec<u8>, ImageError> {
    for (magic, program, args) in PAYLOADS {
        for offset in find_all(bzimage, magic) {
            if let Ok(out) = decompress(program, args, &bzimage[offset..])
                && out.starts_with(b"\x7fELF")
            {
                return Ok(out);
            }
        }
    }
    Err(ImageError::Build(
        "no xz/zstd/gzip payload with an ELF kernel in the bzImage".into(),
    ))
}

pub fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return Vec::new();
    }
    (0..=haystack.len() - needle.len())
        .filter(|&i| &haystack[i..i + needle.len()] == needle)
        .collect()
}

/// A newc ("070701") cpio archive, the format the kernel unpacks as initramfs.
#[derive(Default)]
pub struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.ino += 1;
        let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime: reproducible
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0, // check
        );
        self.out.extend_from_slice(header.as_bytes());
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    pub fn dir(&mut self, name: &str, perm: u32) {
        self.entry(name, 0o040000 | perm, &[]);
    }

    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100000 | perm, data);
    }

    pub fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, 0o120777, target.as_bytes());
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        // The kernel reads the archive in 512-byte blocks like cpio writes it.
        while !self.out.len().is_multiple_of(512) {
            self.out.push(0);
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_entries_are_aligned_and_parse_back() {
        let mut c = Cpio::default();
        c.dir("bin", 0o755);
        c.file("init", 0o755, b"#!/bin/sh\n");
        c.symlink("bin/sh", "busybox");
        let out = c.finish();
        assert_eq!(out.len() % 512, 0);
        // Walk the archive the way the kernel does.
        let mut pos = 0;
        let mut names = Vec::new();
        loop {
            assert_eq!(&out[pos..pos + 6], b"070701", "at {pos}");
            let field = |i: usize| {
                let s = std::str::from_utf8(&out[pos + 6 + i * 8..pos + 14 + i * 8]).unwrap();
                usize::from_str_radix(s, 16).unwrap()
            };
            let (mode, size, namesize) = (field(1), field(6), field(11));
            let name_start = pos + 110;
            let name = std::str::from_utf8(&out[name_start..name_start + namesize - 1]).unwrap();
            names.push((name.to_string(), mode, size));
            if name == "TRAILER!!!" {
                break;
            }
            let data_start = (name_start + namesize).next_multiple_of(4);
            if name == "init" {
                assert_eq!(&out[data_start..data_start + size], b"#!/bin/sh\n");
            }
            pos = (data_start + size).next_multiple_of(4);
        }
        assert_eq!(
            names,
            vec![
                ("bin".to_string(), 0o040755, 0),
                ("init".to_string(), 0o100755, 10),
                ("bin/sh".to_string(), 0o120777, 7),
                ("TRAILER!!!".to_string(), 0, 0),
            ]
        );
    }

    #[test]
    fn modules_load_dependencies_first_each_once() {
        let dep = "kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/virtio_net.ko.xz: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
";
        let order = module_load_order(dep, &["virtio_pci", "virtio_net"]).unwrap();
        let names: Vec<String> = order.iter().map(|p| module_name(p)).collect();
        assert_eq!(
            names,
            [
                "virtio_ring",
                "virtio",
                "virtio_pci_modern_dev",
                "virtio_pci_legacy_dev",
                "virtio_pci",
                "failover",
                "net_failover",
                "virtio_net"
            ]
        );
        assert!(module_load_order("", &["virtio_net"]).is_err());
        // Built-in modules (absent from modules.dep) are skipped.
        assert!(module_load_order(dep, &["virtio_blk", "virtio_net"]).is_ok());
    }

    #[test]
    fn payload_is_found_after_a_header() {
        let mut bz = vec![0u8; 100];
        bz.extend_from_slice(b"\x1f\x8b\x08");
        assert_eq!(find_all(&bz, b"\x1f\x8b\x08"), vec![100]);
        assert!(find_all(b"ab", b"abc").is_empty());
    }

    #[test]
    fn gzip_payload_with_trailing_bytes_is_extracted() {
        if !Path::new("/usr/bin/gzip").exists() && !Path::new("/bin/gzip").exists() {
            return;
        }
        let elf = b"\x7fELF pretend kernel".to_vec();
        let gz = decompress("gzip", &["-c"], &elf).unwrap();
        let mut bz = b"MZ setup code".to_vec();
        bz.extend_from_slice(&gz);
        bz.extend_from_slice(b"trailing");
        assert_eq!(extract_vmlinux(&bz).unwrap(), elf);
    }

    #[test]
    fn kernel_versions_sort_numerically() {
        let mut v = ["6.1.0-9-amd64", "6.1.0-56-amd64", "6.1.0-10-amd64"];
        v.sort_by_key(|v| version_key(v));
        assert_eq!(v.last(), Some(&"6.1.0-56-amd64"));
    }
}
