//! The jobs API over HTTP, `/v1.0/jobs/{name}` and `/v1.0-alpha1/jobs/{name}`,
//! as daprd serves it:
//!
//! - `POST` schedules: `{"schedule": "@every 1m", "dueTime": "10s",
//!   "repeats": 3, "ttl": "1h", "data": <any JSON>, "overwrite": false,
//!   "failurePolicy": {"constant": {"interval": "5s", "maxRetries": 3}}}`
//!   (or `{"drop": {}}`); 204;
//! - `GET` answers the job as protojson: its fields, and `data` as an
//!   `Any` (`{"@type": "type.googleapis.com/google.protobuf.Value",
//!   "value": <the JSON>}`);
//! - `DELETE` deletes it; 204.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use bytes::Bytes;
use dapr::dapr::proto::common::v1 as common;
use dapr::dapr::proto::runtime::v1 as pb;
use prost::Message;
use serde::Deserialize;
use serde_json::{Value, json};

use super::VALUE_TYPE_URL;
use crate::Sidecar;
use crate::error::DaprError;

/// The body of `POST /v1.0/jobs/{name}` (daprd's `JobHTTPRequest`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobBody {
    #[serde(default)]
    name: String,
    schedule: Option<String>,
    repeats: Option<u32>,
    #[serde(alias = "due_time")]
    due_time: Option<String>,
    ttl: Option<String>,
    data: Option<Value>,
    #[serde(default)]
    overwrite: bool,
    #[serde(alias = "failure_policy")]
    failure_policy: Option<FailurePolicyBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FailurePolicyBody {
    drop: Option<Value>,
    constant: Option<ConstantBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConstantBody {
    interval: Option<String>,
    #[serde(alias = "max_retries")]
    max_retries: Option<u32>,
}

impl FailurePolicyBody {
    pub(crate) fn policy(self) -> Result<common::JobFailurePolicy, DaprError> {
        use common::job_failure_policy::Policy;
        let policy = match (self.drop, self.constant) {
            (Some(_), None) => Policy::Drop(common::JobFailurePolicyDrop {}),
            (None, Some(constant)) => {
                let interval = constant
                    .interval
                    .map(|text| {
                        service_kit::units::parse_duration(&text)
                            .map_err(|e| {
                                DaprError::MalformedRequest(format!(
                                    "failurePolicy.constant.interval: {e}"
                                ))
                            })
                            .and_then(|d| {
                                prost_types::Duration::try_from(d).map_err(|e| {
                                    DaprError::MalformedRequest(format!(
                                        "failurePolicy.constant.interval: {e}"
                                    ))
                                })
                            })
                    })
                    .transpose()?;
                Policy::Constant(common::JobFailurePolicyConstant {
                    interval,
                    max_retries: constant.max_retries,
                })
            }
            _ => {
                return Err(DaprError::MalformedRequest(
                    "failurePolicy takes one of drop or constant".into(),
                ));
            }
        };
        Ok(common::JobFailurePolicy {
            policy: Some(policy),
        })
    }
}

/// `POST /v1.0/jobs/{name}`
pub(crate) async fn schedule(
    State(sidecar): State<Arc<Sidecar>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<StatusCode, DaprError> {
    let body: JobBody =
        serde_json::from_slice(&body).map_err(|e| DaprError::MalformedRequest(e.to_string()))?;
    if !body.name.is_empty() {
        return Err(DaprError::JobNameInUrl);
    }
    let data = body.data.map(|data| prost_types::Any {
        type_url: VALUE_TYPE_URL.into(),
        value: crate::proto_json::proto_of(data).encode_to_vec(),
    });
    let failure_policy = body
        .failure_policy
        .map(FailurePolicyBody::policy)
        .transpose()?;
    let job = pb::Job {
        name: name.trim().to_string(),
        schedule: body.schedule,
        repeats: body.repeats,
        due_time: body.due_time,
        ttl: body.ttl,
        data,
        failure_policy,
    };
    sidecar.schedule_job(Some(job), body.overwrite).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1.0/jobs/{name}`
pub(crate) async fn get(
    State(sidecar): State<Arc<Sidecar>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, DaprError> {
    let job = sidecar.get_job(&name).await?;
    Ok(Json(job_json(&job)))
}

/// `DELETE /v1.0/jobs/{name}`
pub(crate) async fn delete(
    State(sidecar): State<Arc<Sidecar>>,
    Path(name): Path<String>,
) -> Result<StatusCode, DaprError> {
    sidecar.delete_job(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A job as protojson writes `dapr.proto.runtime.v1.Job`.
fn job_json(job: &pb::Job) -> Value {
    let mut out = json!({ "name": job.name });
    if let Some(schedule) = &job.schedule {
        out["schedule"] = json!(schedule);
    }
    if let Some(repeats) = job.repeats {
        out["repeats"] = json!(repeats);
    }
    if let Some(due) = &job.due_time {
        out["dueTime"] = json!(due);
    }
    if let Some(ttl) = &job.ttl {
        out["ttl"] = json!(ttl);
    }
    if let Some(data) = &job.data {
        out["data"] = if data.type_url == VALUE_TYPE_URL {
            let value = prost_types::Value::decode(data.value.as_slice()).unwrap_or_default();
            json!({"@type": data.type_url, "value": crate::proto_json::json_of(&value)})
        } else {
            use base64::Engine;
            json!({
                "@type": data.type_url,
                "value": base64::engine::general_purpose::STANDARD.encode(&data.value),
            })
        };
    }
    use common::job_failure_policy::Policy;
    match job.failure_policy.as_ref().and_then(|p| p.policy.as_ref()) {
        Some(Policy::Drop(_)) => out["failurePolicy"] = json!({"drop": {}}),
        Some(Policy::Constant(constant)) => {
            let mut policy = json!({});
            if let Some(interval) = constant.interval {
                policy["interval"] = json!(format!(
                    "{}s",
                    interval.seconds as f64 + f64::from(interval.nanos) / 1e9
                ));
            }
            if let Some(max) = constant.max_retries {
                policy["maxRetries"] = json!(max);
            }
            out["failurePolicy"] = json!({ "constant": policy });
        }
        None => {}
    }
    out
}
