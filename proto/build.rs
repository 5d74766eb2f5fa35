// Generates the gRPC service and the link frames from `proto/` with a vendored
// protoc, so a fresh clone builds with `cargo build` alone.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    config.bytes(["."]);
    // The control API's descriptors are served by gRPC reflection, so stock
    // tools can call it with no `.proto` at hand; the link's stay private.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure().file_descriptor_set_path(out.join("slip_v1_descriptor.bin")).compile_with_config(
        config,
        &["proto/slip/v1/control.proto"],
        &["proto"],
    )?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    config.bytes(["."]);
    tonic_prost_build::configure().compile_with_config(config, &["proto/slip/link/v1/link.proto"], &["proto"])?;
    Ok(())
}
