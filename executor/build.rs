//! Generates the gRPC service stubs of `planner/proto` (client and server),
//! reusing the message types riffle-planner generates (`extern_path`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../planner/proto");
    let fds = protox::compile(["riffle/v1/rpc.proto"], ["../planner/proto"])?;
    tonic_prost_build::configure()
        .extern_path(".riffle.v1", "::riffle_planner::proto::v1")
        .compile_fds(fds)?;
    Ok(())
}
