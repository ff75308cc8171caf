//! Generates the Volo-gRPC code for the shared protos with volo-build
//! (pilota), whose parser is written in Rust: no protoc needed.

fn main() {
    volo_build::Builder::protobuf()
        .add_service("../../api/hangup/notify/v1/notify.proto")
        .add_service("../proto/hangup/example/v1/subscription.proto")
        .include_dirs(vec!["../../api".into(), "../proto".into()])
        .write()
        .expect("generate Volo code for the hangup protos");
}
