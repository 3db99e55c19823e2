//! Checks of a `Service` spec that need no engine: one image source, parsable
//! ports, volumes and durations, bind mounts and build contexts inside the project.

use super::ServiceSpec;
use super::spec::{MountSource, parse_duration, parse_memory, parse_port, parse_volume};
use crate::diag::{DiagCode, SpecDiagnostic};
use crate::spec::Resource;
use crate::spec::validate::{check_env, check_resource_name, confine};

/// Docker refuses memory limits below 6 MiB.
const MIN_MEMORY: i64 = 6 << 20;

/// Checks one service; every problem becomes a diagnostic.
pub fn check_service(
    cx: &crate::kinds::CheckContext<'_>,
    r: &Resource,
    s: &ServiceSpec,
    diags: &mut Vec<SpecDiagnostic>,
) {
    let root = cx.root;
    check_resource_name(r, &s.name, diags);
    let runtime = s.runtime.unwrap_or_else(|| cx.project_runtime());
    if runtime == super::deploy::WorkloadRuntime::Swarm {
        for p in &s.ports {
            if let Ok(port) = parse_port(&p.value)
                && port
                    .host_ip
                    .as_deref()
                    .is_some_and(|ip| ip != "0.0.0.0" && ip != "::")
            {
                diags.push(
                    r.diag_at(
                        DiagCode::InvalidValue,
                        p,
                        format!(
                            "port `{}` binds one address, and a swarm publishes ports on every interface of every node",
                            p.value
                        ),
                    )
                    .with_hint("write the port without an address (`8080:80`), or leave it unpublished: other services reach it by name on the overlay network"),
                );
            }
        }
    }
    if let Some(deploy) = &s.deploy {
        super::deploy::check_deploy(
            r,
            &s.name,
            deploy,
            runtime == super::deploy::WorkloadRuntime::Swarm,
            diags,
        );
    }
    match (&s.image, &s.build) {
        (None, None) => diags.push(
            r.diag_at(
                DiagCode::MissingField,
                &s.name,
                "a service needs an `image` or a `build`",
            )
            .with_hint("write `image: postgres:16`, or `build: { context: ./folder }`"),
        ),
        (Some(image), _)
            if image.value.trim().is_empty() || image.value.contains(char::is_whitespace) =>
        {
            diags.push(r.diag_at(
                DiagCode::InvalidValue,
                image,
                format!("`{}` is not an image reference", image.value),
            ));
        }
        _ => {}
    }
    if let Some(build) = &s.build {
        match confine(root, r.base_dir(), &build.context.value) {
            Err(msg) => diags.push(
                r.diag_at(DiagCode::PathEscape, &build.context, msg)
                    .with_hint("build contexts must live inside the project folder"),
            ),
            Ok(dir) if !dir.is_dir() => diags.push(
                r.diag_at(
                    DiagCode::MissingFile,
                    &build.context,
                    format!("no folder at `{}`", build.context.value),
                )
                .with_hint("paths resolve against the folder of this spec file"),
            ),
            Ok(dir) => match confine(root, &dir, &build.dockerfile) {
                Err(msg) => diags.push(r.diag_at(DiagCode::PathEscape, &build.context, msg)),
                Ok(file) if !file.is_file() => diags.push(r.diag_at(
                    DiagCode::MissingFile,
                    &build.context,
                    format!("no `{}` in the build context", build.dockerfile),
                )),
                Ok(_) => {}
            },
        }
    }
    for (key, value) in &s.env {
        if !is_env_name(key) {
            diags.push(r.diag_at(
                DiagCode::InvalidValue,
                value,
                format!("`{key}` is not an environment variable name"),
            ));
        }
        check_env(r, value, diags);
    }
    let mut host_ports = std::collections::HashSet::new();
    for p in &s.ports {
        match parse_port(&p.value) {
            Err(msg) => diags.push(
                r.diag_at(
                    DiagCode::InvalidValue,
                    p,
                    format!("port `{}`: {msg}", p.value),
                )
                .with_hint("write `8080:80` (host:container), `80`, or `127.0.0.1:8080:80`"),
            ),
            Ok(m) => {
                if let Some(h) = m.host_port
                    && !host_ports.insert((h, m.protocol.clone()))
                {
                    diags.push(r.diag_at(
                        DiagCode::DuplicateName,
                        p,
                        format!("host port {h}/{} is published twice", m.protocol),
                    ));
                }
            }
        }
    }
    let mut targets = std::collections::HashSet::new();
    for v in &s.volumes {
        match parse_volume(&v.value) {
            Err(msg) => diags.push(
                r.diag_at(
                    DiagCode::InvalidValue,
                    v,
                    format!("volume `{}`: {msg}", v.value),
                )
                .with_hint("write `pgdata:/var/lib/postgresql/data` or `./conf:/etc/app:ro`"),
            ),
            Ok(m) => {
                if !targets.insert(m.target.clone()) {
                    diags.push(r.diag_at(
                        DiagCode::DuplicateName,
                        v,
                        format!("two mounts at `{}`", m.target),
                    ));
                }
                if let MountSource::Bind(path) = &m.source {
                    match confine(root, r.base_dir(), path) {
                        Err(msg) => diags.push(
                            r.diag_at(DiagCode::PathEscape, v, msg).with_hint(
                                "bind mounts must stay inside the project folder; use a named volume for anything else",
                            ),
                        ),
                        Ok(p)
                            if !p.exists()
                                && crate::kinds::generators_at(cx.index.all(), root, &p)
                                    .next()
                                    .is_none() =>
                        {
                            diags.push(r.diag_at(
                                DiagCode::MissingFile,
                                v,
                                format!("nothing at `{path}` to mount"),
                            ))
                        }
                        Ok(_) => {}
                    }
                }
            }
        }
    }
    if let Some(h) = &s.health {
        for (what, d) in [
            ("interval", &h.interval),
            ("timeout", &h.timeout),
            ("startPeriod", &h.start_period),
        ] {
            match parse_duration(&d.value) {
                None => diags.push(
                    r.diag_at(
                        DiagCode::InvalidValue,
                        d,
                        format!("{what} `{}` is not a duration", d.value),
                    )
                    .with_hint("write e.g. `500ms`, `2s` or `1m`"),
                ),
                Some(t) if what != "startPeriod" && t < std::time::Duration::from_millis(1) => {
                    diags.push(r.diag_at(
                        DiagCode::InvalidValue,
                        d,
                        format!("{what} must be at least 1ms"),
                    ));
                }
                Some(_) => {}
            }
        }
        let empty = match &h.command {
            super::spec::HealthCommand::Shell(s) => s.trim().is_empty(),
            super::spec::HealthCommand::Exec(args) => args.is_empty(),
        };
        if empty || h.retries == 0 {
            diags.push(r.diag_at(
                DiagCode::InvalidValue,
                &s.name,
                "a health check needs a command and at least one retry",
            ));
        }
    }
    if let Some(res) = &s.resources {
        if res.cpus.is_some_and(|c| !(c > 0.0 && c.is_finite())) {
            diags.push(r.diag_at(
                DiagCode::InvalidValue,
                &s.name,
                "resources.cpus must be a positive number",
            ));
        }
        if let Some(m) = &res.memory {
            match parse_memory(&m.value) {
                None => diags.push(
                    r.diag_at(
                        DiagCode::InvalidValue,
                        m,
                        format!("`{}` is not a memory size", m.value),
                    )
                    .with_hint("write e.g. `256m` or `1g`"),
                ),
                Some(b) if b < MIN_MEMORY => diags.push(r.diag_at(
                    DiagCode::InvalidValue,
                    m,
                    "Docker needs at least 6m of memory",
                )),
                Some(_) => {}
            }
        }
    }
}

fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
