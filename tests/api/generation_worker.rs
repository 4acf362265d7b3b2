//! The generation worker against a slow kie.ai: a result that arrives after its owner erased the
//! account is not kept, and slow provider calls hold no database connection (more job slots
//! than pooled connections still finish every generation, without a lease ever lapsing).

use std::time::{Duration, Instant};

use atelier::db::schema::{generations, jobs};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::json;
use uuid::Uuid;

use crate::fakes::kie::{API_KEY, FakeKie, Mode};
use crate::helpers::{TestApp, TestUser, Worker, spawn_app_with};

async fn kie_app(kie: &FakeKie, extra: &[(&str, &str)]) -> TestApp {
    let mut env = vec![
        ("FREE_ACTIONS_PER_MONTH", "0"),
        ("KIE_API_KEY", API_KEY),
        ("KIE_BASE_URL", kie.base_url.as_str()),
        ("WORKER_BACKOFF_BASE_MS", "50"),
        ("WORKER_BACKOFF_MAX_SECS", "1"),
    ];
    env.extend_from_slice(extra);
    spawn_app_with(&env).await
}

async fn generate(user: &TestUser<'_>, upload: Uuid, crid: &str) -> Uuid {
    user.edit(&json!({"upload_id": upload, "prompt": "rain", "client_request_id": crid}))
        .await
        .id
}

/// Every file under the storage directory's `dir`.
fn files_under(app: &TestApp, dir: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![std::path::Path::new(&app.storage_dir).join(dir)];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_result_arriving_after_the_owner_erased_the_account_is_deleted() {
    let kie = FakeKie::start().await;
    kie.hold_results();
    let app = kie_app(&kie, &[]).await;
    let anna = app.user().await;
    anna.grant(1).await;
    let upload = anna.upload_editing().await.id;
    let id = generate(&anna, upload, "late").await;
    let _worker = Worker::start(&app);
    // The worker is downloading the result, past every earlier check of the generation.
    until("the result download", async || {
        kie.requests()
            .iter()
            .any(|r| r.path.starts_with("/results/"))
    })
    .await;
    anna.erase().await;
    kie.release_results();
    let mut conn = app.conn().await;
    let job_done = async || {
        let statuses: Vec<String> = jobs::table
            .filter(jobs::kind.eq("generation"))
            .select(jobs::status)
            .load(&mut app.conn().await)
            .await
            .unwrap();
        statuses.iter().all(|s| s == "succeeded" || s == "failed")
    };
    until("the job to end", job_done).await;
    let rows: i64 = generations::table
        .filter(generations::id.eq(id))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows, 0);
    assert_eq!(files_under(&app, "r"), Vec::<std::path::PathBuf>::new());
}

#[tokio::test]
async fn eight_job_slots_on_two_connections_finish_every_generation_without_a_lease_lapse() {
    const N: usize = 8;
    let kie = FakeKie::start().await;
    // Every task creation takes longer than a lease: a step that held its connection through
    // it would keep the lease from being renewed (and starve the other slots).
    for _ in 0..N {
        kie.push_create(Mode::SlowReply(Duration::from_millis(4500)));
    }
    let app = kie_app(
        &kie,
        &[
            ("DATABASE_POOL_SIZE", "2"),
            ("WORKER_CONCURRENCY", "8"),
            ("WORKER_LEASE_SECS", "3"),
            ("MAX_ACTIVE_TASKS_PER_USER", "8"),
        ],
    )
    .await;
    let anna = app.user().await;
    anna.grant(N as i64).await;
    let upload = anna.upload_editing().await.id;
    let mut ids = Vec::new();
    for i in 0..N {
        ids.push(generate(&anna, upload, &format!("slot{i}")).await);
    }
    let _worker = Worker::start(&app);
    // Watched from outside the pool: a running job whose lease has run out.
    let watcher = tokio::spawn({
        let url = app.database_url.clone();
        async move {
            use diesel_async::AsyncConnection as _;
            let mut conn = diesel_async::AsyncPgConnection::establish(&url)
                .await
                .unwrap();
            let mut lapsed = 0;
            loop {
                let n: i64 = jobs::table
                    .filter(jobs::kind.eq("generation"))
                    .filter(jobs::status.eq("running"))
                    .filter(jobs::locked_until.lt(diesel::dsl::now))
                    .count()
                    .get_result(&mut conn)
                    .await
                    .unwrap();
                lapsed += n;
                let open: i64 = jobs::table
                    .filter(jobs::kind.eq("generation"))
                    .filter(jobs::status.eq_any(["queued", "running"]))
                    .count()
                    .get_result(&mut conn)
                    .await
                    .unwrap();
                if open == 0 {
                    return lapsed;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    for id in &ids {
        anna.wait_for_status(*id, "succeeded").await;
    }
    let lapsed = tokio::time::timeout(Duration::from_secs(30), watcher)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lapsed, 0, "leases ran out while their jobs were running");
    assert_eq!(kie.create_calls().len(), N, "one task per generation");
}
