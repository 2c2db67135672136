//! A minimal, deterministic ustar writer: regular files, directories and symbolic
//! links, owner root, mtime 0. Enough for an OCI image layer and the archive
//! around an image layout; paths longer than 100 bytes use the ustar prefix field.

const BLOCK: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error(
        "tar entry {path:?}: the path is too long for ustar (name ≤ 100 bytes after a '/' split, prefix ≤ 155); shorten it"
    )]
    PathTooLong { path: String },
    #[error("tar entry {path:?}: link target {target:?} is longer than 100 bytes; shorten it")]
    LinkTooLong { path: String, target: String },
}

/// What one entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind<'a> {
    File(&'a [u8]),
    Dir,
    Symlink(&'a str),
}

/// A tar stream being written into memory.
#[derive(Debug, Default)]
pub struct TarWriter {
    out: Vec<u8>,
}

impl TarWriter {
    pub fn new() -> TarWriter {
        TarWriter::default()
    }

    /// Appends one entry. `path` is relative (no leading '/'); directories get a
    /// trailing '/' as tar readers expect.
    pub fn append(&mut self, path: &str, mode: u32, kind: Kind<'_>) -> Result<(), TarError> {
        let mut header = [0u8; BLOCK];
        let full = match kind {
            Kind::Dir if !path.ends_with('/') => format!("{path}/"),
            _ => path.to_string(),
        };
        let (prefix, name) =
            split_path(&full).ok_or_else(|| TarError::PathTooLong { path: full.clone() })?;
        header[..name.len()].copy_from_slice(name.as_bytes());
        octal(&mut header[100..108], u64::from(mode & 0o7777));
        octal(&mut header[108..116], 0); // uid
        octal(&mut header[116..124], 0); // gid
        let (size, flag) = match kind {
            Kind::File(data) => (data.len() as u64, b'0'),
            Kind::Dir => (0, b'5'),
            Kind::Symlink(_) => (0, b'2'),
        };
        octal(&mut header[124..136], size);
        octal(&mut header[136..148], 0); // mtime: reproducible archives
        header[156] = flag;
        if let Kind::Symlink(target) = kind {
            if target.len() > 100 {
                return Err(TarError::LinkTooLong {
                    path: full,
                    target: target.to_string(),
                });
            }
            header[157..157 + target.len()].copy_from_slice(target.as_bytes());
        }
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[265..269].copy_from_slice(b"root");
        header[297..301].copy_from_slice(b"root");
        header[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
        // The checksum is computed with its own field read as eight spaces.
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        let text = format!("{sum:06o}\0 ");
        header[148..156].copy_from_slice(text.as_bytes());
        self.out.extend_from_slice(&header);
        if let Kind::File(data) = kind {
            self.out.extend_from_slice(data);
            let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
            self.out.extend(std::iter::repeat_n(0u8, pad));
        }
        Ok(())
    }

    /// The stream with its end-of-archive marker (two zero blocks).
    pub fn finish(mut self) -> Vec<u8> {
        self.out.extend(std::iter::repeat_n(0u8, 2 * BLOCK));
        self.out
    }
}

/// Splits `path` into ustar's (prefix, name), or None when it does not fit.
fn split_path(path: &str) -> Option<(&str, &str)> {
    if path.len() <= 100 {
        return Some(("", path));
    }
    // The split must be at a '/', with the name part ≤ 100 and the prefix ≤ 155.
    let trimmed = path.trim_end_matches('/');
    path.char_indices()
        .filter(|&(i, c)| c == '/' && i < trimmed.len())
        .map(|(i, _)| (&path[..i], &path[i + 1..]))
        .find(|(prefix, name)| prefix.len() <= 155 && name.len() <= 100 && !name.is_empty())
}

/// Writes `value` as zero-padded octal, NUL-terminated, filling `field`.
fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    field[..width].copy_from_slice(&text.as_bytes()[text.len() - width..]);
    field[width] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_stream_is_read_back_by_gnu_tar() {
        let dir = crate::lab::ScratchDir::new("secnet-tar-test").unwrap();
        let mut w = TarWriter::new();
        w.append("bin", 0o755, Kind::Dir).unwrap();
        w.append("bin/hello", 0o755, Kind::File(b"#!/bin/sh\necho hi\n"))
            .unwrap();
        w.append("bin/hi", 0o777, Kind::Symlink("hello")).unwrap();
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        w.append(&long, 0o644, Kind::File(&[7u8; 1000])).unwrap();
        let archive = dir.path().join("t.tar");
        std::fs::write(&archive, w.finish()).unwrap();
        let list = crate::lab::Cmd::new("tar")
            .args(["-tvf"])
            .arg(&archive)
            .run()
            .unwrap();
        assert!(list.contains("bin/hi -> hello"), "{list}");
        assert!(list.contains(&long), "{list}");
        crate::lab::Cmd::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(dir.path())
            .run()
            .unwrap();
        let read = std::fs::read(dir.path().join(&long)).unwrap();
        assert_eq!(read, vec![7u8; 1000]);
        let hello = dir.path().join("bin/hello");
        assert_eq!(std::fs::read(&hello).unwrap(), b"#!/bin/sh\necho hi\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&hello).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
    }

    #[test]
    fn tar_paths_that_cannot_fit_are_named() {
        let mut w = TarWriter::new();
        let e = w
            .append(&"x".repeat(120), 0o644, Kind::File(b""))
            .unwrap_err();
        assert!(e.to_string().contains("too long"), "{e}");
    }
}
