//! Where the bundled plugin binaries are: `SECNET_BIN_DIR`, else next to the running
//! executable (target/<profile>/ or target/<profile>/deps/ for tests).

use std::path::PathBuf;

#[derive(Debug, Clone, thiserror::Error)]
pub enum BinsError {
    #[error(
        "bundled binary {} is missing: build it with `cargo build --workspace --bins` (or set SECNET_BIN_DIR)",
        .0.display()
    )]
    Missing(PathBuf),
}

pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SECNET_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.parent().map(PathBuf::from).unwrap_or(dir)
    } else {
        dir
    }
}

/// Path of bundled binary `name`, with a message saying how to build it if missing.
pub fn bundled(name: &str) -> Result<PathBuf, BinsError> {
    let path = bin_dir().join(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(BinsError::Missing(path))
    }
}

/// The fixtures directory: `SECNET_FIXTURES` when set; else the copy embedded in
/// the binary at build time, written once per content under the user's cache
/// directory. So a copied or `cargo install`ed `secnet` uses exactly the fixtures it
/// was built with, whatever checkout (on whatever branch) the working directory or
/// the build path holds. Its parent also holds clusters/. The repository's
/// fixtures/ this binary was built from is the last resort, when the cache cannot
/// be written.
pub fn fixtures_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SECNET_FIXTURES") {
        return PathBuf::from(dir);
    }
    let built_from = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures"));
    match embedded::unpack() {
        Ok(root) => root.join("fixtures"),
        Err(e) => {
            eprintln!(
                "secnet: {e}; using {} (set SECNET_FIXTURES to choose a fixtures directory)",
                built_from.display()
            );
            built_from
        }
    }
}

/// fixtures/ and clusters/ as embedded at build time.
pub mod embedded {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    use std::path::{Path, PathBuf};

    include!(concat!(env!("OUT_DIR"), "/embedded_files.rs"));

    #[derive(Debug, thiserror::Error)]
    pub enum UnpackError {
        #[error("neither XDG_CACHE_HOME nor HOME is set")]
        NoCacheDir,
        #[error("failed to {action} {path}: {source}")]
        Io {
            action: &'static str,
            path: PathBuf,
            #[source]
            source: std::io::Error,
        },
    }

    /// Writes the embedded files under `$XDG_CACHE_HOME/secnet` (else
    /// `$HOME/.cache/secnet`) in a directory named by their content hash, unless an
    /// earlier run already did. Directories are 0700: root runs from there.
    pub fn unpack() -> Result<PathBuf, UnpackError> {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .ok_or(UnpackError::NoCacheDir)?
            .join("secnet");
        let root = cache.join(format!("files-{:016x}", content_hash()));
        if root.join(".complete").is_file() {
            return Ok(root);
        }
        let fail = |action: &'static str, path: &Path, source: std::io::Error| UnpackError::Io {
            action,
            path: path.to_path_buf(),
            source,
        };
        let mut dirs = std::fs::DirBuilder::new();
        dirs.recursive(true).mode(0o700);
        dirs.create(&cache).map_err(|e| fail("create", &cache, e))?;
        // Unpack beside the final place, then rename: a reader never sees half a tree.
        let partial = cache.join(format!(".partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&partial);
        for (rel, bytes) in FILES {
            let path = partial.join(rel);
            if let Some(dir) = path.parent() {
                dirs.create(dir).map_err(|e| fail("create", dir, e))?;
            }
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .and_then(|mut f| f.write_all(bytes))
                .map_err(|e| fail("write", &path, e))?;
        }
        std::fs::write(partial.join(".complete"), b"").map_err(|e| fail("write", &partial, e))?;
        match std::fs::rename(&partial, &root) {
            Ok(()) => Ok(root),
            // Another run unpacked the same content first.
            Err(_) if root.join(".complete").is_file() => {
                let _ = std::fs::remove_dir_all(&partial);
                Ok(root)
            }
            Err(e) => Err(fail("rename", &partial, e)),
        }
    }

    fn content_hash() -> u64 {
        let mut h = xxhash_rust::xxh64::Xxh64::new(0);
        for (rel, bytes) in FILES {
            h.update(rel.as_bytes());
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        }
        h.digest()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn every_fixture_and_cluster_file_is_embedded_and_unpacks_as_in_the_repository() {
            let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
            assert!(
                FILES
                    .iter()
                    .any(|(r, _)| *r == "fixtures/seed/macvtap-pod.yaml")
            );
            assert!(FILES.iter().any(|(r, _)| *r == "clusters/kind-2node.yaml"));
            let home = crate::lab::ScratchDir::new("secnet-embedded").unwrap();
            // SAFETY: this test's process-wide env change; no other test reads XDG_CACHE_HOME.
            unsafe { std::env::set_var("XDG_CACHE_HOME", home.path()) };
            let root = unpack().unwrap();
            assert_eq!(unpack().unwrap(), root, "a second call reuses the first");
            for (rel, bytes) in FILES {
                let unpacked = std::fs::read(root.join(rel)).unwrap();
                assert_eq!(&unpacked, bytes, "{rel}");
                assert_eq!(&std::fs::read(repo.join(rel)).unwrap(), bytes, "{rel}");
            }
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(root.join("fixtures"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700);
        }
    }
}
