//! `ScratchDir`: a fresh directory under `$TMPDIR`, removed with its contents on
//! drop (also when a test panics). Name it after the run so that a killed run's
//! directory can be told apart.

use std::path::{Path, PathBuf};

pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// `$TMPDIR/<prefix>-XXXXXX`, unique even for two of the same prefix.
    pub fn new(prefix: &str) -> std::io::Result<ScratchDir> {
        let template = std::env::temp_dir().join(format!("{prefix}-XXXXXX"));
        nix::unistd::mkdtemp(&template)
            .map(ScratchDir)
            .map_err(std::io::Error::from)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Gives up the guard: the directory stays, the caller removes it.
    pub fn into_path(self) -> PathBuf {
        let me = std::mem::ManuallyDrop::new(self);
        me.0.clone()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_and_gone_on_drop() {
        let a = ScratchDir::new("secnet-scratch-test").unwrap();
        let b = ScratchDir::new("secnet-scratch-test").unwrap();
        assert_ne!(a.path(), b.path());
        std::fs::write(a.path().join("f"), "x").unwrap();
        let path = a.path().to_path_buf();
        drop(a);
        assert!(!path.exists());
        assert!(b.path().is_dir());
    }

    #[test]
    fn lab_scratch_is_private_and_kept_on_request() {
        use std::os::unix::fs::PermissionsExt;
        let a = ScratchDir::new("secnet-scratch-test").unwrap();
        let mode = std::fs::metadata(a.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let name = a.path().file_name().unwrap().to_str().unwrap().to_string();
        assert!(
            name.starts_with("secnet-scratch-test-") && name.len() == 26,
            "{name}"
        );
        let kept = a.into_path();
        assert!(kept.is_dir());
        std::fs::remove_dir(&kept).unwrap();
    }
}
