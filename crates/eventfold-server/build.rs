//! Generates the messages and services of KurrentDB's gRPC protocol from `proto/`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // A persistent subscription's event has the fields of a read's, number for number:
    // one Rust type serves both.
    config.extern_path(
        ".event_store.client.persistent_subscriptions.ReadResp.ReadEvent.RecordedEvent",
        "crate::grpc::proto::streams::read_resp::read_event::RecordedEvent",
    );
    let include = protoc_bin_vendored::include_path()?;
    let include = include
        .to_str()
        .ok_or("the path of protoc's include directory is not UTF-8")?;
    tonic_prost_build::configure()
        .build_client(false)
        .compile_with_config(
            config,
            &[
                "proto/streams.proto",
                "proto/gossip.proto",
                "proto/serverfeatures.proto",
                "proto/persistent.proto",
            ],
            &["proto", include],
        )?;
    Ok(())
}
