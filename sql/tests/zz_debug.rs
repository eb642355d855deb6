#![allow(clippy::unwrap_used, missing_docs)]
use datafusion::physical_plan::displayable;
use object_store::memory::InMemory;
use riffle_planner::ids::ShuffleId;
use riffle_shuffle::ShuffleStore;
use riffle_shuffle::stores::ObjectStores;
use riffle_sql::codec::{decode_plan, encode_plan};
use riffle_sql::engine::new_session;
use riffle_sql::stages::split;
use std::sync::Arc;

#[test]
fn debug_round_trip() {
    let sql = std::env::var("Q").unwrap();
    let shuffle = ShuffleStore::new(Arc::new(InMemory::new()), "shuffle".into());
    let ctx = new_session(2, ObjectStores::default(), shuffle).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let plan = rt.block_on(async {
        ctx.sql(&sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap()
    });
    let mut next = 0;
    let stages = split(plan, &mut || {
        next += 1;
        ShuffleId(next)
    })
    .unwrap();
    for s in stages {
        let bytes = encode_plan(s.plan.clone()).unwrap();
        let back = decode_plan(&bytes, &ctx.task_ctx()).unwrap();
        println!(
            "PLANNED\n{}\nDECODED\n{}",
            displayable(s.plan.as_ref()).indent(true),
            displayable(back.as_ref()).indent(true)
        );
        if std::env::var("V").is_ok() {
            println!("{:?}\n-----\n{:?}", s.plan, back);
        }
    }
}
