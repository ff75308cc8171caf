//! Generates the gRPC code for the shared protos with protox, a protobuf
//! compiler in Rust: no protoc on the machine, and the well-known types
//! (google/protobuf/timestamp.proto) come with it.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "../../api/hangup/notify/v1/notify.proto",
        "../proto/hangup/example/v1/subscription.proto",
    ];
    let fds = protox::compile(protos, ["../../api", "../proto"])?;
    // The client is for src/bin/client.rs (the interop matrix).
    tonic_prost_build::configure().compile_fds(fds)?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
