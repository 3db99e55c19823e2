//! The Open Inference Protocol (KServe "V2", REST), beside the course's
//! `/predict`, so clients and gateways written for inference servers (KServe,
//! Triton, MLServer) talk to an endpoint unchanged.
//!
//! The model's input is the entity key, one `BYTES` tensor named after the
//! join key (`user_id`); the features are looked up in the online store as for
//! `/predict`. Outputs are `probability` (`FP64`) and `prediction` (`INT64`),
//! one element per key. Errors are `{"error": …}` as the protocol says: 400
//! for a malformed request or an unknown key, 404 for another model's name,
//! 413 over `maxBatch`, 503 while no Production version is loaded.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{OpenApi, ToSchema};

use super::Serving;
use super::routes::{ApiError, Segment};

/// The route patterns of the protocol, as metric labels name them.
pub const ROUTES: [&str; 6] = [
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    "/v2/models/{model}",
    "/v2/models/{model}/ready",
    "/v2/models/{model}/infer",
];

/// The protocol's part of the endpoint's OpenAPI document (merged into it).
#[derive(OpenApi)]
#[openapi(
    paths(
        server_metadata,
        health_live,
        health_ready,
        model_metadata,
        model_ready_handler,
        infer_handler
    ),
    components(schemas(Tensor, RequestedOutput, InferRequest, InferResponse))
)]
pub struct ApiDoc;

/// The router of the protocol's routes (merged into the endpoint's).
pub fn router() -> axum::Router<Arc<Serving>> {
    use axum::routing::{get, post};
    let [server, live, ready, model, model_ready, infer] = ROUTES;
    axum::Router::new()
        .route(server, get(server_metadata))
        .route(live, get(health_live))
        .route(ready, get(health_ready))
        .route(model, get(model_metadata))
        .route(model_ready, get(model_ready_handler))
        .route(infer, post(infer_handler))
}

/// A tensor of a request or a response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tensor {
    /// Tensor name: the join key for the input, an output's name.
    pub name: String,
    /// Dimensions; their product is the number of elements.
    pub shape: Vec<i64>,
    /// Element type (`BYTES`, `FP64`, `INT64`).
    pub datatype: String,
    /// Extra parameters (accepted, unused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Elements in row-major order (nested arrays are flattened).
    #[schema(example = json!(["7590-VHVEG"]))]
    pub data: Value,
}

/// An output a request asks for.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestedOutput {
    /// `probability` or `prediction`.
    pub name: String,
    /// Extra parameters (accepted, unused).
    #[serde(default)]
    pub parameters: Option<Value>,
}

/// `POST /v2/models/{model}/infer`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InferRequest {
    /// Echoed in the response.
    #[serde(default)]
    pub id: Option<String>,
    /// Extra parameters (accepted, unused).
    #[serde(default)]
    pub parameters: Option<Value>,
    /// One tensor: the entity keys.
    pub inputs: Vec<Tensor>,
    /// The outputs wanted (default: both).
    #[serde(default)]
    pub outputs: Option<Vec<RequestedOutput>>,
}

/// The response of an inference.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InferResponse {
    /// The model's name.
    pub model_name: String,
    /// The version that answered.
    pub model_version: String,
    /// The request's id, when it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `probability` and/or `prediction`.
    pub outputs: Vec<Tensor>,
}

const OUTPUTS: [(&str, &str); 2] = [("probability", "FP64"), ("prediction", "INT64")];

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// `GET /v2`: who serves.
#[utoipa::path(get, path = "/v2", summary = "Who serves: name, version, extensions.", tag = "Open Inference Protocol (V2)",
    responses((status = 200, description = "Server name, version and extensions")))]
async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "reconcile",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": [],
    }))
}

/// `GET /v2/health/live`: the process answers.
#[utoipa::path(get, path = "/v2/health/live", summary = "Liveness.", tag = "Open Inference Protocol (V2)",
    responses((status = 200, description = "The process is up")))]
async fn health_live() -> Json<Value> {
    Json(json!({ "live": true }))
}

/// `GET /v2/health/ready`: a model is loaded and the online store answers (200), else 503.
#[utoipa::path(get, path = "/v2/health/ready", summary = "Readiness: a model is loaded and the online store answers.", tag = "Open Inference Protocol (V2)",
    responses((status = 200, description = "Ready to infer"), (status = 503, description = "Not ready")))]
async fn health_ready(State(s): State<Arc<Serving>>) -> Response {
    match s.readiness() {
        Ok(()) => Json(json!({ "ready": true })).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "error": e })),
        )
            .into_response(),
    }
}

/// 404 unless `name` is the model this endpoint serves.
fn check_model(s: &Serving, name: &str) -> Result<(), Response> {
    if name == s.model_name {
        Ok(())
    } else {
        Err(error(
            StatusCode::NOT_FOUND,
            format!(
                "this endpoint serves model `{}`, not `{name}`",
                s.model_name
            ),
        ))
    }
}

/// `GET /v2/models/{model}`: the served version, its input and its outputs.
#[utoipa::path(get, path = "/v2/models/{model}", summary = "The served version, its input and its outputs.", tag = "Open Inference Protocol (V2)", params(("model" = String, Path, description = "The served model's name, e.g. streamflow_churn")),
    responses((status = 200, description = "Versions, platform, input and outputs"),
        (status = 404, description = "Another model's name", body = ApiError),
        (status = 503, description = "No Production version", body = ApiError)))]
async fn model_metadata(State(s): State<Arc<Serving>>, Segment(name): Segment) -> Response {
    if let Err(r) = check_model(&s, &name) {
        return r;
    }
    let Some(model) = s.model.load_full() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, s.no_production());
    };
    let outputs: Vec<Value> = OUTPUTS
        .iter()
        .map(|(n, t)| json!({ "name": n, "datatype": t, "shape": [-1] }))
        .collect();
    Json(json!({
        "name": model.info.model,
        "versions": [model.info.version.to_string()],
        "platform": format!("reconcile-{}", model.info.algorithm),
        "inputs": [{ "name": s.key_name, "datatype": "BYTES", "shape": [-1] }],
        "outputs": outputs,
    }))
    .into_response()
}

/// `GET /v2/models/{model}/ready`: 200 when that model is loaded, else 503.
#[utoipa::path(get, path = "/v2/models/{model}/ready", summary = "Readiness of that model.", tag = "Open Inference Protocol (V2)", params(("model" = String, Path, description = "The served model's name, e.g. streamflow_churn")),
    responses((status = 200, description = "The model is ready"),
        (status = 404, description = "Another model's name", body = ApiError),
        (status = 503, description = "Not ready")))]
async fn model_ready_handler(State(s): State<Arc<Serving>>, Segment(name): Segment) -> Response {
    if let Err(r) = check_model(&s, &name) {
        return r;
    }
    match s.readiness() {
        Ok(()) => Json(json!({ "name": name, "ready": true })).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "name": name, "ready": false, "error": e })),
        )
            .into_response(),
    }
}

/// The keys of a request, checked against the protocol and the endpoint.
pub fn keys(
    req: &InferRequest,
    key_name: &str,
    max_batch: usize,
) -> Result<Vec<String>, (StatusCode, String)> {
    let bad = |m: String| Err((StatusCode::BAD_REQUEST, m));
    let [input] = req.inputs.as_slice() else {
        return bad(format!(
            "{} input tensors: this model takes one, `{key_name}` (BYTES, the entity keys)",
            req.inputs.len()
        ));
    };
    if input.name != key_name {
        return bad(format!(
            "input `{}`: this model's input is `{key_name}` (BYTES, the entity keys)",
            input.name
        ));
    }
    if input.datatype != "BYTES" {
        return bad(format!(
            "input `{key_name}` has datatype {}: entity keys are BYTES",
            input.datatype
        ));
    }
    let mut flat = Vec::new();
    flatten(&input.data, &mut flat, 0).map_err(|m| (StatusCode::BAD_REQUEST, m))?;
    if input.shape.iter().any(|d| *d < 0) {
        return bad(format!("shape {:?} has a negative dimension", input.shape));
    }
    let elements = input
        .shape
        .iter()
        .try_fold(1i64, |a, d| a.checked_mul(*d))
        .unwrap_or(i64::MAX);
    if elements != flat.len() as i64 {
        return bad(format!(
            "shape {:?} holds {elements} elements but `data` has {}",
            input.shape,
            flat.len()
        ));
    }
    if flat.is_empty() {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("input `{key_name}` is empty"),
        ));
    }
    if flat.len() > max_batch {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{} keys: a request holds at most {max_batch}", flat.len()),
        ));
    }
    if let Some(outputs) = &req.outputs
        && let Some(o) = outputs
            .iter()
            .find(|o| !OUTPUTS.iter().any(|(n, _)| *n == o.name))
    {
        return bad(format!(
            "output `{}`: this model's outputs are `probability` and `prediction`",
            o.name
        ));
    }
    Ok(flat)
}

/// Row-major elements of `data`: strings, or arrays of them nested at most 8 deep.
fn flatten(data: &Value, out: &mut Vec<String>, depth: usize) -> Result<(), String> {
    match data {
        Value::String(s) => {
            out.push(s.clone());
            Ok(())
        }
        Value::Array(items) if depth < 8 => {
            for item in items {
                flatten(item, out, depth + 1)?;
            }
            Ok(())
        }
        Value::Array(_) => Err("`data` is nested more than 8 deep".into()),
        other => Err(format!(
            "`data` holds {}: BYTES elements are JSON strings",
            match other {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                _ => "an object",
            }
        )),
    }
}

/// `POST /v2/models/{model}/infer`: one probability and class per key.
#[utoipa::path(post, path = "/v2/models/{model}/infer", summary = "One probability and class per entity key.", tag = "Open Inference Protocol (V2)", params(("model" = String, Path, description = "The served model's name, e.g. streamflow_churn")),
    request_body(content = InferRequest, description = "One BYTES tensor of entity keys named after the join key, e.g. {\"inputs\": [{\"name\": \"user_id\", \"shape\": [1], \"datatype\": \"BYTES\", \"data\": [\"7590-VHVEG\"]}]}"),
    responses((status = 200, body = InferResponse),
        (status = 400, description = "Malformed request or unknown key", body = ApiError),
        (status = 404, description = "Another model's name", body = ApiError),
        (status = 413, description = "More keys than maxBatch", body = ApiError),
        (status = 422, description = "No keys, or a field of the wrong type", body = ApiError),
        (status = 503, description = "No Production version", body = ApiError)))]
async fn infer_handler(
    State(s): State<Arc<Serving>>,
    Segment(name): Segment,
    body: Result<Json<InferRequest>, JsonRejection>,
) -> Response {
    if let Err(r) = check_model(&s, &name) {
        return r;
    }
    let req = match body {
        Ok(Json(r)) => r,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let keys = match keys(&req, &s.key_name, s.max_batch) {
        Ok(k) => k,
        Err((status, m)) => return error(status, m),
    };
    let Some(model) = s.model.load_full() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, s.no_production());
    };
    let n = keys.len();
    let (rows, memo) = {
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        match s.rows_to_score(&model, &keys).await {
            Ok(r) => r,
            Err(e) => return super::routes::store_error(e).into_response(),
        }
    };
    let score = {
        let (s, model) = (s.clone(), model.clone());
        move || {
            let mut probability = Vec::with_capacity(n);
            let mut class = Vec::with_capacity(n);
            for (key, rows) in keys.iter().zip(rows) {
                match s.predict(&model, key, rows, memo.as_deref()) {
                    Ok(p) => {
                        probability.push(p.probability);
                        class.push(i64::from(p.prediction));
                    }
                    Err(e) => return Err(super::routes::predict_error(&s, key, e).error),
                }
            }
            Ok((probability, class))
        }
    };
    let scored = if n > 64 {
        match tokio::task::spawn_blocking(score).await {
            Ok(r) => r,
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    } else {
        score()
    };
    let (probability, class) = match scored {
        Ok(v) => v,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let wanted = |name: &str| {
        req.outputs
            .as_ref()
            .is_none_or(|o| o.iter().any(|o| o.name == name))
    };
    let shape = vec![n as i64];
    let mut outputs = Vec::new();
    if wanted("probability") {
        outputs.push(Tensor {
            name: "probability".into(),
            shape: shape.clone(),
            datatype: "FP64".into(),
            parameters: None,
            data: json!(probability),
        });
    }
    if wanted("prediction") {
        outputs.push(Tensor {
            name: "prediction".into(),
            shape,
            datatype: "INT64".into(),
            parameters: None,
            data: json!(class),
        });
    }
    Json(InferResponse {
        model_name: model.info.model.clone(),
        model_version: model.info.version.to_string(),
        id: req.id,
        outputs,
    })
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> InferRequest {
        serde_json::from_value(body).expect("request")
    }

    #[test]
    fn keys_follow_the_shape_and_the_bounds() {
        let ok = request(
            json!({"inputs": [{"name": "user_id", "shape": [2, 1], "datatype": "BYTES", "data": [["a"], ["b"]]}]}),
        );
        assert_eq!(keys(&ok, "user_id", 10).expect("keys"), ["a", "b"]);
        let cases = [
            (json!({"inputs": []}), "0 input tensors"),
            (
                json!({"inputs": [{"name": "id", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}),
                "input `id`",
            ),
            (
                json!({"inputs": [{"name": "user_id", "shape": [1], "datatype": "FP32", "data": ["a"]}]}),
                "datatype FP32",
            ),
            (
                json!({"inputs": [{"name": "user_id", "shape": [3], "datatype": "BYTES", "data": ["a"]}]}),
                "holds 3 elements",
            ),
            (
                json!({"inputs": [{"name": "user_id", "shape": [1], "datatype": "BYTES", "data": [1]}]}),
                "a number",
            ),
            (
                json!({"inputs": [{"name": "user_id", "shape": [-1], "datatype": "BYTES", "data": ["a"]}]}),
                "negative",
            ),
            (
                json!({"inputs": [{"name": "user_id", "shape": [1], "datatype": "BYTES", "data": ["a"]}], "outputs": [{"name": "x"}]}),
                "output `x`",
            ),
        ];
        for (body, needle) in cases {
            let (status, m) = keys(&request(body), "user_id", 10).expect_err(needle);
            assert_eq!(status, StatusCode::BAD_REQUEST, "{m}");
            assert!(m.contains(needle), "{m}");
        }
        let big = request(
            json!({"inputs": [{"name": "user_id", "shape": [3], "datatype": "BYTES", "data": ["a", "b", "c"]}]}),
        );
        assert_eq!(
            keys(&big, "user_id", 2).expect_err("over").0,
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
