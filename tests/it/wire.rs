//! Bad input on the wire: each gets a clear error and changes nothing.

use bytes::{Buf, BufMut};
use prost::Message;
use riffle::prelude::*;
use riffle_executor::rpc::v1::driver_service_client::DriverServiceClient;
use riffle_planner::proto::{PROTOCOL_VERSION, v1};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// The shared secret of the drivers these tests start.
pub(crate) const SECRET: &str = "wire-test-secret";

/// A driver with no executors, listening on a free loopback port.
fn driver() -> Context {
    Context::builder()
        .master("riffle://127.0.0.1:0")
        .min_executors(0)
        .secret(SECRET)
        .build()
        .unwrap()
}

/// This binary's build id (always computable in tests).
pub(crate) fn build_id() -> &'static str {
    riffle_executor::build_id::build_id().unwrap()
}

/// A driver client carrying `secret`.
pub(crate) async fn client_with(
    url: &str,
    secret: &str,
) -> DriverServiceClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        riffle_executor::rpc::ClientAuth,
    >,
> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let auth = riffle_executor::rpc::Auth::new(
        riffle_executor::secret::Secret::new(secret, "test").unwrap(),
    );
    DriverServiceClient::with_interceptor(channel, auth.client())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Sends raw bytes as a request body, to test what the server does with
/// messages no well-behaved client would produce.
#[derive(Default)]
struct RawCodec;

struct RawEncoder;
struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let bytes = src.copy_to_bytes(src.remaining()).to_vec();
        Ok(Some(bytes))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

async fn raw_call(url: &str, method: &str, body: Vec<u8>) -> Result<Vec<u8>, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = format!("/riffle.v1.DriverService/{method}")
        .parse()
        .unwrap();
    let mut request = tonic::Request::new(body);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {SECRET}").parse().unwrap());
    grpc.unary(request, path, RawCodec)
        .await
        .map(|r| r.into_inner())
}

fn registration(build_id: &str) -> v1::RegisterExecutorRequest {
    v1::RegisterExecutorRequest {
        protocol_version: PROTOCOL_VERSION,
        build_id: build_id.to_string(),
        address: "http://127.0.0.1:9".into(),
        cores: 1,
        memory_bytes: 0,
        host: "test".into(),
    }
}

#[test]
fn malformed_and_truncated_messages_are_refused() {
    let ctx = driver();
    let url = ctx.driver_url().unwrap().to_string();
    let rt = runtime();
    let valid = registration(build_id()).encode_to_vec();
    let truncated = valid[..valid.len() / 2].to_vec();
    let err = rt
        .block_on(raw_call(&url, "RegisterExecutor", truncated))
        .unwrap_err();
    assert_ne!(err.code(), tonic::Code::Ok);
    assert!(err.message().to_lowercase().contains("decode"), "{err:?}");
    let garbage = vec![0xff; 37];
    let err = rt
        .block_on(raw_call(&url, "RegisterExecutor", garbage))
        .unwrap_err();
    assert!(err.message().to_lowercase().contains("decode"), "{err:?}");
    assert!(
        ctx.executors().is_empty(),
        "a bad message registered an executor"
    );
}

#[test]
fn wrong_versions_statuses_of_strangers_and_unknown_tasks_are_refused() {
    let ctx = driver();
    let url = ctx.driver_url().unwrap().to_string();
    let rt = runtime();
    rt.block_on(async {
        let mut client = client_with(&url, SECRET).await;

        let err = client
            .register_executor(registration("some-other-build"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        assert!(err.message().contains("some-other-build"), "{err:?}");
        assert!(err.message().contains(build_id()), "{err:?}");
        let mut old = registration(build_id());
        old.protocol_version = 999;
        let err = client.register_executor(old).await.unwrap_err();
        assert!(err.message().contains("protocol version 999"), "{err:?}");
        assert!(ctx.executors().is_empty());

        let status = v1::TaskStatus {
            task: Some(v1::TaskKey {
                job: 0,
                stage: 0,
                partition: 0,
                attempt: 0,
            }),
            outcome: Some(v1::task_status::Outcome::ResultBytes(vec![1])),
            metrics: None,
        };
        let err = client
            .report_task_status(v1::ReportTaskStatusRequest {
                executor_id: 42,
                statuses: vec![status.clone()],
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        assert!(
            err.message()
                .contains("from executor-42, which is not registered"),
            "{err:?}"
        );

        // A registered executor reporting a task it was never given.
        let id = client
            .register_executor(registration(build_id()))
            .await
            .unwrap()
            .into_inner()
            .executor_id;
        let err = client
            .report_task_status(v1::ReportTaskStatusRequest {
                executor_id: id,
                statuses: vec![status],
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        assert!(
            err.message().contains("unknown task job-0/stage-0/task-0"),
            "{err:?}"
        );
        // A status without its outcome is named as such.
        let empty = v1::TaskStatus {
            task: Some(v1::TaskKey::default()),
            outcome: None,
            metrics: None,
        };
        let err = client
            .report_task_status(v1::ReportTaskStatusRequest {
                executor_id: id,
                statuses: vec![empty],
            })
            .await
            .unwrap_err();
        assert!(err.message().contains("`outcome` is missing"), "{err:?}");
    });
    assert_eq!(ctx.executors().len(), 1);
}
