//! A small typed client of MLflow's REST API 2.0 (the tracking server of
//! MLflow 2.x and 3.x): experiments, runs, the model registry and the
//! artifacts proxy, only the calls the mirror makes. Every error names the
//! server (credentials redacted), the call, and MLflow's `error_code` and
//! message when it answered.
//!
//! Plain HTTP: this build carries no TLS stack (see docs/ARCHITECTURE.md), so
//! an `https://` server is refused with that reason.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Connecting to the server: a loopback or LAN server answers in
/// milliseconds; a black-holed host must not hold a plan for long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// One request, artifact uploads included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Page size of searches (MLflow caps runs at 50 000 per page, versions at 200 000).
const PAGE: u32 = 1000;

/// Why a call to MLflow failed. `url` is always redacted.
#[derive(Debug, Error)]
pub enum MlflowError {
    /// The tracking URL cannot be used.
    #[error("MLflow tracking URL `{url}`: {why}")]
    BadUrl {
        /// The URL, redacted.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// The server could not be reached, or did not answer in time.
    #[error("MLflow at {url} is unreachable ({call}): {detail}")]
    Unreachable {
        /// The server, redacted.
        url: String,
        /// The call, e.g. `GET experiments/get-by-name`.
        call: String,
        /// The innermost cause in words (`Connection refused`, `timed out`).
        detail: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error.
    #[error("MLflow at {url} refused {call}: HTTP {status} {code}: {message}")]
    Api {
        /// The server, redacted.
        url: String,
        /// The call.
        call: String,
        /// HTTP status.
        status: u16,
        /// MLflow's `error_code` (`RESOURCE_DOES_NOT_EXIST`, …).
        code: String,
        /// MLflow's message.
        message: String,
    },
    /// The server answered 2xx with a body that is not what the API says.
    #[error("MLflow at {url} answered {call} with an unexpected body: {source}")]
    Decode {
        /// The server, redacted.
        url: String,
        /// The call.
        call: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

impl MlflowError {
    /// MLflow's `error_code`, when the server answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            MlflowError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// True when the answer says the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, MlflowError::Api { status: 404, .. })
            || self.code() == Some("RESOURCE_DOES_NOT_EXIST")
    }
}

/// A key/value pair as the API carries tags and params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    /// Key.
    pub key: String,
    /// Value (empty when absent).
    #[serde(default)]
    pub value: String,
}

impl KeyValue {
    /// A pair.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// A metric value as logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// Key.
    pub key: String,
    /// Value.
    pub value: f64,
    /// Milliseconds since the epoch.
    #[serde(default)]
    pub timestamp: i64,
    /// Step.
    #[serde(default)]
    pub step: i64,
}

/// An experiment.
#[derive(Debug, Clone, Deserialize)]
pub struct Experiment {
    /// Its id (a string in the API).
    pub experiment_id: String,
    /// `active` or `deleted`.
    #[serde(default)]
    pub lifecycle_stage: String,
}

/// What identifies a run and where its artifacts go.
#[derive(Debug, Clone, Deserialize)]
pub struct RunInfo {
    /// Run id.
    pub run_id: String,
    /// `active` or `deleted`.
    #[serde(default)]
    pub lifecycle_stage: String,
    /// Where its artifacts live (`mlflow-artifacts:/1/<run>/artifacts` when
    /// the server proxies artifacts).
    #[serde(default)]
    pub artifact_uri: String,
    /// `RUNNING`, `FINISHED`, …
    #[serde(default)]
    pub status: String,
}

/// A run's logged data.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunData {
    /// Latest value of each metric.
    #[serde(default)]
    pub metrics: Vec<Metric>,
    /// Parameters.
    #[serde(default)]
    pub params: Vec<KeyValue>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<KeyValue>,
}

/// A run.
#[derive(Debug, Clone, Deserialize)]
pub struct Run {
    /// Identity and location.
    pub info: RunInfo,
    /// Params, metrics, tags.
    #[serde(default)]
    pub data: RunData,
}

/// An alias of a registered model.
#[derive(Debug, Clone, Deserialize)]
pub struct Alias {
    /// Alias name.
    pub alias: String,
    /// The version it points at.
    pub version: String,
}

/// A registered model (with its aliases).
#[derive(Debug, Clone, Deserialize)]
pub struct RegisteredModel {
    /// Name.
    pub name: String,
    /// Aliases.
    #[serde(default)]
    pub aliases: Vec<Alias>,
}

/// A registered model version.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelVersion {
    /// Model name.
    pub name: String,
    /// Version number, as a string.
    pub version: String,
    /// The run it came from.
    #[serde(default)]
    pub run_id: String,
    /// Its stage; absent on servers without stages.
    #[serde(default)]
    pub current_stage: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<KeyValue>,
}

#[derive(Deserialize)]
struct ExperimentAnswer {
    experiment: Experiment,
}

#[derive(Deserialize)]
struct CreatedExperiment {
    experiment_id: String,
}

#[derive(Deserialize)]
struct RunAnswer {
    run: Run,
}

#[derive(Deserialize)]
struct RunsPage {
    #[serde(default)]
    runs: Vec<Run>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct RegisteredModelAnswer {
    registered_model: RegisteredModel,
}

#[derive(Deserialize)]
struct VersionsPage {
    #[serde(default)]
    model_versions: Vec<ModelVersion>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct VersionAnswer {
    model_version: ModelVersion,
}

#[derive(Deserialize)]
struct Empty {}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error_code: String,
    #[serde(default)]
    message: String,
}

/// A connection to one tracking server.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// The server's base URL, without credentials.
    base: reqwest::Url,
    /// Basic-auth credentials from the URL's userinfo.
    auth: Option<(String, Option<String>)>,
    /// The URL as it may be printed.
    shown: String,
}

impl Client {
    /// A client of the server at `url` (resolved: `${VAR}`s already replaced).
    pub fn new(url: &str) -> Result<Client, MlflowError> {
        let shown = crate::spec::env::redact_url(url);
        let bad = |why: String| MlflowError::BadUrl {
            url: shown.clone(),
            why,
        };
        let mut base = reqwest::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        match base.scheme() {
            "http" => {}
            "https" => {
                return Err(bad(
                    "https is not supported by this build (no TLS stack): use http on a trusted network, or a local TLS-terminating proxy".into(),
                ));
            }
            other => return Err(bad(format!("scheme `{other}` is not http"))),
        }
        if base.host_str().is_none_or(str::is_empty) {
            return Err(bad("no host".into()));
        }
        let auth = (!base.username().is_empty()).then(|| {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .to_string()
            };
            (decode(base.username()), base.password().map(decode))
        });
        // Credentials travel in the header only, never in a printed URL.
        let _ = base.set_username("");
        let _ = base.set_password(None);
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        Ok(Client {
            http,
            base,
            auth,
            shown: crate::spec::env::redact_url(url),
        })
    }

    /// The server's URL as it may be printed.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    fn url(&self, path: &str) -> Result<reqwest::Url, MlflowError> {
        self.base.join(path).map_err(|e| MlflowError::BadUrl {
            url: self.shown.clone(),
            why: format!("{path}: {e}"),
        })
    }

    async fn send<T: DeserializeOwned>(
        &self,
        call: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<T, MlflowError> {
        let request = match &self.auth {
            Some((user, password)) => request.basic_auth(user, password.as_deref()),
            None => request,
        };
        let unreachable = |e: reqwest::Error| {
            let e = e.without_url();
            MlflowError::Unreachable {
                url: self.shown.clone(),
                call: call.to_string(),
                detail: innermost(&e),
                source: e,
            }
        };
        let t0 = std::time::Instant::now();
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        tracing::debug!(
            call,
            status = status.as_u16(),
            ms = t0.elapsed().as_millis() as u64,
            "MLflow call"
        );
        if !status.is_success() {
            let parsed: Option<ErrorBody> = serde_json::from_slice(&body).ok();
            let (code, message) = match parsed {
                Some(b) => (b.error_code, b.message),
                None => (
                    String::new(),
                    String::from_utf8_lossy(&body[..body.len().min(300)]).to_string(),
                ),
            };
            return Err(MlflowError::Api {
                url: self.shown.clone(),
                call: call.to_string(),
                status: status.as_u16(),
                code,
                message,
            });
        }
        let body: &[u8] = if body.is_empty() { b"{}" } else { &body };
        serde_json::from_slice(body).map_err(|source| MlflowError::Decode {
            url: self.shown.clone(),
            call: call.to_string(),
            source,
        })
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, MlflowError> {
        let url = self.url(&format!("api/2.0/mlflow/{path}"))?;
        self.send(&format!("GET {path}"), self.http.get(url).query(query))
            .await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<T, MlflowError> {
        let url = self.url(&format!("api/2.0/mlflow/{path}"))?;
        self.send(&format!("POST {path}"), self.http.post(url).json(&body))
            .await
    }

    /// The experiment named `name`, if it exists (active or deleted).
    pub async fn experiment_by_name(&self, name: &str) -> Result<Option<Experiment>, MlflowError> {
        match self
            .get::<ExperimentAnswer>("experiments/get-by-name", &[("experiment_name", name)])
            .await
        {
            Ok(a) => Ok(Some(a.experiment)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates an experiment; returns its id.
    pub async fn create_experiment(
        &self,
        name: &str,
        tags: &[KeyValue],
    ) -> Result<String, MlflowError> {
        let a: CreatedExperiment = self
            .post(
                "experiments/create",
                serde_json::json!({ "name": name, "tags": tags }),
            )
            .await?;
        Ok(a.experiment_id)
    }

    /// Restores a deleted experiment.
    pub async fn restore_experiment(&self, id: &str) -> Result<(), MlflowError> {
        self.post::<Empty>(
            "experiments/restore",
            serde_json::json!({ "experiment_id": id }),
        )
        .await
        .map(|_| ())
    }

    /// Every run of an experiment matching `filter`, deleted ones included.
    pub async fn search_runs(
        &self,
        experiment_id: &str,
        filter: &str,
    ) -> Result<Vec<Run>, MlflowError> {
        let mut runs = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = serde_json::json!({
                "experiment_ids": [experiment_id],
                "filter": filter,
                "run_view_type": "ALL",
                "max_results": PAGE,
            });
            if let Some(t) = &token {
                body["page_token"] = serde_json::Value::String(t.clone());
            }
            let page: RunsPage = self.post("runs/search", body).await?;
            runs.extend(page.runs);
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => return Ok(runs),
            }
        }
    }

    /// Creates a run; returns it.
    pub async fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        start_time: i64,
        tags: &[KeyValue],
    ) -> Result<Run, MlflowError> {
        let a: RunAnswer = self
            .post(
                "runs/create",
                serde_json::json!({
                    "experiment_id": experiment_id,
                    "run_name": run_name,
                    "start_time": start_time,
                    "tags": tags,
                }),
            )
            .await?;
        Ok(a.run)
    }

    /// Logs params, metrics and tags in batches of the API's limits
    /// (100 params, 100 tags, 1000 metrics per call).
    pub async fn log_batch(
        &self,
        run_id: &str,
        params: &[KeyValue],
        metrics: &[Metric],
        tags: &[KeyValue],
    ) -> Result<(), MlflowError> {
        let batches = params
            .len()
            .div_ceil(100)
            .max(tags.len().div_ceil(100))
            .max(metrics.len().div_ceil(1000));
        for i in 0..batches {
            let part = |n: usize, len: usize| (i * n).min(len)..((i + 1) * n).min(len);
            self.post::<Empty>(
                "runs/log-batch",
                serde_json::json!({
                    "run_id": run_id,
                    "params": &params[part(100, params.len())],
                    "metrics": &metrics[part(1000, metrics.len())],
                    "tags": &tags[part(100, tags.len())],
                }),
            )
            .await?;
        }
        Ok(())
    }

    /// Marks a run finished at `end_time`.
    pub async fn finish_run(&self, run_id: &str, end_time: i64) -> Result<(), MlflowError> {
        self.post::<serde_json::Value>(
            "runs/update",
            serde_json::json!({ "run_id": run_id, "status": "FINISHED", "end_time": end_time }),
        )
        .await
        .map(|_| ())
    }

    /// Restores a deleted run.
    pub async fn restore_run(&self, run_id: &str) -> Result<(), MlflowError> {
        self.post::<Empty>("runs/restore", serde_json::json!({ "run_id": run_id }))
            .await
            .map(|_| ())
    }

    /// Deletes a run (MLflow keeps it, marked deleted).
    pub async fn delete_run(&self, run_id: &str) -> Result<(), MlflowError> {
        self.post::<Empty>("runs/delete", serde_json::json!({ "run_id": run_id }))
            .await
            .map(|_| ())
    }

    /// Uploads `bytes` as `rel` under a run's artifact URI through the
    /// server's artifacts proxy; `None` when the URI is not proxied
    /// (`mlflow-artifacts:`), so this client cannot write there.
    pub async fn put_artifact(
        &self,
        artifact_uri: &str,
        rel: &str,
        bytes: Vec<u8>,
    ) -> Result<Option<()>, MlflowError> {
        let Some(path) = proxied_path(artifact_uri) else {
            return Ok(None);
        };
        let url = self.url(&format!("api/2.0/mlflow-artifacts/artifacts/{path}/{rel}"))?;
        self.send::<serde_json::Value>(
            &format!("PUT mlflow-artifacts/artifacts/…/{rel}"),
            self.http
                .put(url)
                .header("content-type", "application/octet-stream")
                .body(bytes),
        )
        .await
        .map(|_| Some(()))
    }

    /// The registered model named `name` with its aliases, if it exists.
    pub async fn registered_model(
        &self,
        name: &str,
    ) -> Result<Option<RegisteredModel>, MlflowError> {
        match self
            .get::<RegisteredModelAnswer>("registered-models/get", &[("name", name)])
            .await
        {
            Ok(a) => Ok(Some(a.registered_model)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Registers a model name.
    pub async fn create_registered_model(
        &self,
        name: &str,
        tags: &[KeyValue],
    ) -> Result<(), MlflowError> {
        self.post::<serde_json::Value>(
            "registered-models/create",
            serde_json::json!({ "name": name, "tags": tags }),
        )
        .await
        .map(|_| ())
    }

    /// Every version of a registered model.
    pub async fn model_versions(&self, name: &str) -> Result<Vec<ModelVersion>, MlflowError> {
        let filter = format!("name = '{}'", name.replace('\'', "\\'"));
        let max = PAGE.to_string();
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let mut query = vec![("filter", filter.as_str()), ("max_results", max.as_str())];
            if !token.is_empty() {
                query.push(("page_token", token.as_str()));
            }
            let page: VersionsPage = self.get("model-versions/search", &query).await?;
            out.extend(page.model_versions);
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = t,
                None => return Ok(out),
            }
        }
    }

    /// Registers a version of `name` from a run's artifacts.
    pub async fn create_model_version(
        &self,
        name: &str,
        source: &str,
        run_id: &str,
        tags: &[KeyValue],
        description: &str,
    ) -> Result<ModelVersion, MlflowError> {
        let a: VersionAnswer = self
            .post(
                "model-versions/create",
                serde_json::json!({
                    "name": name,
                    "source": source,
                    "run_id": run_id,
                    "tags": tags,
                    "description": description,
                }),
            )
            .await?;
        Ok(a.model_version)
    }

    /// Points `alias` of `name` at `version`.
    pub async fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: &str,
    ) -> Result<(), MlflowError> {
        self.post::<Empty>(
            "registered-models/alias",
            serde_json::json!({ "name": name, "alias": alias, "version": version }),
        )
        .await
        .map(|_| ())
    }

    /// Removes `alias` of `name`.
    pub async fn delete_alias(&self, name: &str, alias: &str) -> Result<(), MlflowError> {
        let url = self.url("api/2.0/mlflow/registered-models/alias")?;
        self.send::<Empty>(
            "DELETE registered-models/alias",
            self.http
                .delete(url)
                .json(&serde_json::json!({ "name": name, "alias": alias })),
        )
        .await
        .map(|_| ())
    }

    /// Moves a version to a stage (servers that still have stages), leaving
    /// the other versions' stages alone.
    pub async fn transition_stage(
        &self,
        name: &str,
        version: &str,
        stage: &str,
    ) -> Result<(), MlflowError> {
        self.post::<serde_json::Value>(
            "model-versions/transition-stage",
            serde_json::json!({
                "name": name,
                "version": version,
                "stage": stage,
                "archive_existing_versions": false,
            }),
        )
        .await
        .map(|_| ())
    }
}

/// The path of a proxied artifact URI below the artifacts endpoint:
/// `mlflow-artifacts:/1/<run>/artifacts` and
/// `mlflow-artifacts://host:port/1/<run>/artifacts` both give `1/<run>/artifacts`.
pub fn proxied_path(artifact_uri: &str) -> Option<String> {
    let rest = artifact_uri.strip_prefix("mlflow-artifacts:")?;
    let rest = match rest.strip_prefix("//") {
        // An authority first: drop it.
        Some(after) => after.split_once('/').map_or("", |(_, p)| p),
        None => rest.trim_start_matches('/'),
    };
    (!rest.is_empty()).then(|| rest.trim_end_matches('/').to_string())
}

/// The innermost cause of an error, in words: `Connection refused (os error 111)`.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = last.source() {
        last = next;
    }
    let text = last.to_string();
    if e.to_string() == text {
        text
    } else {
        format!("{}: {text}", e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxied_paths() {
        assert_eq!(
            proxied_path("mlflow-artifacts:/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(
            proxied_path("mlflow-artifacts://127.0.0.1:5000/1/abc/artifacts/").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(proxied_path("s3://bucket/1/abc/artifacts"), None);
        assert_eq!(proxied_path("mlflow-artifacts:"), None);
    }

    #[test]
    fn urls_are_checked_and_never_shown_with_credentials() {
        let c = Client::new("http://me:s3cret@127.0.0.1:5000").unwrap();
        assert!(!c.shown().contains("s3cret"), "{}", c.shown());
        assert_eq!(c.base.as_str(), "http://127.0.0.1:5000/");
        assert!(c.auth.is_some());
        let e = Client::new("https://mlflow.example:443").unwrap_err();
        assert!(e.to_string().contains("https is not supported"), "{e}");
        let e = Client::new("ftp://127.0.0.1").unwrap_err();
        assert!(e.to_string().contains("not http"), "{e}");
        assert!(Client::new("not a url").is_err());
        // A path prefix (a server behind a reverse proxy) is kept.
        let c = Client::new("http://127.0.0.1:5000/mlflow").unwrap();
        assert_eq!(
            c.url("api/2.0/mlflow/runs/search").unwrap().as_str(),
            "http://127.0.0.1:5000/mlflow/api/2.0/mlflow/runs/search"
        );
    }
}
