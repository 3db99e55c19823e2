//! The command line: parses flags, runs one command, maps outcomes to exit codes.
//! The only place that prints for humans besides `progress`.

mod compose;
mod gitops;
mod models;
mod monitor;
mod observability;
mod probe;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::diag;
use crate::plan::PlanOptions;
use crate::progress::Progress;
use crate::store::format_ms;
use crate::workspace::{StoreOverrides, Workspace, WorkspaceError};

/// reconcile: make an ML system match its declarative specs.
#[derive(Debug, Parser)]
#[command(name = "reconcile", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: LogArgs,
}

/// Flags every command takes: how much it logs and how it prints.
#[derive(Debug, Args)]
struct LogArgs {
    /// Log more on stderr: -v debug, -vv trace (`RUST_LOG` overrides).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Log only errors, and print only summaries.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Log events as `text` lines or `json` objects.
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: crate::logging::LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse and check specs; report every problem with file:line:column.
    Validate(SpecArgs),
    /// Show what apply would change and why. Exit 0: no changes, 2: changes, 1: error.
    Plan(PlanArgs),
    /// Converge: make the stores match the specs.
    Apply(ApplyArgs),
    /// Every resource: condition, last change, reason.
    Status(StoreArgs),
    /// Remove what the specs created (table data included; protected resources kept).
    Destroy(DestroyArgs),
    /// Read features from the stores.
    #[command(subcommand)]
    Features(FeaturesCommand),
    /// The model registry: versions, stages, promotion history.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// What monitors found: the newest verdict (table, JSON, HTML) and history.
    #[command(subcommand)]
    Monitor(monitor::MonitorCommand),
    /// Run the specs' endpoints in-process until SIGINT/SIGTERM; they follow the
    /// Production version and the online store without restarts.
    Serve(ServeArgs),
    /// Converge, then again on every change to the specs or the files they read,
    /// and on a periodic resync; runs until SIGINT/SIGTERM (exit 0).
    Watch(watch::WatchArgs),
    /// `watch --serve`: the controller and the endpoints in one process, in the
    /// foreground, as `docker compose up` runs a project.
    Up(watch::WatchArgs),
    /// Apply each new commit of a git branch; records the live commit and each
    /// commit's outcome. `--once` exits 0 when the last commit went live, 1 when not.
    Gitops(gitops::GitopsArgs),
    /// GET a URL as a container health check: exit 0 on 2xx, 1 otherwise.
    Probe(probe::ProbeArgs),
    /// Write the project's Services and docker Endpoints as a docker compose file.
    Compose(compose::ComposeArgs),
    /// Write the Prometheus config, alert rules and Grafana dashboards derived
    /// from the specs' endpoints, monitors and Observability settings.
    Observability(observability::ObservabilityArgs),
    /// Write a JSON Schema per kind for editor completion.
    Schema {
        /// Output folder.
        #[arg(long, default_value = "schemas")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum FeaturesCommand {
    /// A point-in-time correct feature table for every entity as of a date.
    Historical(HistoricalArgs),
    /// The online feature values of one entity, as JSON.
    Get(GetArgs),
}

#[derive(Debug, Args)]
struct GetArgs {
    /// Entity name, e.g. `user`.
    entity: String,
    /// The entity's key, e.g. `7590-VHVEG`.
    key: String,
    /// Folder of specs.
    #[arg(long, default_value = "specs")]
    specs: PathBuf,
    /// State store URL (overrides the Project spec).
    #[arg(long, env = "RECONCILE_STATE")]
    state: Option<String>,
    /// Online store URL (overrides the Project spec).
    #[arg(long, env = "RECONCILE_ONLINE")]
    online: Option<String>,
}

#[derive(Debug, Args)]
struct HistoricalArgs {
    #[command(flatten)]
    stores: StoreArgs,
    /// Feature views to join (comma separated).
    #[arg(long, value_delimiter = ',', required = true)]
    views: Vec<String>,
    /// The point in time (YYYY-MM-DD): values at or before it, within each view's TTL.
    #[arg(long)]
    as_of: String,
    /// Output CSV (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct SpecArgs {
    /// Folder of specs (searched recursively for *.yaml / *.yml).
    #[arg(default_value = "specs")]
    dir: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct StoreArgs {
    #[command(flatten)]
    spec: SpecArgs,
    #[command(flatten)]
    urls: StoreUrls,
}

/// Which endpoints a serving command runs, and where.
#[derive(Debug, Args)]
struct EndpointFlags {
    /// Serve only this endpoint.
    #[arg(long)]
    endpoint: Option<String>,
    /// Listen on this port instead of the spec's (0: any free port).
    #[arg(long)]
    port: Option<u16>,
    /// Bind this address instead of the spec's.
    #[arg(long)]
    host: Option<String>,
}

/// The store URLs every command that opens the stores takes.
#[derive(Debug, Args)]
struct StoreUrls {
    /// State store URL (overrides the Project spec), e.g. postgres://user@host/db.
    #[arg(long, env = "RECONCILE_STATE")]
    state: Option<String>,
    /// Offline store URL (defaults to the state store).
    #[arg(long, env = "RECONCILE_OFFLINE")]
    offline: Option<String>,
    /// Online store URL (defaults to the offline store).
    #[arg(long, env = "RECONCILE_ONLINE")]
    online: Option<String>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    stores: StoreArgs,
    #[command(flatten)]
    endpoints: EndpointFlags,
    /// Capacity of each endpoint's prediction-log queue (predictions beyond it are
    /// dropped and counted). For tests and tuning; not a spec setting.
    #[arg(long, env = "RECONCILE_PREDICTION_LOG_CAPACITY", hide = true)]
    prediction_log_capacity: Option<usize>,
    /// Connections each endpoint serves at once; more are shed with a 503.
    #[arg(long, env = "RECONCILE_MAX_CONNECTIONS", hide = true, default_value_t = crate::serve::http::Limits::default().max_connections)]
    max_connections: usize,
    /// Longest from a request's first byte to its complete head, e.g. 10s.
    #[arg(long, env = "RECONCILE_HEADER_TIMEOUT", hide = true, value_parser = parse_duration, default_value = "10s")]
    header_timeout: Duration,
    /// Longest a connection stays open with nothing moving and no request handled, e.g. 30s.
    #[arg(long, env = "RECONCILE_IDLE_TIMEOUT", hide = true, value_parser = parse_duration, default_value = "30s")]
    idle_timeout: Duration,
    /// Leave requests and predictions uncounted, to measure what counting
    /// costs (the serve benchmark). `/metrics` still answers.
    #[arg(long, hide = true)]
    without_request_metrics: bool,
}

#[derive(Debug, Args)]
struct PlanArgs {
    #[command(flatten)]
    stores: StoreArgs,
    /// Plan dropping data no longer named by the specs.
    #[arg(long)]
    prune_data: bool,
}

#[derive(Debug, Args)]
struct ApplyArgs {
    #[command(flatten)]
    plan: PlanArgs,
    /// Resources applied at once (default: number of cores).
    #[arg(long)]
    parallelism: Option<usize>,
    /// How long to wait for another apply to finish, e.g. 30s, 2m (default: fail at once).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    lock_timeout: Duration,
}

#[derive(Debug, Args)]
struct DestroyArgs {
    #[command(flatten)]
    stores: StoreArgs,
    /// Really remove (without it, only show what would go).
    #[arg(long)]
    yes: bool,
    /// Also remove the project's named Docker volumes (their data is lost).
    #[arg(long)]
    purge: bool,
    /// How long to wait for another apply to finish.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    lock_timeout: Duration,
}

/// Parses `500ms`, `30s`, `2m` or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 30s or 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit `{unit}` in `{s}`: use ms, s, m or h")),
    };
    Ok(Duration::from_secs_f64(secs))
}

impl StoreArgs {
    fn overrides(&self) -> StoreOverrides {
        self.urls.overrides()
    }
}

impl StoreUrls {
    fn overrides(&self) -> StoreOverrides {
        StoreOverrides {
            state: self.state.clone(),
            offline: self.offline.clone(),
            online: self.online.clone(),
            base: None,
        }
    }
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbosity = if cli.log.quiet {
        -1
    } else {
        i8::try_from(cli.log.verbose).unwrap_or(i8::MAX)
    };
    crate::logging::init(verbosity, cli.log.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run(cli))
}

fn load(args: &SpecArgs) -> Result<Workspace, ExitCode> {
    Workspace::load(&args.dir).map_err(|e| report_error(&e, args.json))
}

fn report_error(e: &WorkspaceError, json: bool) -> ExitCode {
    match e {
        WorkspaceError::Specs(diags) => {
            if json {
                let v: Vec<serde_json::Value> = diags
                    .iter()
                    .map(|d| {
                        serde_json::json!({
                            "code": d.code, "file": d.file, "line": d.line, "column": d.column,
                            "message": d.message, "hint": d.hint,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                eprint!("{}", diag::render(diags));
                eprintln!("error: {} problem(s) in the specs", diags.len());
            }
        }
        other => eprintln!(
            "error: {}",
            crate::spec::env::redact_secrets(&crate::logging::with_causes(other))
        ),
    }
    ExitCode::from(1)
}

async fn run(cli: Cli) -> ExitCode {
    let quiet = cli.log.quiet;
    match cli.command {
        Command::Validate(args) => match load(&args) {
            Ok(ws) => {
                if args.json {
                    println!("[]");
                } else {
                    println!(
                        "{} resource(s) in {} are valid.",
                        ws.set.resources.len(),
                        args.dir.display()
                    );
                }
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Plan(args) => plan(args).await,
        Command::Apply(args) => apply(args, quiet).await,
        Command::Status(args) => status(args).await,
        Command::Destroy(args) => destroy(args).await,
        Command::Schema { out } => schema(out),
        Command::Features(FeaturesCommand::Historical(args)) => historical(args).await,
        Command::Features(FeaturesCommand::Get(args)) => get_features(args).await,
        Command::Models(cmd) => models::run(cmd).await,
        Command::Monitor(cmd) => monitor::run(cmd).await,
        Command::Serve(args) => serve(args).await,
        Command::Watch(args) => watch::run(args, false, quiet).await,
        Command::Up(args) => watch::run(args, true, quiet).await,
        Command::Gitops(args) => gitops::run(args, quiet).await,
        Command::Probe(args) => probe::run(args).await,
        Command::Compose(args) => compose::run(args),
        Command::Observability(args) => observability::run(args),
    }
}

async fn plan(args: PlanArgs) -> ExitCode {
    let json = args.stores.spec.json;
    let ws = match load(&args.stores.spec) {
        Ok(ws) => ws,
        Err(c) => return c,
    };
    let result = async {
        let stores = ws.open_stores(&args.stores.overrides()).await?;
        let opts = PlanOptions {
            prune_data: args.prune_data,
        };
        let (_, _, plan) = ws.plan(&stores, &opts).await?;
        stores.state.db.close().await;
        Ok::<_, WorkspaceError>(plan)
    }
    .await;
    match result {
        Ok(plan) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&plan).unwrap_or_default()
                );
            } else {
                print!("{}", plan.render(diag::colour_enabled()));
            }
            if plan.has_changes() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => report_error(&e, json),
    }
}

async fn apply(args: ApplyArgs, quiet: bool) -> ExitCode {
    let json = args.plan.stores.spec.json;
    let ws = match load(&args.plan.stores.spec) {
        Ok(ws) => ws.with_stop(crate::shutdown::on_signals()),
        Err(c) => return c,
    };
    let parallelism = args
        .parallelism
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let progress = Progress::new(quiet || json);
    let quiet = quiet || json;
    let t0 = std::time::Instant::now();
    let result = async {
        for started in ws.start_store_services().await? {
            if !quiet {
                eprintln!("store service {started}");
            }
        }
        let stores = ws.open_stores(&args.plan.stores.overrides()).await?;
        let opts = PlanOptions {
            prune_data: args.plan.prune_data,
        };
        let out = ws
            .apply(
                &stores,
                &opts,
                parallelism,
                args.lock_timeout,
                &progress,
                |round, plan| {
                    if !quiet && plan.has_changes() {
                        if round > 1 {
                            eprintln!(
                                "\nround {round}: what round {} changed is input to more:",
                                round - 1
                            );
                        }
                        eprint!("{}", plan.render(diag::colour_enabled()));
                    }
                },
            )
            .await;
        stores.state.db.close().await;
        out
    }
    .await;
    match result {
        Ok((plan, report)) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"plan": plan, "report": report})
                    )
                    .unwrap_or_default()
                );
            } else if !plan.has_changes() {
                println!(
                    "No changes. {} resource(s) up to date ({} ms).",
                    plan.resources.len(),
                    t0.elapsed().as_millis()
                );
            } else {
                let ok = report
                    .outcomes
                    .iter()
                    .filter(|o| o.condition == crate::store::state::Condition::Ready)
                    .count();
                println!(
                    "Apply {}: {ok} converged, {} failed, {} blocked ({} ms).",
                    if report.success() {
                        "complete"
                    } else {
                        "incomplete"
                    },
                    report.failed(),
                    report.blocked(),
                    t0.elapsed().as_millis()
                );
                if !report.success() && !quiet {
                    for o in report
                        .outcomes
                        .iter()
                        .filter(|o| o.condition != crate::store::state::Condition::Ready)
                    {
                        eprintln!("\n{} {}:\n{}", o.condition, o.id, o.message);
                    }
                }
            }
            if report.interrupted {
                ExitCode::from(130)
            } else if report.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => report_error(&e, json),
    }
}

async fn status(args: StoreArgs) -> ExitCode {
    let json = args.spec.json;
    // Status reads the stores and starts nothing: it needs no secrets.
    let ws = match Workspace::load_without_secrets(&args.spec.dir) {
        Ok(ws) => ws,
        Err(e) => return report_error(&e, json),
    };
    let result = async {
        let stores = ws.open_stores(&args.overrides()).await?;
        let (desired, observed, plan) = ws.plan(&stores, &PlanOptions::default()).await?;
        let live = gitops::live_line(&stores).await;
        stores.state.db.close().await;
        Ok::<_, WorkspaceError>((desired, observed, plan, live))
    }
    .await;
    let (desired, observed, plan, live) = match result {
        Ok(v) => v,
        Err(e) => return report_error(&e, json),
    };
    let mut rows = Vec::new();
    for d in &desired.resources {
        let rec = observed.records.get(&d.id);
        let pending = plan
            .resources
            .iter()
            .find(|p| p.id == d.id)
            .filter(|p| p.action != crate::plan::Action::NoOp);
        let state = match (rec, pending) {
            (None, _) => "NotApplied".to_string(),
            (Some(r), Some(_)) if r.condition == crate::store::state::Condition::Ready => {
                "OutOfDate".to_string()
            }
            (Some(r), _) => r.condition.to_string(),
        };
        let reason = match (pending, rec) {
            (Some(p), _) => p.reasons.first().cloned().unwrap_or_default(),
            (None, Some(r)) => format!(
                "{}: {}",
                r.reason,
                r.message.lines().next().unwrap_or_default()
            ),
            (None, None) => String::new(),
        };
        rows.push(serde_json::json!({
            "kind": d.id.kind, "name": d.id.name, "state": state,
            "lastChange": rec.map(|r| format_ms(r.last_change_ms)), "reason": reason,
            "outputs": rec.map(|r| r.outputs.clone()),
        }));
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
    } else {
        if let Some(live) = live {
            println!("{live}");
        }
        println!(
            "{:<12} {:<22} {:<11} {:<24} REASON",
            "KIND", "NAME", "STATE", "LAST CHANGE"
        );
        for r in &rows {
            let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
            println!(
                "{:<12} {:<22} {:<11} {:<24} {}",
                r["kind"].as_str().unwrap_or_default(),
                s("name"),
                s("state"),
                s("lastChange"),
                s("reason")
            );
        }
    }
    ExitCode::SUCCESS
}

async fn destroy(args: DestroyArgs) -> ExitCode {
    let json = args.stores.spec.json;
    let ws = match load(&args.stores.spec) {
        Ok(ws) => ws.with_stop(crate::shutdown::on_signals()),
        Err(c) => return c,
    };
    if !args.yes {
        eprintln!(
            "destroy removes every resource of {} and drops table data.",
            args.stores.spec.dir.display()
        );
        eprintln!("Re-run with --yes to proceed.");
        return ExitCode::from(1);
    }
    let progress = Progress::new(json);
    let result = async {
        let stores = ws.open_stores(&args.stores.overrides()).await?;
        let out = ws
            .destroy(&stores, args.lock_timeout, args.purge, &progress)
            .await;
        stores.state.db.close().await;
        out
    }
    .await;
    match result {
        Ok((plan, report)) => {
            for r in &plan.resources {
                for w in &r.warnings {
                    eprintln!("! {}: {w}", r.id);
                }
            }
            println!(
                "Destroy {}: {} removed, {} failed.",
                if report.success() {
                    "complete"
                } else {
                    "incomplete"
                },
                report.outcomes.len() - report.failed(),
                report.failed()
            );
            if report.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => report_error(&e, json),
    }
}

async fn historical(args: HistoricalArgs) -> ExitCode {
    let ws = match load(&args.stores.spec) {
        Ok(ws) => ws,
        Err(c) => return c,
    };
    let Ok(at) = chrono::NaiveDate::parse_from_str(&args.as_of, "%Y-%m-%d") else {
        eprintln!("error: --as-of `{}` is not a date (YYYY-MM-DD)", args.as_of);
        return ExitCode::from(1);
    };
    let t0 = std::time::Instant::now();
    let result = async {
        let views = args
            .views
            .iter()
            .map(|v| crate::features::resolve(&ws.set, v))
            .collect::<Result<Vec<_>, _>>()?;
        let stores = ws
            .open_stores(&args.stores.overrides())
            .await
            .map_err(crate::features::FeatureError::Store)?;
        let batch = crate::features::historical_as_of(&stores.offline, &views, at).await?;
        stores.state.db.close().await;
        Ok::<_, crate::features::FeatureError>(batch)
    }
    .await;
    let batch = match result {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let written = match &args.out {
        Some(path) => std::fs::File::create(path)
            .and_then(|f| crate::features::write_csv(&batch, std::io::BufWriter::new(f))),
        None => crate::features::write_csv(&batch, std::io::stdout().lock()),
    };
    if let Err(e) = written {
        eprintln!("error: cannot write features: {e}");
        return ExitCode::from(1);
    }
    eprintln!(
        "{} rows × {} features as of {} ({} ms)",
        batch.rows(),
        batch.columns.len() - 2,
        args.as_of,
        t0.elapsed().as_millis()
    );
    ExitCode::SUCCESS
}

async fn get_features(args: GetArgs) -> ExitCode {
    let ws = match load(&SpecArgs {
        dir: args.specs.clone(),
        json: true,
    }) {
        Ok(ws) => ws,
        Err(c) => return c,
    };
    let views: Vec<&crate::kinds::feature_view::FeatureViewSpec> = ws
        .set
        .specs::<crate::kinds::feature_view::FeatureView>()
        .map(|(_, v)| v)
        .filter(|v| v.online && v.entity.value == args.entity)
        .collect();
    if views.is_empty() {
        eprintln!(
            "error: no online FeatureView of entity `{}` in {}",
            args.entity,
            args.specs.display()
        );
        return ExitCode::from(1);
    }
    let overrides = StoreOverrides {
        state: args.state.clone(),
        offline: None,
        online: args.online.clone(),
        base: None,
    };
    let result = async {
        let stores = ws.open_stores(&overrides).await?;
        let mut found = serde_json::Map::new();
        let mut missing = Vec::new();
        for v in &views {
            let rows = stores
                .online
                .read_many(&v.name.value, std::slice::from_ref(&args.key))
                .await?;
            match rows.into_values().next() {
                Some(values) => {
                    found.insert(v.name.value.clone(), values);
                }
                None => missing.push(v.name.value.clone()),
            }
        }
        stores.state.db.close().await;
        Ok::<_, crate::store::StoreError>((found, missing))
    }
    .await;
    match result {
        Ok((found, missing)) => {
            let ok = !found.is_empty();
            let v = serde_json::json!({ "entity": args.entity, "key": args.key, "features": found, "missing_views": missing });
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn schema(out: PathBuf) -> ExitCode {
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("error: cannot create {}: {e}", out.display());
        return ExitCode::from(1);
    }
    for (name, v) in crate::schema::schemas() {
        let path = out.join(&name);
        if let Err(e) = std::fs::write(&path, crate::schema::render(&v)) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::from(1);
        }
        println!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}

async fn serve(args: ServeArgs) -> ExitCode {
    let started = std::time::Instant::now();
    let ws = match load(&args.stores.spec) {
        Ok(ws) => ws,
        Err(c) => return c,
    };
    let stores = match ws.open_stores(&args.stores.overrides()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let opts = crate::serve::ServeOptions {
        endpoint: args.endpoints.endpoint.clone(),
        port: args.endpoints.port,
        host: args.endpoints.host.clone(),
        log_capacity: args.prediction_log_capacity,
        limits: crate::serve::http::Limits {
            max_connections: args.max_connections,
            header_timeout: args.header_timeout,
            idle_timeout: args.idle_timeout,
        },
        without_request_metrics: args.without_request_metrics,
    };
    let serve_stores = crate::serve::ServeStores::of(&stores);
    let stop = crate::shutdown::on_signals();
    let result = crate::serve::run(&ws.set, serve_stores, &opts, stop, |s, addr| {
        let model = s.model.load();
        let what = match model.as_ref() {
            Some(m) => format!("{} version {}", m.info.model, m.info.version),
            None => format!("{} (no Production version yet)", s.model_name),
        };
        use std::io::Write as _;
        let mut out = std::io::stdout();
        let _ = writeln!(
            out,
            "Endpoint/{} serving {what} on http://{addr} (ready in {} ms)",
            s.name,
            started.elapsed().as_millis()
        );
        let _ = out.flush();
    })
    .await;
    match result {
        Ok(()) => {
            // stdout may be gone by now (a closed pipe): never panic on the way out.
            use std::io::Write as _;
            let _ = writeln!(std::io::stdout(), "stopped: in-flight requests finished");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("5x").is_err());
    }
}
