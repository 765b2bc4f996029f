//! The distributed lock API (`lock.redis`) over HTTP and gRPC, against the
//! machine's Redis, and a Redis of the test's own that is stopped mid-test.

use std::time::Duration;

use dapr::dapr::proto::runtime::v1 as pb;
use serde_json::{Value, json};
use test_support::sidecar::*;
use tonic::Code;

use super::grpc::client;
use super::state::{sidecar_with_component, unique};

/// POSTs `body` to the lock API's `path` (`lock/{store}` or
/// `unlock/{store}`) of `sidecar`.
async fn lock_call(sidecar: &RunningSidecar, path: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(sidecar.url(&format!("/v1.0-alpha1/{path}")))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The JSON answer of a lock call that succeeded.
async fn answer(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn try_lock(resource: &str, owner: &str, expiry: i32) -> Value {
    json!({"resourceId": resource, "lockOwner": owner, "expiryInSeconds": expiry})
}

fn unlock(resource: &str, owner: &str) -> Value {
    json!({"resourceId": resource, "lockOwner": owner})
}

#[tokio::test]
#[ignore = "needs Redis on 127.0.0.1:6379 (scripts/test.sh starts it and runs this)"]
async fn redis_locks_are_taken_released_and_expire_as_daprd_s() {
    test_support::require_service("Redis", "127.0.0.1:6379");
    let app_id = unique("lock-suite");
    let (sidecar, _dirs) = sidecar_with_component(
        &app_id,
        "lockstore",
        "lock.redis",
        &[("redisHost", "127.0.0.1:6379")],
    )
    .await;

    // One owner takes it; nobody else, nor the owner again, can.
    let taken = lock_call(&sidecar, "lock/lockstore", try_lock("order-1", "a", 60)).await;
    assert_eq!(answer(taken).await, json!({"success": true}));
    for owner in ["b", "a"] {
        let refused = lock_call(&sidecar, "lock/lockstore", try_lock("order-1", owner, 60)).await;
        assert_eq!(answer(refused).await, json!({"success": false}), "{owner}");
    }
    // Redis holds it as daprd lays it out, with its expiry.
    let redis = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut connection = redis.get_multiplexed_async_connection().await.unwrap();
    let key = format!("lock||{app_id}||order-1");
    let (owner, ttl): (Option<String>, i64) = redis::pipe()
        .cmd("GET")
        .arg(&key)
        .cmd("TTL")
        .arg(&key)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(owner.as_deref(), Some("a"));
    assert!((1..=60).contains(&ttl), "{ttl}");

    // Only its owner releases it; then it is gone.
    let others = lock_call(&sidecar, "unlock/lockstore", unlock("order-1", "b")).await;
    assert_eq!(answer(others).await, json!({"status": 2}));
    let released = lock_call(&sidecar, "unlock/lockstore", unlock("order-1", "a")).await;
    assert_eq!(answer(released).await, json!({"status": 0}));
    let gone = lock_call(&sidecar, "unlock/lockstore", unlock("order-1", "a")).await;
    assert_eq!(answer(gone).await, json!({"status": 1}));
    // Free again, for anyone; the fields also as the proto names them, and
    // the expiry as protojson also reads an int32.
    let retaken = json!({"resource_id": "order-1", "lock_owner": "b", "expiry_in_seconds": "1"});
    let retaken = lock_call(&sidecar, "lock/lockstore", retaken).await;
    assert_eq!(answer(retaken).await, json!({"success": true}));
    // A lock expires: after its second, another owner gets it.
    test_support::wait_until(
        "the 1 s lock to expire",
        Duration::from_secs(10),
        || async {
            let call = lock_call(&sidecar, "lock/lockstore", try_lock("order-1", "c", 60)).await;
            answer(call).await == json!({"success": true})
        },
    )
    .await;

    // Over gRPC, the same store and the same rules.
    let mut dapr = client(&sidecar).await;
    let grpc_lock = |resource: &str, owner: &str, expiry: i32| pb::TryLockRequest {
        store_name: "lockstore".into(),
        resource_id: resource.into(),
        lock_owner: owner.into(),
        expiry_in_seconds: expiry,
    };
    let grpc_unlock = |resource: &str, owner: &str| pb::UnlockRequest {
        store_name: "lockstore".into(),
        resource_id: resource.into(),
        lock_owner: owner.into(),
    };
    let held = dapr
        .try_lock_alpha1(grpc_lock("order-1", "d", 60))
        .await
        .unwrap();
    assert!(!held.into_inner().success, "c holds it");
    let taken = dapr
        .try_lock_alpha1(grpc_lock("order-2", "d", 60))
        .await
        .unwrap();
    assert!(taken.into_inner().success);
    let status = |s: pb::unlock_response::Status| s as i32;
    let others = dapr
        .unlock_alpha1(grpc_unlock("order-2", "c"))
        .await
        .unwrap();
    assert_eq!(
        others.into_inner().status,
        status(pb::unlock_response::Status::LockBelongsToOthers)
    );
    let released = dapr
        .unlock_alpha1(grpc_unlock("order-2", "d"))
        .await
        .unwrap();
    assert_eq!(
        released.into_inner().status,
        status(pb::unlock_response::Status::Success)
    );
    let gone = dapr
        .unlock_alpha1(grpc_unlock("order-2", "d"))
        .await
        .unwrap();
    assert_eq!(
        gone.into_inner().status,
        status(pb::unlock_response::Status::LockDoesNotExist)
    );

    // Bad requests, as daprd answers them, over both APIs.
    let cases: [(&str, Value, u16, &str, Code); 6] = [
        (
            "lock/lockstore",
            try_lock("r", "a", 0),
            400,
            "ERR_MALFORMED_REQUEST",
            Code::InvalidArgument,
        ),
        (
            "lock/lockstore",
            try_lock("", "a", 10),
            400,
            "ERR_MALFORMED_REQUEST",
            Code::InvalidArgument,
        ),
        (
            "lock/lockstore",
            try_lock("r", "", 10),
            400,
            "ERR_MALFORMED_REQUEST",
            Code::InvalidArgument,
        ),
        (
            "lock/nostore",
            try_lock("r", "a", 10),
            400,
            "ERR_LOCK_STORE_NOT_FOUND",
            Code::InvalidArgument,
        ),
        (
            "lock/lockstore",
            try_lock("a||b", "a", 10),
            500,
            "ERR_TRY_LOCK",
            Code::Internal,
        ),
        (
            "unlock/lockstore",
            unlock("a||b", "a"),
            500,
            "ERR_UNLOCK",
            Code::Internal,
        ),
    ];
    for (path, body, status, code, grpc_code) in cases {
        let response = lock_call(&sidecar, path, body.clone()).await;
        assert_dapr_error(response, status, code).await;
        let (rpc, store) = path.split_once('/').unwrap();
        let field = |name: &str| body[name].as_str().unwrap_or_default().to_string();
        let refused = if rpc == "lock" {
            dapr.try_lock_alpha1(pb::TryLockRequest {
                store_name: store.into(),
                resource_id: field("resourceId"),
                lock_owner: field("lockOwner"),
                expiry_in_seconds: body["expiryInSeconds"].as_i64().unwrap() as i32,
            })
            .await
            .map(drop)
        } else {
            dapr.unlock_alpha1(grpc_unlock(&field("resourceId"), &field("lockOwner")))
                .await
                .map(drop)
        }
        .unwrap_err();
        assert_eq!(refused.code(), grpc_code, "{path} {body}: {refused:?}");
    }
    let garbage = reqwest::Client::new()
        .post(sidecar.url("/v1.0-alpha1/lock/lockstore"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_dapr_error(garbage, 400, "ERR_MALFORMED_REQUEST").await;
    sidecar.stop().await;
}

/// With no lock store, both APIs say so; a Redis that stops is a clean
/// `ERR_TRY_LOCK`/`ERR_UNLOCK`, and the sidecar goes on serving.
#[tokio::test]
#[ignore = "needs redis-server installed (scripts/test.sh installs it and runs this)"]
async fn no_lock_store_and_a_stopped_redis_are_clean_errors() {
    let data = tempfile::tempdir().unwrap();
    let bare = RunningSidecar::start(config("no-locks", None, data.path())).await;
    let response = lock_call(&bare, "lock/lockstore", try_lock("r", "a", 10)).await;
    assert_dapr_error(response, 500, "ERR_LOCK_STORE_NOT_CONFIGURED").await;
    let refused = client(&bare)
        .await
        .unlock_alpha1(pb::UnlockRequest {
            store_name: "lockstore".into(),
            resource_id: "r".into(),
            lock_owner: "a".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    bare.stop().await;

    let mut redis = test_support::RedisServer::start();
    let (sidecar, _dirs) = sidecar_with_component(
        &unique("lock-down"),
        "lockstore",
        "lock.redis",
        &[
            ("redisHost", &format!("127.0.0.1:{}", redis.port())),
            ("dialTimeout", "500ms"),
            ("readTimeout", "500ms"),
        ],
    )
    .await;
    let taken = lock_call(&sidecar, "lock/lockstore", try_lock("r", "a", 10)).await;
    assert_eq!(answer(taken).await, json!({"success": true}));
    redis.kill();
    let response = lock_call(&sidecar, "lock/lockstore", try_lock("r", "b", 10)).await;
    assert_dapr_error(response, 500, "ERR_TRY_LOCK").await;
    let response = lock_call(&sidecar, "unlock/lockstore", unlock("r", "a")).await;
    assert_dapr_error(response, 500, "ERR_UNLOCK").await;
    let health = reqwest::get(sidecar.url("/v1.0/healthz")).await.unwrap();
    assert_eq!(health.status(), 204);
    sidecar.stop().await;
}
