//! Where workloads run. Kinds that run something outside reconcile's own
//! process (a container today; a cluster service next) plan and act through a
//! runtime here, so the planner, the engine and the workspace never learn how.

pub mod containers;
