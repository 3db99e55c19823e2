//! The command line: parses flags, runs one command, maps outcomes to exit codes.
//! The only place that prints for humans besides `progress`.

mod compose;
mod export;
mod gitops;
mod init;
mod models;
mod monitor;
mod observability;
pub mod output;
mod probe;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::diag;
use crate::plan::PlanOptions;
use crate::progress::Progress;
use crate::workspace::{StoreOverrides, Workspace, WorkspaceError};

/// reconcile: make an ML system match its declarative specs.
#[derive(Debug, Parser)]
#[command(name = "reconcile", version, about, long_about = None, after_help = EXIT_CODES_GENERAL)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: LogArgs,
}

const EXIT_CODES_GENERAL: &str =
    "Exit codes: 0 success, 1 error; each command's --help lists its own.";
const EXIT_VALIDATE: &str = "Exit codes: 0 the specs are valid, 1 problems (listed) or error.";
const EXIT_PLAN: &str = "Exit codes: 0 no changes, 2 changes planned, 1 error.";
const EXIT_APPLY: &str = "Exit codes: 0 converged (or nothing to do), 1 a resource failed or error, \
130 interrupted by SIGINT or SIGTERM (running work rolled back).";
const EXIT_STATUS: &str = "Exit codes: 0 every applied resource is Ready and matches its spec, \
2 a resource is Failed, Blocked or OutOfDate (drifted, or its spec or inputs changed since it was applied), \
1 error. Resources never applied (NotApplied) do not count.";
const EXIT_DESTROY: &str = "Exit codes: without --yes (a dry run that lists what would go and changes nothing): \
0 nothing to remove, 2 something would be removed; with --yes: 0 removed, 1 a removal failed or error, \
130 interrupted by SIGINT or SIGTERM.";
const EXIT_READ: &str = "Exit codes: 0 success, 1 error.";
const EXIT_LONG_RUNNING: &str = "Exit codes: 0 stopped by SIGINT or SIGTERM, 1 error.";
const EXIT_GITOPS: &str = "Exit codes: 0 stopped by SIGINT or SIGTERM (with --once: the last commit went live), \
1 error (with --once: the last commit failed).";
const EXIT_PROBE: &str = "Exit codes: 0 a 2xx answer, 1 anything else.";

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
    /// Colour output: `auto` colours a stream that is a terminal unless
    /// NO_COLOR is set (non-empty); `always` also into pipes and files.
    #[arg(long, value_enum, default_value = "auto", global = true)]
    color: crate::colour::ColorChoice,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse and check specs; report every problem with file:line:column.
    #[command(after_help = EXIT_VALIDATE)]
    Validate(ValidateArgs),
    /// Show what apply would change and why.
    #[command(after_help = EXIT_PLAN)]
    Plan(PlanArgs),
    /// Converge: make the stores match the specs.
    #[command(after_help = EXIT_APPLY)]
    Apply(ApplyArgs),
    /// Every resource: condition, last change, reason.
    #[command(after_help = EXIT_STATUS)]
    Status(StatusArgs),
    /// Remove what the specs created (table data included; protected resources
    /// kept). Without --yes, only list what would go.
    #[command(after_help = EXIT_DESTROY)]
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
    #[command(after_help = EXIT_LONG_RUNNING)]
    Serve(ServeArgs),
    /// Converge, then again on every change to the specs or the files they read,
    /// and on a periodic resync; runs until SIGINT/SIGTERM.
    #[command(after_help = EXIT_LONG_RUNNING)]
    Watch(watch::WatchArgs),
    /// `watch --serve`: the controller and the endpoints in one process, in the
    /// foreground, as `docker compose up` runs a project.
    #[command(after_help = EXIT_LONG_RUNNING)]
    Up(watch::WatchArgs),
    /// Apply each new commit of a git branch; records the live commit and each
    /// commit's outcome.
    #[command(after_help = EXIT_GITOPS)]
    Gitops(gitops::GitopsArgs),
    /// GET a URL as a container health check.
    #[command(after_help = EXIT_PROBE)]
    Probe(probe::ProbeArgs),
    /// Write the project's Services and docker Endpoints as a docker compose
    /// file, whose containers are then compose's (`apply --no-containers`
    /// runs the rest beside them); `--build-images` builds the endpoint image.
    #[command(after_help = EXIT_READ)]
    Compose(compose::ComposeArgs),
    /// Write the project's containers for another tool: `export kubernetes`
    /// (manifests for kubectl, and the project image's Dockerfile).
    #[command(subcommand)]
    Export(export::ExportCommand),
    /// Write the Prometheus config, alert rules and Grafana dashboards derived
    /// from the specs' endpoints, monitors and Observability settings.
    #[command(after_help = EXIT_READ)]
    Observability(observability::ObservabilityArgs),
    /// Print the dependency graph of the specs (Graphviz DOT or Mermaid).
    #[command(after_help = EXIT_READ)]
    Graph(GraphArgs),
    /// Write a minimal commented project (Project, Entity, Table with a tiny
    /// CSV, FeatureView) to start from; never overwrites a file.
    #[command(after_help = EXIT_READ)]
    Init(init::InitArgs),
    /// Write a JSON Schema per kind for editor completion, and one per `--json`
    /// output under `output/`.
    #[command(after_help = EXIT_READ)]
    Schema {
        /// Output folder.
        #[arg(long, default_value = "schemas")]
        out: PathBuf,
    },
    /// Print a shell completion script, e.g. `reconcile completions bash > /etc/bash_completion.d/reconcile`.
    #[command(after_help = EXIT_READ)]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages (reconcile.1 and one per subcommand) into a folder, or
    /// print reconcile.1 on standard output.
    #[command(after_help = EXIT_READ)]
    Man {
        /// Output folder (default: print the main page).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum FeaturesCommand {
    /// A point-in-time correct feature table (CSV) for every entity as of a date.
    #[command(after_help = EXIT_READ)]
    Historical(HistoricalArgs),
    /// The online feature values of one entity (text, or JSON with --json).
    #[command(after_help = "Exit codes: 0 values found, 1 no online view holds the key, or error.")]
    Get(GetArgs),
}

/// The spec folder, a positional argument of every command that reads specs.
#[derive(Debug, Args)]
pub struct SpecDir {
    /// Folder of specs (searched recursively for *.yaml / *.yml) [default: specs].
    #[arg(value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The same folder as a flag (the older spelling, kept for scripts).
    #[arg(
        long = "specs",
        value_name = "DIR",
        hide = true,
        conflicts_with = "dir"
    )]
    specs: Option<PathBuf>,
}

impl SpecDir {
    /// The folder given (positional or `--specs`), else `specs`.
    pub fn path(&self) -> PathBuf {
        self.specs
            .clone()
            .or_else(|| self.dir.clone())
            .unwrap_or_else(|| PathBuf::from("specs"))
    }
}

#[derive(Debug, Args)]
struct GetArgs {
    /// Entity name, e.g. `user`.
    entity: String,
    /// The entity's key, e.g. `7590-VHVEG`.
    key: String,
    #[command(flatten)]
    spec: SpecDir,
    /// Machine-readable output (schemas/output/features-get.json).
    #[arg(long)]
    json: bool,
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
    spec: SpecDir,
    #[command(flatten)]
    urls: StoreUrls,
    /// Feature views to join (comma separated).
    #[arg(long, value_delimiter = ',', required = true)]
    views: Vec<String>,
    /// The point in time (YYYY-MM-DD): values at or before it, within each view's TTL.
    #[arg(long)]
    as_of: String,
    /// Output CSV (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    memory: MemoryArgs,
}

#[derive(Debug, Args)]
struct ValidateArgs {
    #[command(flatten)]
    spec: SpecDir,
    /// Machine-readable output (schemas/output/validate.json).
    #[arg(long)]
    json: bool,
}

/// The spec folder and the store URLs: what a command that opens the stores takes.
#[derive(Debug, Args)]
struct StoreArgs {
    #[command(flatten)]
    spec: SpecDir,
    #[command(flatten)]
    urls: StoreUrls,
}

#[derive(Debug, Args)]
struct StatusArgs {
    #[command(flatten)]
    stores: StoreArgs,
    /// Machine-readable output (schemas/output/status.json).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct GraphArgs {
    #[command(flatten)]
    spec: SpecDir,
    /// `dot` (Graphviz: `reconcile graph | dot -Tsvg > graph.svg`) or `mermaid`.
    #[arg(long, value_enum, default_value = "dot")]
    format: GraphFormat,
}

/// How `reconcile graph` prints.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum GraphFormat {
    /// Graphviz DOT.
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
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
    /// Serve no web UI at /ui (an endpoint reachable by clients that should
    /// not see the project's state).
    #[arg(long, env = "RECONCILE_NO_UI")]
    no_ui: bool,
}

#[derive(Debug, Args)]
struct PlanArgs {
    #[command(flatten)]
    stores: StoreArgs,
    /// Machine-readable output (schemas/output/plan.json; apply: apply.json).
    #[arg(long)]
    json: bool,
    /// Plan dropping data no longer named by the specs.
    #[arg(long)]
    prune_data: bool,
    /// Only this resource (`Kind/name`) and everything it depends on;
    /// repeatable. Nothing outside them is created, changed or removed.
    #[arg(long, value_name = "KIND/NAME")]
    target: Vec<String>,
    /// Leave every container to another tool (docker compose running the
    /// file `reconcile compose` wrote): Services and docker Endpoints are not
    /// planned, started or removed, and no store's Service is started; point
    /// the stores at the ports it publishes (--state or RECONCILE_STATE).
    #[arg(long)]
    no_containers: bool,
}

#[derive(Debug, Args)]
struct ApplyArgs {
    #[command(flatten)]
    plan: PlanArgs,
    /// Resources applied at once (default: number of cores).
    #[arg(long)]
    parallelism: Option<usize>,
    /// How long to wait for another apply to finish, e.g. 30s, 1m30s (default: fail at once).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    lock_timeout: Duration,
    #[command(flatten)]
    memory: MemoryArgs,
}

/// How much memory the point-in-time join may hold.
#[derive(Debug, Args)]
struct MemoryArgs {
    /// Memory the point-in-time join (training sets, `features historical`) may
    /// hold of one feature view, e.g. 512MiB or 4GiB; a larger view is joined
    /// in key-ordered chunks of this size (same rows, more queries). A
    /// materialization reads in chunks of at most this size too.
    #[arg(long, env = "RECONCILE_MEMORY_BUDGET", default_value = "1GiB", value_parser = parse_budget)]
    memory_budget: crate::features::MemoryBudget,
}

fn parse_budget(s: &str) -> Result<crate::features::MemoryBudget, String> {
    s.parse()
}

#[derive(Debug, Args)]
struct DestroyArgs {
    #[command(flatten)]
    stores: StoreArgs,
    /// Machine-readable output (schemas/output/destroy.json).
    #[arg(long)]
    json: bool,
    /// Really remove (without it, only list what would go and exit).
    #[arg(long)]
    yes: bool,
    /// Also remove the project's named Docker volumes (their data is lost).
    #[arg(long)]
    purge: bool,
    /// How long to wait for another apply to finish, e.g. 30s, 1m30s.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    lock_timeout: Duration,
}

/// Every duration flag's parser: the one grammar of [`crate::duration`].
fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::duration::parse_flag(s)
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
    crate::colour::set_choice(cli.log.color);
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

/// Whether stdout may carry colours (see [`crate::colour`]).
fn colour_stdout() -> bool {
    crate::colour::enabled(crate::colour::Stream::Stdout)
}

/// Whether stderr may carry colours.
fn colour_stderr() -> bool {
    crate::colour::enabled(crate::colour::Stream::Stderr)
}

fn load(dir: &SpecDir, json: bool) -> Result<Workspace, ExitCode> {
    Workspace::load(&dir.path()).map_err(|e| report_error(&e, json))
}

fn report_error(e: &WorkspaceError, json: bool) -> ExitCode {
    match e {
        WorkspaceError::Specs(diags) => {
            if json {
                let v: Vec<output::Diagnostic> = diags.iter().map(Into::into).collect();
                output::print(&v);
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
        Command::Validate(args) => match load(&args.spec, args.json) {
            Ok(ws) => {
                if args.json {
                    output::print(&Vec::<output::Diagnostic>::new());
                } else {
                    println!(
                        "{} resource(s) in {} are valid.",
                        ws.set.resources.len(),
                        args.spec.path().display()
                    );
                }
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Plan(args) => plan(args).await,
        Command::Apply(args) => apply(args, quiet).await,
        Command::Status(args) => status(args).await,
        Command::Destroy(args) => destroy(args, quiet).await,
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
        Command::Compose(args) => compose::run(args).await,
        Command::Export(cmd) => export::run(cmd),
        Command::Observability(args) => observability::run(args),
        Command::Graph(args) => graph(args),
        Command::Init(args) => init::run(args),
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "reconcile", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man { out } => man(out),
    }
}

/// The workspace of a plan or apply: loaded, limited to `--target`.
fn load_targeted(args: &PlanArgs) -> Result<Workspace, ExitCode> {
    let ws = load(&args.stores.spec, args.json)?;
    let ws = ws
        .with_targets(&args.target)
        .map_err(|e| report_error(&e, false))?;
    Ok(if args.no_containers {
        ws.without_containers()
    } else {
        ws
    })
}

async fn plan(args: PlanArgs) -> ExitCode {
    let json = args.json;
    let ws = match load_targeted(&args) {
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
                output::print(&plan);
            } else {
                print!("{}", plan.render(colour_stdout()));
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
    let json = args.plan.json;
    // SIGINT and SIGTERM alike stop the apply safely: running work is rolled
    // back and nothing new starts (under Docker or CI a stop is a SIGTERM).
    let ws = match load_targeted(&args.plan) {
        Ok(ws) => ws
            .with_stop(crate::shutdown::on_signals())
            .with_memory_budget(args.memory.memory_budget),
        Err(c) => return c,
    };
    let parallelism = args
        .parallelism
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let progress = Progress::new(quiet || json);
    let quiet = quiet || json;
    let t0 = std::time::Instant::now();
    let result = async {
        for started in ws
            .start_store_services(&args.plan.stores.overrides())
            .await?
        {
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
                        eprint!("{}", plan.render(colour_stderr()));
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
            let code = if report.interrupted {
                ExitCode::from(130)
            } else if report.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            };
            if json {
                output::print(&output::ApplyOutput { plan, report });
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
            code
        }
        Err(e) => report_error(&e, json),
    }
}

async fn status(args: StatusArgs) -> ExitCode {
    let json = args.json;
    // Status reads the stores and starts nothing: it needs no secrets.
    let ws = match Workspace::load_without_secrets(&args.stores.spec.path()) {
        Ok(ws) => ws,
        Err(e) => return report_error(&e, json),
    };
    let result = async {
        let stores = ws.open_stores(&args.stores.overrides()).await?;
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
    let rows = crate::status::rows(&desired, &observed, &plan);
    let unhealthy = rows.iter().any(crate::status::StatusRow::is_unhealthy);
    if json {
        output::print(&rows);
    } else {
        if let Some(live) = live {
            println!("{live}");
        }
        println!(
            "{:<12} {:<22} {:<11} {:<24} REASON",
            "KIND", "NAME", "STATE", "LAST CHANGE"
        );
        for r in &rows {
            println!(
                "{:<12} {:<22} {:<11} {:<24} {}",
                r.kind,
                r.name,
                r.state,
                r.last_change.as_deref().unwrap_or("-"),
                if r.reason.is_empty() { "-" } else { &r.reason }
            );
        }
    }
    if unhealthy {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

async fn destroy(args: DestroyArgs, quiet: bool) -> ExitCode {
    let json = args.json;
    let ws = match load(&args.stores.spec, json) {
        Ok(ws) => ws.with_stop(crate::shutdown::on_signals()),
        Err(c) => return c,
    };
    if !args.yes {
        // A dry run, as terraform without approval: the plan of removal, then exit.
        let result = async {
            let stores = ws.open_stores(&args.stores.overrides()).await?;
            let plan = ws.destroy_plan(&stores, args.purge).await;
            stores.state.db.close().await;
            plan
        }
        .await;
        return match result {
            Ok(plan) => {
                let changes = plan.has_changes();
                if json {
                    output::print(&output::DestroyOutput {
                        plan,
                        applied: false,
                        report: None,
                    });
                } else {
                    print!("{}", plan.render(colour_stdout()));
                    if changes {
                        println!(
                            "Nothing was removed: run `reconcile destroy {} --yes` to remove the above.",
                            args.stores.spec.path().display()
                        );
                    } else {
                        println!("Nothing to remove.");
                    }
                }
                if changes {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                }
            }
            Err(e) => report_error(&e, json),
        };
    }
    let progress = Progress::new(json || quiet);
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
            let code = if report.interrupted {
                ExitCode::from(130)
            } else if report.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            };
            if json {
                output::print(&output::DestroyOutput {
                    plan,
                    applied: true,
                    report: Some(report),
                });
                return code;
            }
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
            code
        }
        Err(e) => report_error(&e, json),
    }
}

async fn historical(args: HistoricalArgs) -> ExitCode {
    let ws = match load(&args.spec, false) {
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
            .open_stores(&args.urls.overrides())
            .await
            .map_err(crate::features::FeatureError::Store)?;
        let batch = crate::features::historical_as_of_within(
            &stores.offline,
            &views,
            at,
            args.memory.memory_budget,
        )
        .await?;
        stores.state.db.close().await;
        Ok::<_, crate::features::FeatureError>(batch)
    }
    .await;
    let batch = match result {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {}", crate::logging::with_causes(&e));
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
    let dir = args.spec.path();
    let ws = match load(&args.spec, args.json) {
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
            dir.display()
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
        let mut found = std::collections::BTreeMap::new();
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
            let out = output::FeaturesGet {
                entity: args.entity.clone(),
                key: args.key.clone(),
                features: found,
                missing_views: missing,
            };
            if args.json {
                output::print(&out);
            } else {
                print_features(&out);
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {}", crate::logging::with_causes(&e));
            ExitCode::from(1)
        }
    }
}

/// `features get` for a person: one block per view, a feature per line.
fn print_features(f: &output::FeaturesGet) {
    println!("{} {}", f.entity, f.key);
    for (view, values) in &f.features {
        println!("\n{view}");
        match values.as_object() {
            Some(map) => {
                for (name, v) in map {
                    let shown = match v {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Null => "(null)".to_string(),
                        other => other.to_string(),
                    };
                    println!("  {name:<28} {shown}");
                }
            }
            None => println!("  {values}"),
        }
    }
    if !f.missing_views.is_empty() {
        println!(
            "\nno online row for this key in: {}",
            f.missing_views.join(", ")
        );
    }
}

fn graph(args: GraphArgs) -> ExitCode {
    let ws = match load(&args.spec, false) {
        Ok(ws) => ws,
        Err(c) => return c,
    };
    print!(
        "{}",
        match args.format {
            GraphFormat::Dot => ws.graph.to_dot(),
            GraphFormat::Mermaid => ws.graph.to_mermaid(),
        }
    );
    ExitCode::SUCCESS
}

fn man(out: Option<PathBuf>) -> ExitCode {
    let cmd = Cli::command();
    let written = match &out {
        Some(dir) => std::fs::create_dir_all(dir)
            .and_then(|()| clap_mangen::generate_to(cmd, dir))
            .map(|()| eprintln!("wrote man pages to {}", dir.display())),
        None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout()),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write the man pages: {e}");
            ExitCode::from(1)
        }
    }
}

fn schema(out: PathBuf) -> ExitCode {
    let outputs = out.join("output");
    if let Err(e) = std::fs::create_dir_all(&outputs) {
        eprintln!("error: cannot create {}: {e}", outputs.display());
        return ExitCode::from(1);
    }
    let all = crate::schema::schemas()
        .into_iter()
        .map(|(name, v)| (out.join(name), v))
        .chain(
            output::schemas()
                .into_iter()
                .map(|(name, v)| (outputs.join(name), v)),
        );
    for (path, v) in all {
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
    // Serving starts no container, so a Service's secret need not be set (an
    // endpoint container gets only its stores' variables); a store URL's own
    // unset variable still fails when that store is opened.
    let ws = match Workspace::load_without_secrets(&args.stores.spec.path()) {
        Ok(ws) => ws,
        Err(e) => return report_error(&e, false),
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
        ui: (!args.no_ui)
            .then(|| crate::ui::Ui::with_stores(args.stores.spec.path(), stores.clone())),
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
    fn durations_are_humantime() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("5x").is_err());
    }

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
