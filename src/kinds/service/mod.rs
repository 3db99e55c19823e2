//! `Service`: a container the controller keeps as declared, on the project
//! network. The spec ([`spec`]) and its engine-free checks ([`check`]) live
//! here; planning and acting go through the container runtime
//! ([`crate::runtime::containers`]).

pub mod check;
pub mod deploy;
pub mod spec;

use super::{
    Applied, ApplyContext, ApplyError, CheckContext, Desired, Observed, Pool, ResourceKind,
    Upstream, record,
};
use crate::diag::SpecDiagnostic;
use crate::plan::{PlanOptions, ResourcePlan};
use crate::runtime::containers::{self, ContainerOp, DesiredContainer, ImageFrom};
use crate::spec::{Resource, ResourceId, SpannedStr, SpecSet};
pub use spec::ServiceSpec;

/// The `Service` kind.
pub struct Service;

impl ResourceKind for Service {
    type Spec = ServiceSpec;
    type Inputs = DesiredContainer;
    type Op = ContainerOp;

    fn name(spec: &ServiceSpec) -> &SpannedStr {
        &spec.name
    }

    fn depends_on(spec: &ServiceSpec) -> &[SpannedStr] {
        &spec.depends_on
    }

    fn check(
        cx: &CheckContext<'_>,
        r: &Resource,
        spec: &ServiceSpec,
        diags: &mut Vec<SpecDiagnostic>,
    ) {
        check::check_service(cx, r, spec, diags);
    }

    fn desire(
        r: &Resource,
        spec: &ServiceSpec,
        set: &SpecSet,
        upstream: Upstream<'_>,
    ) -> Result<DesiredContainer, ApplyError> {
        containers::desire(r, spec.clone(), ImageFrom::Spec, set, upstream)
    }

    fn reads(r: &Resource, spec: &ServiceSpec, _root: &std::path::Path) -> Vec<glob::Pattern> {
        // The build context is hashed into the image; bind mounts are seen
        // live by the container and need no apply.
        spec.build
            .iter()
            .filter_map(|b| {
                let dir = glob::Pattern::escape(b.context.value.trim_end_matches('/'));
                super::read_pattern(r.base_dir(), &format!("{dir}/**/*"))
            })
            .collect()
    }

    fn input_hash(inputs: &DesiredContainer) -> String {
        inputs.input_hash()
    }

    fn pool(_inputs: &DesiredContainer) -> Pool {
        Pool::Containers
    }

    fn container(inputs: &DesiredContainer) -> Option<&DesiredContainer> {
        Some(inputs)
    }

    fn diff(d: &Desired<'_, Self>, observed: &Observed, _opts: &PlanOptions) -> ResourcePlan {
        containers::plan(d, d.inputs, observed)
    }

    fn diff_removed(id: &ResourceId, observed: &Observed, _opts: &PlanOptions) -> ResourcePlan {
        containers::plan_removal::<Self>(id, observed).unwrap_or_else(|| record::forget(id))
    }

    async fn apply(
        ctx: &ApplyContext,
        d: &Desired<'_, Self>,
        plan: &ResourcePlan,
    ) -> Result<Applied, ApplyError> {
        containers::apply::<Self>(&ctx.docker, d.id, d.spec_hash, d.inputs, plan).await
    }

    async fn apply_removed(ctx: &ApplyContext, plan: &ResourcePlan) -> Result<Applied, ApplyError> {
        containers::apply_removal::<Self>(&ctx.docker, &ctx.state.project, plan).await
    }

    fn uses_engine(_spec: &ServiceSpec) -> bool {
        true
    }

    fn recorded_uses_engine(_spec_json: &serde_json::Value) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::{ContainerObs, MountFrom};
    use crate::kinds::{CommonOp, DesiredState, Kind, Operation};
    use crate::plan::{Action, PlanOptions};
    use crate::runtime::containers::{ContainerOp, DockerView};
    use crate::spec::ResourceId;
    use crate::store::state::{Condition, ResourceRecord};

    /// The desired state of a one-service project (no engine involved).
    fn desired() -> (tempfile::TempDir, DesiredState) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("s.yaml"),
            "kind: Project\nname: demo\n---\nkind: Service\nname: web\nimage: busybox:1\n\
             volumes: [\"data:/data\"]\n",
        )
        .expect("write");
        let set = crate::spec::validate::load_and_validate(dir.path()).expect("valid");
        let order: Vec<ResourceId> = set.resources.iter().map(|r| r.id.clone()).collect();
        let desired = crate::kinds::desire(&set, &order, &Observed::default()).expect("desire");
        (dir, desired)
    }

    fn web(d: &DesiredState) -> &crate::kinds::DesiredResource {
        d.resources
            .iter()
            .find(|r| r.id.kind == Kind::Service)
            .expect("service")
    }

    fn container(hash: &str, state: &str, health: Option<&str>) -> ContainerObs {
        ContainerObs {
            id: "c0ffee".into(),
            name: "demo-web".into(),
            resource: "Service/web".into(),
            hash: hash.into(),
            state: state.into(),
            health: health.map(str::to_string),
            status: format!("{state} for a while"),
        }
    }

    fn observed(c: Option<ContainerObs>, record_hash: Option<&str>) -> Observed {
        let mut o = Observed {
            docker: DockerView::Seen(c.into_iter().map(|c| (c.resource.clone(), c)).collect()),
            ..Observed::default()
        };
        if let Some(h) = record_hash {
            let id = ResourceId::new(Kind::Service, "web");
            o.records.insert(
                id.clone(),
                ResourceRecord {
                    id,
                    spec_hash: h.into(),
                    spec_json: serde_json::json!({}),
                    condition: Condition::Ready,
                    reason: "Applied".into(),
                    message: String::new(),
                    outputs: serde_json::json!({ "container": "demo-web" }),
                    protect: false,
                    last_change_ms: 0,
                    last_apply_ms: 0,
                },
            );
        }
        o
    }

    #[test]
    fn names_and_mounts_are_per_project() {
        let (_dir, d) = desired();
        let s = web(&d).of::<Service>().expect("service").inputs;
        assert_eq!(s.container_name, "demo-web");
        assert_eq!(s.network, "reconcile-demo");
        assert_eq!(s.mounts[0].from, MountFrom::Volume("demo_data".into()));
    }

    #[test]
    fn each_observation_gets_its_action() {
        let (_dir, d) = desired();
        let w = web(&d);
        let h = w.spec_hash.as_str();
        let cases = [
            (observed(None, None), Action::Create, "new container"),
            (
                observed(None, Some(h)),
                Action::Create,
                "removed out of band",
            ),
            (
                observed(Some(container("old", "running", None)), Some("old")),
                Action::Replace,
                "spec changed",
            ),
            (
                observed(Some(container("old", "running", None)), Some(h)),
                Action::Replace,
                "replaced out of band",
            ),
            (
                observed(Some(container(h, "exited", None)), Some(h)),
                Action::Update,
                "start it",
            ),
            (
                observed(Some(container(h, "running", Some("unhealthy"))), Some(h)),
                Action::Replace,
                "unhealthy",
            ),
            (
                observed(Some(container(h, "running", None)), None),
                Action::Update,
                "adopt",
            ),
            (
                observed(Some(container(h, "running", Some("healthy"))), Some(h)),
                Action::NoOp,
                "",
            ),
        ];
        for (o, action, reason) in cases {
            let plan = crate::kinds::diff(w, &o, &PlanOptions::default());
            assert_eq!(plan.action, action, "{:?}", plan.reasons);
            assert!(
                plan.reasons.join(" ").contains(reason),
                "{:?}",
                plan.reasons
            );
        }
        let replace = crate::kinds::diff(
            w,
            &observed(Some(container("old", "running", None)), None),
            &PlanOptions::default(),
        );
        assert!(
            replace
                .operations
                .contains(&Operation::Service(ContainerOp::RunContainer {
                    replaces: Some("c0ffee".into())
                }))
        );
    }

    #[test]
    fn an_unreachable_engine_is_a_planned_change_with_the_reason() {
        let (_dir, d) = desired();
        let o = Observed {
            docker: DockerView::Unreachable("no Docker engine reachable at unix:///x".into()),
            ..Observed::default()
        };
        let plan = crate::kinds::diff(web(&d), &o, &PlanOptions::default());
        assert_eq!(plan.action, Action::Create);
        assert!(plan.reasons[0].contains("unix:///x"));
    }

    #[test]
    fn containers_of_removed_resources_are_pruned() {
        let o = observed(Some(container("h", "running", None)), None);
        let opts = PlanOptions::default();
        let plan = crate::kinds::diff_removed(&ResourceId::new(Kind::Service, "web"), &o, &opts);
        assert_eq!(plan.action, Action::Delete);
        assert_eq!(
            plan.operations,
            vec![
                Operation::Service(ContainerOp::RemoveContainer {
                    id: "c0ffee".into()
                }),
                CommonOp::Forget.into()
            ]
        );
        // A removed service whose container is already gone is only forgotten.
        let gone = crate::kinds::diff_removed(&ResourceId::new(Kind::Service, "other"), &o, &opts);
        assert_eq!(gone.operations, vec![Operation::from(CommonOp::Forget)]);
    }

    #[test]
    fn shared_objects_are_planned_when_missing_and_torn_down_last() {
        use crate::runtime::containers::{ObjectOp, ProjectObjects, plan_objects, plan_teardown};
        let (_dir, d) = desired();
        let network = ObjectOp::CreateNetwork {
            name: "reconcile-demo".into(),
        };
        let volume = ObjectOp::CreateVolume {
            name: "demo_data".into(),
        };
        // No view of the engine: everything needed is planned.
        assert_eq!(
            plan_objects(&d, None),
            vec![network.clone(), volume.clone()]
        );
        let mut seen = ProjectObjects::default();
        seen.networks.insert("reconcile-demo".into());
        assert_eq!(plan_objects(&d, Some(&seen)), vec![volume]);
        seen.volumes.insert("demo_data".into());
        assert!(plan_objects(&d, Some(&seen)).is_empty());
        assert!(plan_objects(&DesiredState::default(), None).is_empty());
        assert_eq!(
            plan_teardown("demo", Some(&seen), false),
            vec![
                ObjectOp::RemoveNetwork {
                    name: "reconcile-demo".into()
                },
                ObjectOp::RemoveBuiltImages
            ]
        );
        assert_eq!(
            plan_teardown("demo", Some(&seen), true).last(),
            Some(&ObjectOp::RemoveVolume {
                name: "demo_data".into()
            })
        );
        assert!(plan_teardown("demo", None, true).is_empty());
        let plan = crate::plan::Plan {
            resources: Vec::new(),
            objects: plan_teardown("demo", Some(&seen), false),
        };
        assert_eq!(
            plan.render(false),
            "- delete network reconcile-demo\n- delete images built for the project\n\
             Plan: 0 to create, 0 to update, 0 to replace, 2 to delete, 0 unchanged.\n"
        );
        assert!(plan.has_changes());
    }
}
