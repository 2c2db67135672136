//! Prerequisites of a test tier. Outside CI a missing one skips the test with a
//! visible message; under `CI=true` it fails the test, never a silent skip.

/// True when running under CI (`CI` set to anything but empty/`false`/`0`).
pub(crate) fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Returns whether `what` (a test) may run; panics under CI when `missing` is Some.
pub fn require(what: &str, missing: Option<impl std::fmt::Display>) -> bool {
    match missing {
        None => true,
        Some(reason) if in_ci() => panic!("{what}: prerequisite missing under CI=true: {reason}"),
        Some(reason) => {
            eprintln!("SKIPPED {what}: {reason}");
            false
        }
    }
}

/// Root is needed for network namespaces.
pub fn require_root(what: &str) -> bool {
    require(
        what,
        (!is_root())
            .then(|| "needs root for network namespaces (run the tests as root)".to_string()),
    )
}

/// Where `program` is: a path (with a `/`) if that file exists, else the first
/// match on PATH.
pub(crate) fn find_program(program: &str) -> Option<std::path::PathBuf> {
    if program.contains('/') {
        let p = std::path::PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// A program on PATH or at an absolute path.
pub fn require_program(what: &str, program: &str, package: &str) -> bool {
    let found = find_program(program).is_some();
    require(
        what,
        (!found).then(|| format!("{program} not found: apt-get install {package}")),
    )
}
