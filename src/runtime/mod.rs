//! Where workloads run. Kinds that run something outside reconcile's own
//! process plan and act through a runtime here, so the planner, the engine and
//! the workspace never learn how: [`containers`] (one container on the local
//! engine) and [`swarm`] (a replicated Swarm service), chosen per workload by
//! its `runtime`.

pub mod containers;
pub mod swarm;
