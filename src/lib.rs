//! reconcile: one declarative controller for an ML system.
//!
//! Specs (YAML) are loaded with locations ([`spec`]), linked into a dependency
//! graph ([`graph`]), compared with what the stores hold by a pure planner
//! ([`plan`]) and converged by the [`engine`] through one reconciler per kind
//! ([`kinds`]). See `docs/ARCHITECTURE.md` for the map.

// Diagnostics are the cold path and carry their snippet; boxing them only adds noise.
#![allow(clippy::result_large_err)]

pub mod cli;
pub mod colour;
pub mod container;
pub mod controller;
pub mod data;
pub mod diag;
pub mod docker;
pub mod docker_auth;
pub mod drift;
pub mod duration;
pub mod engine;
pub mod export;
pub mod features;
pub mod gitops;
pub mod graph;
pub mod hash;
pub mod kinds;
pub mod logging;
pub mod ml;
pub mod observe;
pub mod plan;
pub mod progress;
pub mod runtime;
pub mod schema;
pub mod serve;
pub mod serve_image;
pub mod shutdown;
pub mod spec;
pub mod status;
pub mod store;
pub mod ui;
pub mod workspace;
