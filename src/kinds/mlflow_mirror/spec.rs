//! What an `MlflowMirror` document says, and its checks: a usable tracking
//! URL (`${VAR}` allowed), at least one model, each named once.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::diag::{DiagCode, SpecDiagnostic};
use crate::spec::validate::{check_env, check_resource_name};
use crate::spec::{Resource, SpannedStr, env};

/// A copy of registered models in an MLflow tracking server: every version
/// as a run and a registered model version, `production` as an alias (and
/// a stage where the server still has stages).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MlflowMirrorSpec {
    /// Always `MlflowMirror`.
    pub kind: String,
    /// Its name, e.g. `mlflow`.
    #[schemars(with = "String")]
    pub name: SpannedStr,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The tracking server, e.g. `http://127.0.0.1:5000` or
    /// `http://ci:${MLFLOW_PASSWORD}@mlflow:5000` (userinfo is sent as basic
    /// auth). `${VAR}` references are resolved at run time, never stored,
    /// and redacted wherever the URL is printed.
    #[schemars(with = "String")]
    pub tracking_uri: SpannedStr,
    /// The Models to mirror (each becomes a registered model of that name).
    #[schemars(with = "Vec<String>")]
    pub models: Vec<SpannedStr>,
    /// The experiment the runs go into; defaults to the project's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub experiment: Option<SpannedStr>,
    /// Extra ordering edges: `name` or `Kind/name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>")]
    pub depends_on: Vec<SpannedStr>,
}

/// Checks a mirror's own fields (the models it names are checked as
/// references, with "did you mean").
pub fn check_mirror(r: &Resource, spec: &MlflowMirrorSpec, diags: &mut Vec<SpecDiagnostic>) {
    check_resource_name(r, &spec.name, diags);
    check_env(r, &spec.tracking_uri, diags);
    if let Err(why) = check_url(&spec.tracking_uri.value) {
        diags.push(
            r.diag_at(
                DiagCode::InvalidValue,
                &spec.tracking_uri,
                format!("trackingUri `{}`: {why}", env::redact_url(&spec.tracking_uri.value)),
            )
            .with_hint("write e.g. `trackingUri: http://127.0.0.1:5000` (the server's address, as `mlflow server` prints it)"),
        );
    }
    if spec.models.is_empty() {
        diags.push(
            r.diag_at(
                DiagCode::MissingField,
                &spec.name,
                "a mirror needs at least one model",
            )
            .with_hint("write `models: [name-of-a-Model]`"),
        );
    }
    for (i, m) in spec.models.iter().enumerate() {
        if spec.models[..i].iter().any(|o| o.value == m.value) {
            diags.push(r.diag_at(
                DiagCode::InvalidValue,
                m,
                format!("model `{}` is listed twice", m.value),
            ));
        }
    }
    if let Some(e) = &spec.experiment
        && e.value.trim().is_empty()
    {
        diags.push(r.diag_at(DiagCode::InvalidValue, e, "the experiment name is empty"));
    }
}

/// What is wrong with a tracking URL template, judged before `${VAR}`s are
/// resolved: a URL that is one reference is judged when it is resolved.
pub fn check_url(template: &str) -> Result<(), String> {
    let refs = env::references(template);
    if let [(name, 0)] = refs.as_slice()
        && template.len() == name.len() + 3
    {
        return Ok(());
    }
    let Some((scheme, rest)) = template.split_once("://") else {
        return Err("not a URL (no `http://`)".into());
    };
    match scheme {
        "http" => {}
        "https" => {
            return Err("https is not supported by this build (no TLS stack); use http on a trusted network or a local TLS-terminating proxy".into());
        }
        other => return Err(format!("scheme `{other}` is not http")),
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() {
        return Err("no host".into());
    }
    if rest.contains(['?', '#']) {
        return Err("a tracking URL has no query or fragment".into());
    }
    if refs.is_empty() {
        reqwest::Url::parse(template).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_url;

    #[test]
    fn urls() {
        assert!(check_url("http://127.0.0.1:5000").is_ok());
        assert!(check_url("http://ci:${MLFLOW_PASSWORD}@mlflow:5000/prefix").is_ok());
        assert!(check_url("${MLFLOW_TRACKING_URI}").is_ok());
        assert!(
            check_url("127.0.0.1:5000")
                .unwrap_err()
                .contains("no `http://`")
        );
        assert!(check_url("https://x").unwrap_err().contains("https"));
        assert!(
            check_url("file:///tmp/mlruns")
                .unwrap_err()
                .contains("`file`")
        );
        assert!(check_url("http://").unwrap_err().contains("no host"));
        assert!(
            check_url("http://h:5000/?a=1")
                .unwrap_err()
                .contains("query")
        );
        assert!(check_url("http://h:99999").is_err());
    }
}
