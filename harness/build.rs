//! Embeds the crate's fixtures/ and clusters/ into the `secnet` binary, so that a
//! copied or `cargo install`ed binary finds them without the checkout
//! (`secnet::bins::fixtures_dir`). Also generates the CRI client (proto/cri.proto)
//! with protox (pure Rust: no protoc on build machines).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    compile_cri();
    // Inside the crate, so that `cargo package` ships them and a crates.io build embeds them.
    let krate = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for top in ["fixtures", "clusters"] {
        println!("cargo:rerun-if-changed={}", krate.join(top).display());
        collect(krate, &krate.join(top), &mut files);
    }
    files.sort();
    let mut code =
        String::from("/// Files under fixtures/ and clusters/, relative to the harness crate.\n");
    code.push_str("pub static FILES: &[(&str, &[u8])] = &[\n");
    for (rel, abs) in &files {
        let _ = writeln!(
            code,
            "    ({rel:?}, include_bytes!({:?})),",
            abs.display().to_string()
        );
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("embedded_files.rs"), code).expect("write embedded_files.rs");
}

fn collect(repo: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(repo, &path, files);
        } else if path.is_file() {
            let rel = path.strip_prefix(repo).expect("under the crate");
            let abs = path.canonicalize().expect("canonical path");
            files.push((rel.display().to_string(), abs));
        }
    }
}

/// The CRI runtime.v1 client the containerd tier uses (`cluster::bare::cri`).
fn compile_cri() {
    const PROTO: &str = "proto/cri.proto";
    println!("cargo:rerun-if-changed={PROTO}");
    let descriptors = protox::compile([PROTO], ["proto"]).expect("proto/cri.proto compiles");
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(descriptors)
        .expect("generate the CRI client");
}
