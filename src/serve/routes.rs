//! Routes, request bounds, JSON errors and the OpenAPI document of an endpoint.
//!
//! Every failure is a JSON body `{"error": …}` with a 4xx/5xx status — malformed
//! JSON 400, an unknown entity 404 (with `missing_features`), an oversized body or
//! batch 413, wrong types 422, no model yet 503 — never a panic or a dropped
//! connection.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{OpenApi, ToSchema};

use super::{BODY_LIMIT, PredictError, Prediction, REQUEST_TIMEOUT, Serving};

/// A JSON error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiError {
    /// What went wrong.
    pub error: String,
    /// For an unknown entity: the features the online store lacks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_features: Option<Vec<String>>,
    #[serde(skip)]
    status: u16,
}

impl ApiError {
    fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            error: error.into(),
            missing_features: None,
            status: status.as_u16(),
        }
    }
}

/// The one parameter of a route (`{entity_id}`, `{model}`), decoded, or a
/// JSON 400 naming why not (axum's own rejection is plain text): a client
/// sending `%ff` gets the same error shape as every other bad request.
pub(super) struct Segment(pub(super) String);

impl<S: Send + Sync> FromRequestParts<S> for Segment {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Segment(value)),
            Err(rejection) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                rejection.body_text(),
            )),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self)).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        ApiError::new(r.status(), r.body_text())
    }
}

/// The served version, as responses name it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelRef {
    /// Model name.
    pub name: String,
    /// Version number.
    pub version: i64,
}

/// `POST /predict` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct PredictResponse {
    /// The entity key (named after the entity's join key in JSON, e.g. `user_id`).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub key: serde_json::Map<String, Value>,
    /// The prediction.
    #[serde(flatten)]
    pub result: Prediction,
    /// The version that answered.
    pub model: ModelRef,
}

impl PredictResponse {
    /// The response's JSON, the bytes `serde_json` writes for it, written
    /// field by field into one buffer: `flatten` and the per-key escaping of
    /// the derived form cost a tenth of a `/predict` request.
    pub fn to_json(&self) -> Vec<u8> {
        use super::write_value;
        let mut out = Vec::with_capacity(512);
        out.push(b'{');
        for (k, v) in &self.key {
            write_value(&mut out, k);
            out.push(b':');
            write_value(&mut out, v);
            out.push(b',');
        }
        let r = &self.result;
        out.extend_from_slice(b"\"prediction\":");
        write_value(&mut out, &r.prediction);
        out.extend_from_slice(b",\"probability\":");
        write_value(&mut out, &r.probability);
        out.extend_from_slice(b",\"missing_features\":");
        write_value(&mut out, &r.missing_features);
        out.extend_from_slice(b",\"features\":");
        r.features.write_json(&mut out);
        out.extend_from_slice(b",\"model\":");
        write_value(&mut out, &self.model);
        out.push(b'}');
        out
    }
}

impl IntoResponse for PredictResponse {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], self.to_json()).into_response()
    }
}

/// `POST /predict/batch` request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// Entity keys, at most the endpoint's `maxBatch`.
    pub ids: Vec<String>,
}

/// One item of a batch answer: a prediction or an error for that id.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchItem {
    /// The entity key.
    pub id: String,
    /// The prediction, when the entity is known.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub result: Option<Prediction>,
    /// Why there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `POST /predict/batch` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    /// One item per id, in request order.
    pub predictions: Vec<BatchItem>,
    /// The version that answered every item.
    pub model: ModelRef,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "reconcile endpoint",
        description = "Online features and the Production model of a reconcile project."
    ),
    paths(health, ready, features, predict, predict_batch, models, metrics),
    components(schemas(
        ApiError,
        PredictResponse,
        BatchRequest,
        BatchResponse,
        BatchItem,
        Prediction,
        ModelRef
    ))
)]
struct ApiDoc;

/// Every route pattern, as metric labels name them.
pub const ROUTES: [&str; 8] = [
    "/health",
    "/ready",
    "/features/{entity_id}",
    "/predict",
    "/predict/batch",
    "/models",
    "/metrics",
    "/openapi.json",
];

/// The label of a request's route: one of [`ROUTES`], or `unmatched` for any
/// path no route matched (a fixed set, whatever paths clients send).
fn route_label(matched: Option<&MatchedPath>) -> &'static str {
    matched
        .and_then(|m| {
            ROUTES
                .iter()
                .chain(super::v2::ROUTES.iter())
                .chain(super::docs::ROUTES.iter())
                .chain(crate::ui::ROUTES.iter())
                .find(|r| **r == m.as_str())
        })
        .copied()
        .unwrap_or("unmatched")
}

/// The router with its bounds and metrics (and the web UI when given).
pub fn router(serving: Arc<Serving>, ui: Option<Arc<crate::ui::Ui>>) -> Router {
    let [
        health_r,
        ready_r,
        features_r,
        predict_r,
        batch_r,
        models_r,
        metrics_r,
        openapi_r,
    ] = ROUTES;
    Router::new()
        .route(health_r, get(health))
        .route(ready_r, get(ready))
        .route(features_r, get(features))
        .route(predict_r, post(predict))
        .route(batch_r, post(predict_batch))
        .route(models_r, get(models))
        .route(metrics_r, get(metrics))
        .route(openapi_r, get(openapi))
        .merge(super::v2::router())
        .merge(super::docs::router())
        .merge(crate::ui::router(ui))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(serving.clone(), track))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .with_state(serving)
}

/// Counts and times every request by route pattern (bounded label values).
async fn track(State(s): State<Arc<Serving>>, req: Request, next: Next) -> Response {
    if !s.metrics.recording() {
        return next.run(req).await;
    }
    let started = Instant::now();
    let route = route_label(req.extensions().get::<MatchedPath>());
    let method = super::metrics::method_label(req.method());
    let response = next.run(req).await;
    let labels = super::metrics::RequestLabels {
        route,
        method,
        status: response.status().as_u16(),
    };
    s.metrics.requests.get_or_create(&labels).inc();
    s.metrics
        .latency
        .get_or_create(&super::metrics::RouteLabels { route })
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route; see /openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this route; see /openapi.json",
    )
}

/// Liveness.
#[utoipa::path(get, path = "/health", responses((status = 200, description = "The process is up")))]
async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: a model is loaded and the online store answers.
#[utoipa::path(get, path = "/ready", responses(
    (status = 200, description = "Ready to predict"),
    (status = 503, description = "Not ready", body = ApiError)))]
async fn ready(State(s): State<Arc<Serving>>) -> Response {
    match s.readiness() {
        Ok(()) => {
            let model = s.model.load();
            let version = model.as_ref().map(|m| m.info.version);
            Json(json!({ "ready": true, "model": s.model_name, "version": version }))
                .into_response()
        }
        Err(e) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e).into_response(),
    }
}

fn no_model(s: &Serving) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, s.no_production())
}

fn unknown(s: &Serving, id: &str, missing: Vec<String>) -> ApiError {
    ApiError {
        error: format!(
            "unknown {} `{id}`: the online store has no features for it",
            s.key_name
        ),
        missing_features: Some(missing),
        status: StatusCode::NOT_FOUND.as_u16(),
    }
}

/// The online features of one entity, as the served model uses them.
#[utoipa::path(get, path = "/features/{entity_id}",
    params(("entity_id" = String, Path, description = "Entity key, e.g. 7590-VHVEG")),
    responses((status = 200, description = "Feature values"), (status = 404, body = ApiError)))]
async fn features(
    State(s): State<Arc<Serving>>,
    Segment(id): Segment,
) -> Result<Json<Value>, ApiError> {
    let model = s.model.load_full().ok_or_else(|| no_model(&s))?;
    let rows = s.entity(&model, &id).await.map_err(store_error)?;
    let (values, missing) = s.features_of(&model, rows);
    if values.is_empty() {
        return Err(unknown(&s, &id, missing));
    }
    Ok(Json(json!({
        s.key_name.clone(): id,
        "features": values,
        "missing_features": missing,
    })))
}

/// A read-through the online store did not answer: 503, the cause named
/// (store errors are redacted where they are made).
pub(super) fn store_error(e: crate::store::StoreError) -> ApiError {
    tracing::warn!("online store read failed: {e}");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the online store did not answer: {e}"),
    )
}

/// The JSON error of a failed prediction (shared with the V2 routes).
pub(super) fn predict_error(s: &Serving, id: &str, e: PredictError) -> ApiError {
    match e {
        PredictError::NoModel => no_model(s),
        PredictError::Unknown { missing } => unknown(s, id, missing),
        PredictError::Encode(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m),
        PredictError::Store(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, m),
    }
}

/// Scores one entity: `{"user_id": "7590-VHVEG"}`.
#[utoipa::path(post, path = "/predict",
    request_body(content = Object, description = "The entity key under its join key's name, e.g. {\"user_id\": \"7590-VHVEG\"}"),
    responses((status = 200, body = PredictResponse), (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 413, body = ApiError), (status = 422, body = ApiError), (status = 503, body = ApiError)))]
async fn predict(
    State(s): State<Arc<Serving>>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<PredictResponse, ApiError> {
    let Json(body) = body?;
    let id = match body.get(&s.key_name) {
        Some(Value::String(id)) => id.clone(),
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("`{}` must be a string, got {other}", s.key_name),
            ));
        }
        None => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the body must be an object with `{}`", s.key_name),
            ));
        }
    };
    let model = s.model.load_full().ok_or_else(|| no_model(&s))?;
    let (rows, memo) = s.entity_to_score(&model, &id).await.map_err(store_error)?;
    let result = s
        .predict(&model, &id, rows, memo.as_deref())
        .map_err(|e| predict_error(&s, &id, e))?;
    let mut key = serde_json::Map::new();
    key.insert(s.key_name.clone(), Value::String(id));
    Ok(PredictResponse {
        key,
        result,
        model: ModelRef {
            name: model.info.model.clone(),
            version: model.info.version,
        },
    })
}

/// Scores many entities with one version: `{"ids": ["…", …]}`.
#[utoipa::path(post, path = "/predict/batch", request_body = BatchRequest,
    responses((status = 200, body = BatchResponse), (status = 400, body = ApiError),
        (status = 413, body = ApiError), (status = 422, body = ApiError), (status = 503, body = ApiError)))]
async fn predict_batch(
    State(s): State<Arc<Serving>>,
    body: Result<Json<BatchRequest>, JsonRejection>,
) -> Result<Json<BatchResponse>, ApiError> {
    let Json(req) = body?;
    if req.ids.len() > s.max_batch {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} ids: a batch holds at most {}",
                req.ids.len(),
                s.max_batch
            ),
        ));
    }
    if req.ids.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`ids` is empty",
        ));
    }
    let model = s.model.load_full().ok_or_else(|| no_model(&s))?;
    let keys: Vec<&str> = req.ids.iter().map(String::as_str).collect();
    let (rows, memo) = s.rows_to_score(&model, &keys).await.map_err(store_error)?;
    let score = {
        let (s, model) = (s.clone(), model.clone());
        move || {
            req.ids
                .into_iter()
                .zip(rows)
                .map(
                    |(id, rows)| match s.predict(&model, &id, rows, memo.as_deref()) {
                        Ok(p) => BatchItem {
                            id,
                            result: Some(p),
                            error: None,
                        },
                        Err(e) => {
                            let error = predict_error(&s, &id, e).error;
                            BatchItem {
                                id,
                                result: None,
                                error: Some(error),
                            }
                        }
                    },
                )
                .collect::<Vec<_>>()
        }
    };
    // Big batches are scored off the async workers.
    let predictions = tokio::task::spawn_blocking(score)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(BatchResponse {
        predictions,
        model: ModelRef {
            name: model.info.model.clone(),
            version: model.info.version,
        },
    }))
}

/// The version being served: run, metrics, when registered and promoted.
#[utoipa::path(get, path = "/models", responses((status = 200, description = "The served version"), (status = 503, body = ApiError)))]
async fn models(State(s): State<Arc<Serving>>) -> Result<Json<Value>, ApiError> {
    let model = s.model.load_full().ok_or_else(|| no_model(&s))?;
    let i = &model.info;
    Ok(Json(json!({
        "endpoint": s.name,
        "name": i.model,
        "version": i.version,
        "run": i.run,
        "algorithm": i.algorithm,
        "stage": i.stage,
        "identity": i.identity,
        "metrics": i.metrics,
        "registered": crate::store::format_ms(i.created_ms),
        "promoted": model.promoted_ms.map(crate::store::format_ms),
        "features": model.inputs.iter().map(|(v, f)| format!("{v}.{f}")).collect::<Vec<_>>(),
        "watermarks": s.watermarks(),
        "shape": shape(&model.artifact.estimator),
    })))
}

/// What one prediction walks: a forest's trees, nodes and depths, or a linear
/// model's weights.
fn shape(e: &crate::ml::train::Estimator) -> Value {
    match e {
        crate::ml::train::Estimator::Forest(f) => {
            let (max_depth, mean_depth) = f.depths();
            json!({
                "trees": f.n_trees(),
                "nodes": f.n_nodes(),
                "maxDepth": max_depth,
                "meanLeafDepth": (mean_depth * 10.0).round() / 10.0,
            })
        }
        crate::ml::train::Estimator::Linear { weights, .. } => json!({ "weights": weights.len() }),
    }
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics(State(s): State<Arc<Serving>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi().merge_from(super::v2::ApiDoc::openapi()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::encode::{Encoder, InputFeature, Rule};
    use crate::ml::train::{Artifact, Estimator};
    use crate::spec::ColumnType;
    use crate::store::registry::{Stage, VersionInfo};
    use serde_json::json;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn model() -> Result<Arc<super::super::LoadedModel>, Box<dyn std::error::Error>> {
        let names = ["v2.b", "v1.a \"q\"", "v1.c", "v3.d"];
        let input = |name: &str| InputFeature {
            name: name.into(),
            ty: ColumnType::Float,
            rule: Rule::Numeric {
                fill: 0.0,
                indicator: false,
            },
        };
        let artifact = Artifact {
            encoder: Encoder {
                inputs: names.iter().map(|n| input(n)).collect(),
                columns: names.iter().map(|n| n.to_string()).collect(),
            },
            estimator: Estimator::Linear {
                mean: vec![0.0; 4],
                scale: vec![1.0; 4],
                weights: vec![0.1; 4],
                intercept: 0.0,
            },
        };
        let info = VersionInfo {
            model: "churn \"m\"".into(),
            version: 7,
            identity: String::new(),
            run: String::new(),
            algorithm: String::new(),
            params: Value::Null,
            metrics: Value::Null,
            training_set_hash: String::new(),
            features: Value::Null,
            artifact_hash: String::new(),
            trainer: String::new(),
            training_ms: 0,
            stage: Stage::Production,
            created_ms: 0,
        };
        Ok(Arc::new(super::super::LoadedModel::load(
            info,
            &artifact.to_bytes()?,
        )?))
    }

    #[test]
    fn predict_json_is_the_bytes_serde_writes() -> TestResult {
        let model = model()?;
        // Views in name order: v1 (a "q", c), v2 (b), v3 (d).
        let row = |values: Vec<Value>| Some(super::super::Row::from(values));
        let cases: Vec<(super::super::EntityRows, f64, Vec<String>)> = vec![
            (
                vec![
                    row(vec![json!(1.5), json!("x\ny \u{1}é")]),
                    row(vec![Value::Null]),
                    None,
                ]
                .into_boxed_slice(),
                0.25,
                vec!["v3.d".into()],
            ),
            (
                vec![
                    row(vec![json!(-0.0), json!(true)]),
                    row(vec![json!(12)]),
                    row(vec![json!(1e300)]),
                ]
                .into_boxed_slice(),
                f64::NAN,
                Vec::new(),
            ),
        ];
        for (rows, probability, missing_features) in cases {
            let mut key = serde_json::Map::new();
            key.insert("user_id".into(), json!("id\"1"));
            let response = PredictResponse {
                key,
                result: Prediction {
                    prediction: 1,
                    probability,
                    missing_features,
                    features: super::super::FeatureValues {
                        model: model.clone(),
                        rows,
                    },
                },
                model: ModelRef {
                    name: model.info.model.clone(),
                    version: model.info.version,
                },
            };
            let expected = serde_json::to_vec(&response)?;
            assert_eq!(
                String::from_utf8(response.to_json())?,
                String::from_utf8(expected)?
            );
        }
        Ok(())
    }
}
