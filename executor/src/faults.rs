//! Where the executor applies the failpoints of `RIFFLE_FAILPOINTS`
//! ([`riffle_planner::failpoints`]): before a task runs, after a map task
//! stored its output, and in the heartbeat loop. With nothing configured
//! each call is one lookup in an empty list.

use crate::ExecutorEnv;
use crate::runner::{RunningTask, killed};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use riffle_planner::failpoints::{Action, Point, hit};
use riffle_planner::ids::{ExecutorId, TaskId};
use riffle_planner::task::{MapStatus, TaskFailure};

/// `task-fail` fails the task; `task-delay` holds it (a kill ends the wait).
pub(crate) async fn at_task_start(
    env: &ExecutorEnv,
    id: &TaskId,
    running: &RunningTask,
) -> Result<(), TaskFailure> {
    match hit(Point::TaskStart, Some(id), env.id) {
        Some(Action::TaskFail(kind)) => Err(TaskFailure {
            kind: kind.clone(),
            message: format!("{id}: injected failure (failpoint task-fail) on {}", env.id),
        }),
        Some(Action::TaskDelay(delay)) => {
            tracing::info!(task = %id, ?delay, "failpoint task-delay");
            tokio::select! {
                () = tokio::time::sleep(*delay) => Ok(()),
                () = running.killed() => Err(killed(*id, env.id)),
            }
        }
        _ => Ok(()),
    }
}

/// `map-output-delete` deletes the stored output (data and index), and
/// `map-output-corrupt` flips one byte in the middle of its first
/// non-empty block; the task still reports success, as a task whose disk
/// went bad afterwards would. Errors are logged: a failpoint must not turn
/// into a different fault.
pub(crate) async fn after_map_output(env: &ExecutorEnv, id: &TaskId, status: &MapStatus) {
    match hit(Point::MapOutputStored, Some(id), env.id) {
        Some(Action::MapOutputDelete) => {
            tracing::info!(task = %id, path = %status.data_path, "failpoint map-output-delete");
            if let Err(e) = env
                .shuffle
                .delete_outputs(std::slice::from_ref(&status.data_path))
                .await
            {
                tracing::warn!(task = %id, error = %e, "failpoint map-output-delete failed");
            }
        }
        Some(Action::MapOutputCorrupt) => {
            tracing::info!(task = %id, path = %status.data_path, "failpoint map-output-corrupt");
            if let Err(e) = corrupt(env, status).await {
                tracing::warn!(task = %id, error = %e, "failpoint map-output-corrupt failed");
            }
        }
        _ => {}
    }
}

async fn corrupt(env: &ExecutorEnv, status: &MapStatus) -> Result<(), object_store::Error> {
    let Some(block) = status.blocks.iter().find(|b| b.len > 0) else {
        return Ok(());
    };
    let path = Path::from(status.data_path.as_str());
    let mut bytes = env.shuffle.store.get(&path).await?.bytes().await?.to_vec();
    if let Some(byte) = bytes.get_mut((block.offset + block.len / 2) as usize) {
        *byte ^= 0x5a;
    }
    env.shuffle
        .store
        .put(&path, PutPayload::from(bytes))
        .await
        .map(drop)
}

/// Whether `heartbeat-drop` silences this executor.
pub(crate) fn drop_heartbeat(executor: ExecutorId) -> bool {
    matches!(
        hit(Point::Heartbeat, None, executor),
        Some(Action::HeartbeatDrop)
    )
}
