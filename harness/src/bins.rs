//! Where the bundled plugin binaries are: `SECNET_BIN_DIR`, else next to the running
//! executable (target/<profile>/ or target/<profile>/deps/ for tests).

use std::path::PathBuf;

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
pub fn bundled(name: &str) -> Result<PathBuf, String> {
    let path = bin_dir().join(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "bundled binary {} is missing: build it with `cargo build --workspace --bins` (or set SECNET_BIN_DIR)",
            path.display()
        ))
    }
}

/// The repository's fixtures/ (where this build came from), or `SECNET_FIXTURES`.
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("SECNET_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures")))
}
