//! The generator behind the kinds list: from `Variant => module::Type` lines it
//! makes the [`Kind`](super::Kind) enum, the spec, typed-desire and operation
//! enums, the [`Member`](super::Member) impls and one dispatch function per
//! stage of a resource's life. Every `match` on a kind in the program is here,
//! written once, for every kind at once.

/// Generates the kind enums and their dispatch; see the module doc.
macro_rules! kinds {
    ($( $(#[$doc:meta])* $variant:ident => $module:ident :: $ty:ident ),* $(,)?) => {
        /// The kinds of resource reconcile knows, in the order plans list them.
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize,
        )]
        pub enum Kind {
            $( $(#[$doc])* $variant, )*
        }

        impl Kind {
            /// Every kind, in the order plans list them.
            pub const ALL: &'static [Kind] = &[$( Kind::$variant ),*];

            /// The name written after `kind:`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Kind::$variant => stringify!($variant), )*
                }
            }

            /// Parses the name written after `kind:`.
            pub fn parse(s: &str) -> Option<Kind> {
                Kind::ALL.iter().copied().find(|k| k.as_str() == s)
            }
        }

        impl std::fmt::Display for Kind {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        /// A typed spec of any kind.
        // A project holds tens of specs, each loaded once: boxing the larger
        // kinds would buy nothing measurable.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone)]
        pub enum Spec {
            $( $(#[$doc])* $variant(<$module::$ty as ResourceKind>::Spec), )*
        }

        /// A typed spec with the inputs its kind desired from it.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone)]
        pub enum Typed {
            $(
                $(#[$doc])*
                $variant(
                    <$module::$ty as ResourceKind>::Spec,
                    <$module::$ty as ResourceKind>::Inputs,
                ),
            )*
        }

        /// An operation of any kind, as a plan holds it; serialized as the
        /// kind's own operation (`{"op": "loadSnapshots", …}`).
        #[derive(Debug, Clone, PartialEq, serde::Serialize)]
        #[serde(untagged)]
        pub enum Operation {
            /// One every kind may plan.
            Common(CommonOp),
            $( $(#[$doc])* $variant(<$module::$ty as ResourceKind>::Op), )*
        }

        $(
            impl Member for $module::$ty {
                const KIND: Kind = Kind::$variant;

                fn spec_of(spec: &Spec) -> Option<&Self::Spec> {
                    match spec {
                        Spec::$variant(s) => Some(s),
                        _ => None,
                    }
                }

                fn typed_of(typed: &Typed) -> Option<(&Self::Spec, &Self::Inputs)> {
                    match typed {
                        Typed::$variant(s, i) => Some((s, i)),
                        _ => None,
                    }
                }

                fn op_of(op: &Operation) -> Option<&Self::Op> {
                    match op {
                        Operation::$variant(o) => Some(o),
                        _ => None,
                    }
                }

                fn op(op: Self::Op) -> Operation {
                    Operation::$variant(op)
                }
            }
        )*

        impl Spec {
            /// The kind of this spec.
            pub fn kind(&self) -> Kind {
                match self {
                    $( Spec::$variant(_) => Kind::$variant, )*
                }
            }

            /// The name with its location.
            pub fn name(&self) -> &SpannedStr {
                match self {
                    $( Spec::$variant(s) => <$module::$ty as ResourceKind>::name(s), )*
                }
            }

            /// Explicit `dependsOn` references.
            pub fn depends_on(&self) -> &[SpannedStr] {
                match self {
                    $( Spec::$variant(s) => <$module::$ty as ResourceKind>::depends_on(s), )*
                }
            }

            /// Canonical JSON of the spec (locations dropped, `${VAR}` kept as
            /// written): the input of the spec hash and what the state store
            /// records. Spec types serialize infallibly (a unit test holds every
            /// kind to it); `Null` would only mean a bug there.
            pub fn canonical_json(&self) -> serde_json::Value {
                let v = match self {
                    $( Spec::$variant(s) => serde_json::to_value(s), )*
                };
                v.unwrap_or(serde_json::Value::Null)
            }
        }

        /// Deserializes one document as a spec of `kind`.
        pub fn parse_spec(kind: Kind, text: &str) -> Result<Spec, serde_saphyr::Error> {
            match kind {
                $( Kind::$variant => serde_saphyr::from_str(text).map(Spec::$variant), )*
            }
        }

        /// The JSON Schema of a kind's documents.
        pub fn schema(kind: Kind) -> schemars::Schema {
            match kind {
                $( Kind::$variant => schemars::schema_for!(<$module::$ty as ResourceKind>::Spec), )*
            }
        }

        /// Every resource a spec depends on: `dependsOn` and its kind's references.
        pub fn references(spec: &Spec) -> Vec<Reference> {
            let mut refs: Vec<Reference> =
                spec.depends_on().iter().map(|d| (d.clone(), None)).collect();
            refs.extend(match spec {
                $( Spec::$variant(s) => <$module::$ty as ResourceKind>::references(s), )*
            });
            refs
        }

        /// References whose target depends on this resource.
        pub fn reverse_references(spec: &Spec) -> Vec<Reference> {
            match spec {
                $( Spec::$variant(s) => <$module::$ty as ResourceKind>::reverse_references(s), )*
            }
        }

        /// The kind's own checks of one resource.
        pub fn check(cx: &CheckContext<'_>, r: &Resource, diags: &mut Vec<SpecDiagnostic>) {
            match &r.spec {
                $( Spec::$variant(s) => <$module::$ty as ResourceKind>::check(cx, r, s, diags), )*
            }
        }

        /// The container a desired resource runs as, if any.
        pub fn container_of(typed: &Typed) -> Option<&DesiredContainer> {
            match typed {
                $( Typed::$variant(_, i) => <$module::$ty as ResourceKind>::container(i), )*
            }
        }

        /// Whether a spec runs on the container engine.
        pub fn uses_engine(spec: &Spec) -> bool {
            match spec {
                $( Spec::$variant(s) => <$module::$ty as ResourceKind>::uses_engine(s), )*
            }
        }

        /// The files beyond its spec document a resource reads (glob patterns).
        pub fn reads(r: &Resource, root: &std::path::Path) -> Vec<glob::Pattern> {
            match &r.spec {
                $( Spec::$variant(s) => <$module::$ty as ResourceKind>::reads(r, s, root), )*
            }
        }

        /// What a resource generates, rendered without writing, if it generates anything.
        pub fn generated_files(
            r: &Resource,
            set: &SpecSet,
        ) -> Option<Result<GeneratedFiles, GenerateError>> {
            match &r.spec {
                $( Spec::$variant(s) => <$module::$ty as ResourceKind>::generated_files(r, s, set), )*
            }
        }

        /// The folder a resource generates files into, if it does.
        pub fn generated_folder(r: &Resource, root: &std::path::Path) -> Option<std::path::PathBuf> {
            match &r.spec {
                $( Spec::$variant(s) => <$module::$ty as ResourceKind>::generates(r, s, root), )*
            }
        }

        /// Whether a recorded resource ran on the container engine.
        pub fn recorded_uses_engine(kind: Kind, spec_json: &serde_json::Value) -> bool {
            match kind {
                $( Kind::$variant => <$module::$ty as ResourceKind>::recorded_uses_engine(spec_json), )*
            }
        }

        /// What one resource desires, before the spec hash is taken.
        pub fn desire_one(
            r: &Resource,
            set: &SpecSet,
            upstream: Upstream<'_>,
        ) -> Result<DesiredOne, ApplyError> {
            match &r.spec {
                $(
                    Spec::$variant(s) => {
                        let inputs = <$module::$ty as ResourceKind>::desire(r, s, set, upstream)?;
                        Ok(DesiredOne {
                            input_hash: <$module::$ty as ResourceKind>::input_hash(&inputs),
                            protect: <$module::$ty as ResourceKind>::protect(s),
                            pool: <$module::$ty as ResourceKind>::pool(&inputs),
                            typed: Typed::$variant(s.clone(), inputs),
                        })
                    }
                )*
            }
        }

        /// A resource's plan. Pure.
        pub fn diff(d: &DesiredResource, observed: &Observed, opts: &PlanOptions) -> ResourcePlan {
            match &d.typed {
                $(
                    Typed::$variant(spec, inputs) => <$module::$ty as ResourceKind>::diff(
                        &Desired {
                            id: &d.id,
                            spec,
                            inputs,
                            spec_json: &d.spec_json,
                            spec_hash: &d.spec_hash,
                            protect: d.protect,
                        },
                        observed,
                        opts,
                    ),
                )*
            }
        }

        /// The plan of a resource the specs no longer name. Pure.
        pub fn diff_removed(id: &ResourceId, observed: &Observed, opts: &PlanOptions) -> ResourcePlan {
            match id.kind {
                $( Kind::$variant => <$module::$ty as ResourceKind>::diff_removed(id, observed, opts), )*
            }
        }

        /// Carries out a resource's plan.
        pub async fn apply(
            ctx: &ApplyContext,
            d: &DesiredResource,
            plan: &ResourcePlan,
        ) -> Result<Applied, ApplyError> {
            match &d.typed {
                $(
                    Typed::$variant(spec, inputs) => {
                        let typed = Desired {
                            id: &d.id,
                            spec,
                            inputs,
                            spec_json: &d.spec_json,
                            spec_hash: &d.spec_hash,
                            protect: d.protect,
                        };
                        <$module::$ty as ResourceKind>::apply(ctx, &typed, plan).await
                    }
                )*
            }
        }

        /// Carries out the removal of a resource the specs no longer name.
        pub async fn apply_removed(ctx: &ApplyContext, plan: &ResourcePlan) -> Result<Applied, ApplyError> {
            match plan.id.kind {
                $( Kind::$variant => <$module::$ty as ResourceKind>::apply_removed(ctx, plan).await, )*
            }
        }
    };
}
