// Generates the gRPC service and the link frames from `proto/` with a vendored
// protoc, so a fresh clone builds with `cargo build` alone.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    config.bytes(["."]);
    tonic_prost_build::configure().compile_with_config(
        config,
        &["proto/slip/v1/control.proto", "proto/slip/link/v1/link.proto"],
        &["proto"],
    )?;
    Ok(())
}
