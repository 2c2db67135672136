//! A bundled binary the plugin tests run, found at first use with `secnet::bins`
//! (`cargo build --workspace --bins` puts them beside the test binaries): these tests
//! live here, not in the plugin crates, so no plugin depends on the harness.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// Usable wherever a path is (`Call::new(PLUGIN, …)`); a missing binary fails the test
/// with the command that builds it.
#[derive(Clone, Copy)]
pub struct Bundled(pub &'static str);

impl Bundled {
    pub fn path(self) -> &'static Path {
        static FOUND: OnceLock<Mutex<Vec<(&'static str, &'static Path)>>> = OnceLock::new();
        let mut found = FOUND.get_or_init(Default::default).lock().unwrap();
        if let Some((_, path)) = found.iter().find(|(name, _)| *name == self.0) {
            return path;
        }
        let path: PathBuf = secnet::bins::bundled(self.0).unwrap_or_else(|e| panic!("{e}"));
        let path: &'static Path = Box::leak(path.into_boxed_path());
        found.push((self.0, path));
        path
    }
}

impl AsRef<Path> for Bundled {
    fn as_ref(&self) -> &Path {
        self.path()
    }
}

impl AsRef<std::ffi::OsStr> for Bundled {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.path().as_os_str()
    }
}
