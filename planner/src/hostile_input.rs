//! Hostile input never panics (issue 11): descriptors, records and protocol
//! messages, each a corpus of real encodings, truncated, bit-flipped,
//! overwritten, or replaced by random bytes, decode to a value or to an
//! error naming what was wrong, never a panic, an abort, an unbounded
//! allocation or a hang. Case counts are bounded so CI runs them on every
//! push in seconds.

use crate::codec::{decode_bounded, decode_record, encode_into};
use crate::function::FnRef;
use crate::ids::{ExecutorId, JobId, ShuffleId, StageId, TaskId};
use crate::proto::convert::status_from_proto;
use crate::proto::v1;
use crate::task::*;
use proptest::prelude::*;
use prost::Message as _;

fn factory(_: &[u8]) -> Result<Box<dyn std::any::Any + Send + Sync>, crate::PipelineError> {
    Ok(Box::new(()))
}

fn id(partition: u32) -> TaskId {
    TaskId {
        job: JobId(7),
        stage: StageId(3),
        partition,
        attempt: 1,
    }
}

fn block(map: u32) -> BlockLocation {
    BlockLocation {
        path: format!("shuffle/job-7/shuffle-2/map-{map}/attempt-0.data"),
        map_partition: map,
        offset: 4096 * u64::from(map),
        len: 1234,
        checksum: 0xdead_beef ^ map,
    }
}

/// Stage specs of every sink, as the driver builds them.
pub(crate) fn stage_specs() -> Vec<StageSpec> {
    let mut state = Vec::new();
    encode_into(&("a closure's state", 42u64, vec![1.5f64, 2.5]), &mut state).unwrap();
    let ops = vec![
        FnRef::new(factory, state.clone(), "map at examples/wordcount.rs:12"),
        FnRef::new(factory, Vec::new(), "shuffle writer"),
    ];
    let sinks = [
        StageSink::Shuffle {
            shuffle: ShuffleId(2),
            writer: 1,
            partitions: 200,
        },
        StageSink::Result { op: 0 },
        StageSink::SaveText {
            op: 0,
            dir: "s3://bucket/out/dir".into(),
        },
        StageSink::Arrow {
            shuffle: ShuffleId(4),
            op: 1,
        },
        StageSink::Sql {
            plan: (0..200u8).collect(),
            output: SqlOutput::Files {
                dir: "file:///tmp/out".into(),
                format: FileFormat::Parquet,
            },
        },
    ];
    sinks
        .into_iter()
        .map(|sink| StageSpec {
            job: JobId(7),
            stage: StageId(3),
            attempt: 0,
            ops: ops.clone(),
            sink,
        })
        .collect()
}

/// Task specs of every partition plan.
pub(crate) fn task_specs() -> Vec<TaskSpec> {
    let split = FileSplit {
        url: "file:///data/input.txt.gz".into(),
        start: 0,
        end: 1 << 20,
        size: 1 << 20,
        compression: Compression::Gzip,
    };
    let shuffled = PartitionPlan::Shuffled {
        op: 2,
        inputs: vec![ShuffleInput {
            shuffle: ShuffleId(2),
            partition: 5,
            blocks: (0..8).map(block).collect(),
        }],
    };
    let plans = vec![
        PartitionPlan::Parallelize {
            op: 0,
            data: b"\x03abc\x03def".to_vec(),
        },
        PartitionPlan::TextFile(split.clone()),
        shuffled.clone(),
        PartitionPlan::Narrow {
            op: 1,
            input: Box::new(PartitionPlan::TextFile(split)),
        },
        PartitionPlan::Sql { partition: 9 },
        PartitionPlan::ArrowBlocks {
            op: 0,
            shuffle: ShuffleId(4),
            blocks: vec![block(1)],
        },
        PartitionPlan::Concat {
            op: 3,
            inputs: vec![shuffled, PartitionPlan::Sql { partition: 1 }],
        },
    ];
    plans
        .into_iter()
        .enumerate()
        .map(|(p, plan)| TaskSpec {
            id: id(p as u32),
            plan,
        })
        .collect()
}

/// Statuses of every outcome.
pub(crate) fn statuses() -> Vec<TaskStatus> {
    let results = vec![
        Ok(TaskOutput::Shuffle(MapStatus {
            data_path: block(0).path,
            blocks: (0..16)
                .map(|p| BlockInfo {
                    offset: 100 * p,
                    len: 100,
                    rows: 7,
                    checksum: p as u32,
                })
                .collect(),
        })),
        Ok(TaskOutput::Result(vec![1, 2, 3, 4])),
        Ok(TaskOutput::Written {
            path: "s3://bucket/out/part-00001".into(),
        }),
        Err(TaskFailure {
            kind: FailureKind::FetchFailed {
                shuffle: ShuffleId(2),
                map_partition: 3,
                data_path: block(3).path,
            },
            message: "fetching map partition 3".into(),
        }),
        Err(TaskFailure {
            kind: FailureKind::User,
            message: "panicked at src/main.rs:1: boom".into(),
        }),
    ];
    results
        .into_iter()
        .enumerate()
        .map(|(p, result)| TaskStatus {
            id: id(p as u32),
            executor: ExecutorId(1),
            result,
            metrics: TaskMetrics {
                run_micros: 1234,
                records_read: 99,
                ..TaskMetrics::default()
            },
        })
        .collect()
}

/// A corrupted copy of one of `corpus`: truncated, a bit flipped, a byte
/// overwritten, a run of bytes overwritten, or wholly random bytes.
pub(crate) fn mutated(corpus: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let n = corpus.len();
    (
        0..n,
        0..5u8,
        any::<prop::sample::Index>(),
        any::<u8>(),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(move |(which, how, at, byte, random)| {
            let how = crate::corrupt::Corruption::ALL[usize::from(how)];
            crate::corrupt::corrupt(&corpus[which], how, at.index(usize::MAX), byte, &random)
        })
}

/// A property test's settings: `cases` runs, no persistence file.
pub(crate) fn cases(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn encoded<T: serde::Serialize>(values: &[T]) -> Vec<Vec<u8>> {
    values.iter().map(|v| encode(v).unwrap()).collect()
}

/// `error` names what was being decoded.
fn names_descriptor(error: &crate::PipelineError) -> bool {
    let text = crate::report(error);
    text.contains("decoding a descriptor")
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn stage_specs_decode_or_say_why(bytes in mutated(encoded(&stage_specs()))) {
        if let Err(e) = decode::<StageSpec>(&bytes) {
            prop_assert!(names_descriptor(&e), "{}", crate::report(&e));
        }
    }

    #[test]
    fn task_specs_decode_or_say_why(bytes in mutated(encoded(&task_specs()))) {
        if let Err(e) = decode::<TaskSpec>(&bytes) {
            prop_assert!(names_descriptor(&e), "{}", crate::report(&e));
        }
    }

    #[test]
    fn statuses_decode_or_say_why(bytes in mutated(encoded(&statuses()))) {
        if let Err(e) = decode::<TaskStatus>(&bytes) {
            prop_assert!(names_descriptor(&e), "{}", crate::report(&e));
        }
    }

    #[test]
    fn shuffle_indexes_decode_or_say_why(bytes in mutated(statuses().into_iter().filter_map(|s| match s.result {
        Ok(TaskOutput::Shuffle(m)) => Some(encode(&m.blocks).unwrap()),
        _ => None,
    }).collect())) {
        if let Err(e) = decode::<Vec<BlockInfo>>(&bytes) {
            prop_assert!(names_descriptor(&e), "{}", crate::report(&e));
        }
    }

    #[test]
    fn records_decode_or_say_why(bytes in mutated({
        let mut records = Vec::new();
        for r in [("word".to_string(), 3u64, vec!["a".to_string(); 3]), ("".into(), u64::MAX, vec![])] {
            let mut out = Vec::new();
            encode_into(&r, &mut out).unwrap();
            records.push(out);
        }
        records
    })) {
        if let Err(e) = decode_record::<(String, u64, Vec<String>)>(&bytes) {
            prop_assert!(crate::report(&e).contains("decoding a record"), "{}", crate::report(&e));
        }
    }

    #[test]
    fn launch_requests_decode_or_say_why(bytes in mutated(launch_requests())) {
        // As the executor does: the message, then each descriptor in it.
        if let Ok(request) = v1::LaunchTasksRequest::decode(bytes.as_slice()) {
            for stage in request.stages {
                if let Err(e) = decode::<StageSpec>(&stage.spec) {
                    prop_assert!(names_descriptor(&e));
                }
            }
            for task in request.tasks {
                if let Err(e) = decode::<TaskSpec>(&task.spec) {
                    prop_assert!(names_descriptor(&e));
                }
            }
        }
    }

    #[test]
    fn status_reports_decode_or_say_why(bytes in mutated(status_reports())) {
        // As the driver does: the message, then each status in it.
        match v1::ReportTaskStatusRequest::decode(bytes.as_slice()) {
            Ok(request) => {
                for status in request.statuses {
                    if let Err(e) = status_from_proto(status, ExecutorId(request.executor_id)) {
                        prop_assert!(e.to_string().starts_with("invalid "), "{e}");
                    }
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn registrations_and_heartbeats_decode_or_say_why(bytes in mutated(registrations())) {
        let _ = v1::RegisterExecutorRequest::decode(bytes.as_slice());
        let _ = v1::HeartbeatRequest::decode(bytes.as_slice());
    }
}

/// Real `LaunchTasksRequest`s, as the driver sends them.
fn launch_requests() -> Vec<Vec<u8>> {
    let stages: Vec<v1::StageDefinition> = stage_specs()
        .iter()
        .map(|s| v1::StageDefinition {
            job: s.job.0,
            stage: s.stage.0,
            spec: encode(s).unwrap(),
        })
        .collect();
    let tasks: Vec<v1::TaskDefinition> = task_specs()
        .iter()
        .map(|t| v1::TaskDefinition {
            task: Some(t.id.into()),
            spec: encode(t).unwrap(),
        })
        .collect();
    (0..stages.len())
        .map(|i| {
            v1::LaunchTasksRequest {
                stages: vec![stages[i].clone()],
                tasks: tasks[i..].to_vec(),
                executor_id: Some(i as u32),
                build_id: format!("{}-{}", "ab".repeat(32), 1 << 20),
            }
            .encode_to_vec()
        })
        .collect()
}

/// Real `ReportTaskStatusRequest`s, as executors send them.
fn status_reports() -> Vec<Vec<u8>> {
    let statuses: Vec<v1::TaskStatus> = statuses().iter().map(Into::into).collect();
    (0..statuses.len())
        .map(|i| {
            v1::ReportTaskStatusRequest {
                executor_id: 1,
                statuses: statuses[i..].to_vec(),
            }
            .encode_to_vec()
        })
        .collect()
}

/// Real registrations and heartbeats.
fn registrations() -> Vec<Vec<u8>> {
    vec![
        v1::RegisterExecutorRequest {
            protocol_version: crate::proto::PROTOCOL_VERSION,
            build_id: "3f2a9c0e5b7d1e4f".into(),
            address: "http://10.0.0.7:7078".into(),
            cores: 8,
            memory_bytes: 16 << 30,
            host: "worker-7".into(),
        }
        .encode_to_vec(),
        v1::HeartbeatRequest {
            executor_id: 3,
            running: vec![v1::RunningTask {
                task: Some(id(4).into()),
                elapsed_micros: 1_000_000,
            }],
        }
        .encode_to_vec(),
    ]
}

/// bincode's varint of `n` as a full `u64` (marker 253, 8 bytes LE).
fn huge_length(n: u64) -> Vec<u8> {
    let mut out = vec![253];
    out.extend_from_slice(&n.to_le_bytes());
    out
}

#[test]
fn a_string_declaring_an_exabyte_is_refused_before_allocating() {
    // bincode allocates a string's declared length before reading it: with
    // no limit, these nine bytes aborted the process (the allocation of
    // 2^60 bytes fails).
    let bytes = huge_length(1 << 60);
    let e = decode::<String>(&bytes).unwrap_err();
    let text = crate::report(&e);
    assert!(
        text.contains("decoding a descriptor") && text.contains("declares more than it can hold"),
        "{text}"
    );
    let e = decode_record::<String>(&bytes).unwrap_err();
    assert!(crate::report(&e).contains("declares more"), "{e}");
    // A length just past the input is refused the same way, and without
    // allocating it either.
    assert!(decode_bounded::<String>(&huge_length(2 << 20)).is_err());
}

#[test]
fn large_valid_inputs_still_decode() {
    // The limit grows with the input: a 40 MiB record (well above the
    // smallest limits) decodes.
    let big = "x".repeat(40 << 20);
    let mut bytes = Vec::new();
    encode_into(&big, &mut bytes).unwrap();
    assert_eq!(decode_record::<String>(&bytes).unwrap().len(), big.len());
    // Integers claim 8 bytes each whatever their encoding: a vector of a
    // million small u64s (1 byte each on the wire) still decodes.
    let numbers = vec![1u64; 1 << 20];
    let back: Vec<u64> = decode(&encode(&numbers).unwrap()).unwrap();
    assert_eq!(back, numbers);
}

/// A task whose plan nests `depth` narrow operations.
fn nested_task(depth: usize) -> Vec<u8> {
    // id: 4 varints; then `depth` times Narrow (variant 3) with op 0; then
    // Sql (variant 4) of partition 0.
    let mut bytes = vec![7, 3, 0, 1];
    for _ in 0..depth {
        bytes.extend_from_slice(&[3, 0]);
    }
    bytes.extend_from_slice(&[4, 0]);
    bytes
}

#[test]
fn deeply_nested_plans_are_refused_not_a_stack_overflow() {
    // Two bytes a level: 4 MB of input overflowed the decoding thread's
    // stack (an abort) before plans were bounded.
    let e = decode::<TaskSpec>(&nested_task(2_000_000)).unwrap_err();
    assert!(
        crate::report(&e).contains("nested deeper than 512"),
        "{}",
        crate::report(&e)
    );
    // Concat nests as well.
    let mut bytes = vec![7, 3, 0, 1];
    for _ in 0..100_000 {
        bytes.extend_from_slice(&[6, 0, 1]);
    }
    assert!(decode::<TaskSpec>(&bytes).is_err());
}

#[test]
fn deepest_accepted_plan_decodes_on_a_small_stack() {
    let bytes = nested_task(MAX_PLAN_DEPTH);
    let decoded = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || decode::<TaskSpec>(&bytes).map(|_| ()))
        .unwrap()
        .join()
        .unwrap();
    decoded.unwrap();
    // And the depth is counted afresh by the next decode on the thread.
    decode::<TaskSpec>(&nested_task(MAX_PLAN_DEPTH)).unwrap();
    assert!(decode::<TaskSpec>(&nested_task(MAX_PLAN_DEPTH + 1)).is_err());
    decode::<TaskSpec>(&nested_task(MAX_PLAN_DEPTH)).unwrap();
}

/// A recursive record type, as a user may write one.
#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
enum Tree {
    Leaf(u32),
    Node(Box<Tree>, Option<Box<Tree>>),
}

fn chain(depth: usize) -> Tree {
    (0..depth).fold(Tree::Leaf(1), |t, _| Tree::Node(Box::new(t), None))
}

#[test]
fn deeply_nested_records_are_refused_not_a_stack_overflow() {
    // One byte a level (the variant tag) and a tag-only leaf: 4 MB of it
    // overflowed the decoding thread's stack, an abort, before records
    // were guarded.
    let mut bytes = vec![1u8; 4_000_000];
    bytes.extend_from_slice(&[0, 1]);
    let e = decode_record::<Tree>(&bytes).unwrap_err();
    let text = crate::report(&e);
    assert!(
        text.contains("decoding a record") && text.contains("deeper than 256 levels"),
        "{text}"
    );
    // The deepest value accepted decodes on a small stack: each `Node`
    // is two serde levels (the enum and its tuple variant), the leaf one.
    let deepest = (crate::decode_guard::MAX_DEPTH as usize - 1) / 2;
    let tree = chain(deepest);
    let mut encoded = Vec::new();
    encode_into(&tree, &mut encoded).unwrap();
    let back = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || decode_record::<Tree>(&encoded).unwrap())
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(back, tree);
    let mut encoded = Vec::new();
    encode_into(&chain(deepest + 1), &mut encoded).unwrap();
    assert!(decode_record::<Tree>(&encoded).is_err());
}

#[test]
fn a_sequence_of_zero_sized_values_cannot_spin() {
    // A `Vec<()>` reads no byte per element: nine bytes declaring 2^60 of
    // them spun for ever before records were guarded.
    let started = std::time::Instant::now();
    let e = decode_record::<Vec<()>>(&huge_length(1 << 60)).unwrap_err();
    assert!(crate::report(&e).contains("elements"), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    // Real ones decode.
    let mut encoded = Vec::new();
    encode_into(&vec![(); 1000], &mut encoded).unwrap();
    assert_eq!(decode_record::<Vec<()>>(&encoded).unwrap().len(), 1000);
}
