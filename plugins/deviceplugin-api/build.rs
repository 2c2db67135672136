//! Compiles the protos with protox (pure Rust: no protoc on build machines) and
//! generates the prost messages and tonic client/server code from them.

const PROTOS: [&str; 2] = ["proto/api.proto", "proto/podresources.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
