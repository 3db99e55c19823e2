//! Registry credentials for pulls, read from the Docker client's config file
//! (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`), as `docker pull`
//! would use them. Only inline `auths` entries are read; credential helpers
//! (`credsStore`) need their external programs and are not run.

use std::path::PathBuf;

use base64::Engine as _;

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryCredentials {
    /// User name.
    pub username: Option<String>,
    /// Password or token.
    pub password: Option<String>,
    /// The registry, as the config file keys it.
    pub server: String,
}

impl std::fmt::Debug for RegistryCredentials {
    // Never print the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("username", &self.username)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// Docker Hub's key in config files.
const HUB_KEY: &str = "https://index.docker.io/v1/";

/// The registry an image reference names: the first path component when it
/// looks like a host (`registry.example:5000/app`), else Docker Hub.
pub fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first.to_string(),
        _ => HUB_KEY.to_string(),
    }
}

fn config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker").join("config.json"))
}

/// Credentials for the image's registry, when the config file has them.
pub fn credentials_for(image: &str) -> Option<RegistryCredentials> {
    let text = std::fs::read_to_string(config_path()?).ok()?;
    credentials_in(&text, image)
}

/// Looks the image's registry up in a config file's text.
pub fn credentials_in(config: &str, image: &str) -> Option<RegistryCredentials> {
    let v: serde_json::Value = serde_json::from_str(config).ok()?;
    let auths = v.get("auths")?.as_object()?;
    let registry = registry_of(image);
    let (server, entry) = auths.iter().find(|(k, _)| {
        let k = k
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let r = registry
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        k.trim_end_matches('/') == r.trim_end_matches('/')
            || (registry == HUB_KEY && k.starts_with("index.docker.io"))
    })?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(entry.get("auth")?.as_str()?)
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some(RegistryCredentials {
        username: Some(user.to_string()),
        password: Some(pass.to_string()),
        server: server.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_credentials_by_registry() {
        // "me:pw" and "bot:tok"
        let config = r#"{"auths":{
            "https://index.docker.io/v1/":{"auth":"bWU6cHc="},
            "registry.example:5000":{"auth":"Ym90OnRvaw=="}}}"#;
        let hub = credentials_in(config, "postgres:16").expect("hub");
        assert_eq!(hub.username.as_deref(), Some("me"));
        let own = credentials_in(config, "registry.example:5000/team/app:1").expect("own");
        assert_eq!(own.password.as_deref(), Some("tok"));
        assert!(credentials_in(config, "other.example/app").is_none());
        assert!(!format!("{own:?}").contains("tok"));
    }
}
