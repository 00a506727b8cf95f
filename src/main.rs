//! The `vigil` command line. A thin layer over the library: argument parsing (clap),
//! reading files, printing, exit statuses. `anyhow` is used only here.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use vigil::compile::{compile_with, source_files, CompileOptions, Compiled};
use vigil::diagnostic::{render_all, to_json, Code, Diagnostic};

// The compiler allocates many small trees; mimalloc makes `vigil check` of a large corpus
// about a third faster than the system allocator (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status: the sources have errors (or `fmt --check` found unformatted files).
const EXIT_ERRORS: u8 = 1;
/// Exit status: bad usage, or a file could not be read or written.
const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "vigil",
    version,
    about = "A declarative engine for automated incident pipelines",
    long_about = "vigil runs incident pipelines written in the vigil language: it collects telemetry, \
                  preprocesses it, trains anomaly models, predicts incidents and responds to them.\n\n\
                  Exit status, for every command: 0 success; 1 what was checked failed (check: errors in \
                  the sources, or warnings with --deny-warnings; test: a failing test; fmt --check: files \
                  to reformat; run: the pipelines do not compile or cannot start); 2 bad usage, I/O, \
                  the engine's API refusing a call, or state errors (a locked state directory, nothing \
                  to roll back). Commands that print results take --format text|json.",
    after_help = "Examples:\n  vigil check pipelines/\n  vigil fmt --check pipelines/ stdlib/\n  vigil graph pipelines/demo.vigil --format mermaid\n  vigil explain E0202"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines (stderr) are written: `text` for people, `json` (one object per line)
    /// for log shippers. `RUST_LOG` sets the level (default info).
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log only warnings and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Log more: `-v` debug, `-vv` trace (RUST_LOG, when set, wins).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

/// The log level `--quiet`/`--verbose` ask for.
static LOG_LEVEL: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// `--format text|json` of the commands that print results (`--json` is kept as its
/// old spelling).
#[derive(clap::Args, Clone, Copy, Debug)]
struct OutputFormat {
    /// How results are printed: `text` for people, `json` for programs.
    #[arg(long, value_enum, default_value = "text")]
    format: TextOrJson,
    /// The same as `--format json`.
    #[arg(long, hide = true)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum TextOrJson {
    Text,
    Json,
}

impl OutputFormat {
    fn json(self) -> bool {
        self.json || self.format == TextOrJson::Json
    }
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

/// The `--log-format` given, for [`init_tracing`].
static LOG_FORMAT: std::sync::OnceLock<LogFormat> = std::sync::OnceLock::new();

#[derive(Clone, Copy, ValueEnum)]
enum DiagFormat {
    /// Human-readable, with source lines and carets.
    Text,
    /// A JSON array of diagnostics on standard output.
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum TemplatesFormat {
    /// A table: count, id, template; then a summary line.
    Text,
    /// One JSON object: the counts and `templates: [{id, count, template, evicted}]`.
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    /// Graphviz DOT (`vigil graph f.vigil | dot -Tsvg > f.svg`).
    Dot,
    /// A Mermaid flowchart (renders in GitHub Markdown).
    Mermaid,
}

#[derive(Subcommand)]
enum SituationsAction {
    /// List situations (groups of correlated incidents), newest change first.
    List {
        /// Only `open` or `closed` ones.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        format: OutputFormat,
    },
    /// Show one situation: its members and why each joined, its origin, its timeline.
    Show {
        id: String,
        #[command(flatten)]
        format: OutputFormat,
    },
}

#[derive(Subcommand)]
enum IncidentsAction {
    /// List incidents, newest first.
    List {
        /// Only `firing` or `resolved` ones.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        format: OutputFormat,
    },
    /// Show one incident with its audit trail and notifications (JSON).
    Show { id: String },
    /// Acknowledge an incident: repeats stop; PagerDuty is told.
    Ack {
        id: String,
        /// Who acknowledges.
        #[arg(long, default_value = "cli")]
        by: String,
    },
    /// Resolve an incident by hand.
    Resolve {
        id: String,
        #[arg(long, default_value = "cli")]
        by: String,
    },
    /// Give on-call's verdict on an incident. Train stages learn from it: a false
    /// positive's window is learned as normal, a true positive's is never learned as
    /// normal. The last verdict wins; every one is audited.
    Feedback {
        id: String,
        /// `true_positive`, `false_positive` or `duplicate`.
        #[arg(long, value_parser = ["true_positive", "false_positive", "duplicate"])]
        verdict: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Report a window of a series that held an anomaly no incident reported (`missed`):
    /// it counts against recall and is never learned as normal.
    Missed {
        /// The pipeline.
        #[arg(long)]
        pipeline: String,
        /// The series, as incidents and `vigil models list` print it (`cpu{host="a"}`).
        #[arg(long)]
        series: String,
        /// Start of the window (RFC 3339).
        #[arg(long)]
        from: String,
        /// End of the window (RFC 3339).
        #[arg(long)]
        to: String,
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Subcommand)]
enum SilencesAction {
    /// List silences.
    List {
        #[command(flatten)]
        format: OutputFormat,
    },
    /// Add a silence: `vigil silences add --match service=checkout --for 2h --comment deploy`.
    Add {
        /// A matcher (repeatable, all must match): `label=value`, `label!=value`,
        /// `label=~regex` or `label!~regex` (regexes match the whole value); `series`,
        /// `pipeline`, `stage` and `key` match the incident's own. A silence also holds back
        /// the later notifications of incidents already firing.
        #[arg(long = "match", value_name = "MATCHER", required = true)]
        matchers: Vec<String>,
        /// How long it lasts (`30m`, `2h`, `1d`).
        #[arg(long = "for", value_name = "DURATION")]
        duration: String,
        /// When it starts (RFC 3339); now by default.
        #[arg(long)]
        starts: Option<String>,
        #[arg(long, default_value = "")]
        comment: String,
        #[arg(long, default_value = "cli")]
        by: String,
    },
    /// End a silence now.
    Expire { id: i64 },
}

#[derive(Subcommand)]
enum ClusterAction {
    /// The cluster's live nodes (source version, vigil version, draining, the pipelines
    /// each runs) and who holds each lease (read from NATS; changes nothing).
    Status {
        /// The cluster's NATS server, as the nodes' --cluster.
        #[arg(long, value_name = "URL", env = "VIGIL_CLUSTER", hide_env_values = true)]
        cluster: String,
        /// The cluster's bucket prefix, as the nodes' --cluster-prefix.
        #[arg(long, value_name = "PREFIX", env = "VIGIL_CLUSTER_PREFIX", default_value = "vigil")]
        cluster_prefix: String,
        #[command(flatten)]
        format: OutputFormat,
    },
    /// Drain a node: it takes no pipeline and hands over the ones it runs, one by one,
    /// to the other nodes. Waits until another node holds each, printing who took what.
    /// The node stays up, idle, until `vigil cluster undrain NODE` or its restart.
    /// Exit status 2: no such cluster or node; 1: not handed over within --timeout.
    Drain {
        /// The node's name (its --node), as `vigil cluster status` lists it.
        node: String,
        /// The cluster's NATS server, as the nodes' --cluster.
        #[arg(long, value_name = "URL", env = "VIGIL_CLUSTER", hide_env_values = true)]
        cluster: String,
        /// The cluster's bucket prefix, as the nodes' --cluster-prefix.
        #[arg(long, value_name = "PREFIX", env = "VIGIL_CLUSTER_PREFIX", default_value = "vigil")]
        cluster_prefix: String,
        /// How long to wait for the handover (the node keeps draining after it).
        #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_duration)]
        timeout: std::time::Duration,
    },
    /// Undo `vigil cluster drain NODE`: the node takes pipelines again (its fair share,
    /// within a few lease renewals).
    Undrain {
        /// The node's name (its --node).
        node: String,
        /// The cluster's NATS server, as the nodes' --cluster.
        #[arg(long, value_name = "URL", env = "VIGIL_CLUSTER", hide_env_values = true)]
        cluster: String,
        /// The cluster's bucket prefix, as the nodes' --cluster-prefix.
        #[arg(long, value_name = "PREFIX", env = "VIGIL_CLUSTER_PREFIX", default_value = "vigil")]
        cluster_prefix: String,
    },
}

#[derive(Subcommand)]
enum ModelsAction {
    /// List model versions (all stages, or one stage's).
    List {
        /// Only this train stage (`pipeline.stage`).
        #[arg(long)]
        stage: Option<String>,
        #[command(flatten)]
        format: OutputFormat,
    },
    /// Show one version's metadata.
    Show {
        /// The version's id (from `vigil models list`).
        id: i64,
    },
    /// Make a version the active one of its stage and series.
    Promote { id: i64 },
    /// Compare a challenger with the active version over its shadow period: alarms,
    /// agreement, precision and recall against on-call's verdicts and labelled windows.
    Compare {
        /// The active version's id.
        active: i64,
        /// The candidate's id.
        candidate: i64,
        /// Labelled anomaly windows in NAB's format (`{"<series>": [["start", "end"]]}`).
        #[arg(long)]
        windows: Option<PathBuf>,
        #[command(flatten)]
        format: OutputFormat,
    },
    /// Make the version before the active one active again (per series of the stage).
    Rollback {
        /// The train stage (`pipeline.stage`).
        stage: String,
        /// Only this series (as `vigil models list` prints it).
        #[arg(long)]
        series: Option<String>,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Compile pipelines and report diagnostics, without running anything.
    ///
    /// Parses, checks and plans every file (directories are searched for *.vigil files)
    /// with the stdlib. Prints errors and warnings with file:line:col; exits 1 when there
    /// are errors.
    Check {
        /// Files or directories to check [default: pipelines]
        paths: Vec<PathBuf>,
        /// Output format of diagnostics.
        #[arg(long, value_enum, default_value_t = DiagFormat::Text)]
        format: DiagFormat,
        /// Treat warnings as errors (exit 1 when there are any).
        #[arg(long)]
        deny_warnings: bool,
        /// Read the stdlib from this directory instead of the embedded copy.
        #[arg(long, value_name = "DIR")]
        stdlib: Option<PathBuf>,
        /// Print how long each compiler phase took.
        #[arg(long)]
        timings: bool,
    },
    /// Format files canonically, in place.
    ///
    /// Two-space indentation, one statement per line, long calls broken one argument per
    /// line; comments and single blank lines are kept. `-` formats standard input to
    /// standard output.
    Fmt {
        /// Files or directories to format (`-` for standard input).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Change nothing; list files that are not formatted and exit 1 if there are any.
        #[arg(long)]
        check: bool,
    },
    /// Print the stage graph of a file's pipelines.
    Graph {
        /// The pipeline file.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
        /// Only this pipeline.
        #[arg(long)]
        pipeline: Option<String>,
    },
    /// Run pipelines: the engine, with its HTTP API and /metrics.
    ///
    /// Compiles the files (directories are searched for *.vigil), builds every stage and
    /// ticks each pipeline on its triggers until SIGINT or SIGTERM, which stop it cleanly
    /// (a running tick finishes). State (cursors, run history, outbox) lives in --state.
    /// `*.test.vigil` files found in directories are left out: a broken test does not stop
    /// the pipelines (`vigil check` and `vigil test` report it).
    /// Log verbosity: RUST_LOG (default `info`).
    Run(Box<RunArgs>),
    /// Replay a CSV of `timestamp,value` rows through a pipeline, causally, and write
    /// `timestamp,value,anomaly_score` (one row per input row, in order).
    ///
    /// The CSV replaces the pipeline's collect stage; the scores are those of its last
    /// predict stage; respond stages do not run. Rows that cannot be used get score 0 and
    /// are counted in the summary.
    Replay {
        /// The pipeline file.
        file: PathBuf,
        /// The CSV to feed (`timestamp,value`, the NAB format).
        #[arg(long, value_name = "DATA.csv")]
        input: PathBuf,
        /// Where to write the scores.
        #[arg(long, value_name = "SCORES.csv")]
        output: PathBuf,
        /// The pipeline to replay, when the file has several.
        #[arg(long)]
        pipeline: Option<String>,
    },
    /// Score a pipeline on labelled data, the way the Numenta Anomaly Benchmark does.
    ///
    /// Replays every CSV under --data (each from scratch, in parallel) through the
    /// pipeline and scores the results against the labelled windows: NAB's scaled-sigmoid
    /// reward, a probationary period of 15% of each file (at most 750 rows), one threshold
    /// per profile optimised over the whole corpus, normalised so that no detections score
    /// 0 and perfect detection 100. Prints a per-file table (standard profile) and the
    /// standard, low-FP and low-FN totals.
    #[command(
        after_help = "Example:\n  vigil eval pipelines/nab.vigil --data ../shared/data/nab-dev \\\n      --windows ../shared/data/nab-dev/windows.json --out results --plot"
    )]
    Eval {
        /// The pipeline file.
        file: PathBuf,
        /// The directory of `timestamp,value` CSV files (searched recursively).
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// The labelled windows: `{"category/file.csv": [["start", "end"], ...]}`.
        #[arg(long, value_name = "LABELS.json")]
        windows: PathBuf,
        /// Write each file's `timestamp,value,anomaly_score` CSV in NAB's layout
        /// (OUT/<pipeline>/<category>/<pipeline>_<file>.csv) and a JSON summary.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Also draw each series with its windows and detections (OUT/plots/*.svg).
        #[arg(long)]
        plot: bool,
        /// The pipeline to evaluate, when the file has several.
        #[arg(long)]
        pipeline: Option<String>,
        #[command(flatten)]
        format: OutputFormat,
    },
    /// Run the pipeline tests (`test name for pipeline { given ... expect ... }`).
    ///
    /// Compiles the files (directories are searched for *.vigil, so a folder's
    /// `*.test.vigil` files are compiled with its pipelines), runs every test in parallel —
    /// each pipeline once over its fixtures, respond stages mocked so nothing is sent —
    /// and prints pass or fail per test, with the position of each failing expectation
    /// and the values it found. Exit 0 when all pass, 1 on a failure or compile error.
    #[command(after_help = "Example:\n  vigil test pipelines/\n  vigil test pipelines/ --format junit > vigil-tests.xml")]
    Test {
        /// Files or directories [default: pipelines]
        paths: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = TestFormat::Text)]
        format: TestFormat,
        /// Only tests whose name contains this.
        #[arg(long)]
        filter: Option<String>,
        /// Read the stdlib from this directory instead of the embedded copy.
        #[arg(long, value_name = "DIR")]
        stdlib: Option<PathBuf>,
    },
    /// List, acknowledge and resolve incidents of a running engine (through its API).
    ///
    /// Mutating actions need the engine's token in VIGIL_API_TOKEN.
    Incidents {
        #[command(subcommand)]
        action: IncidentsAction,
        /// The engine's address: a URL (`https://vigil.internal:8443`) or `host:port` as
        /// `--addr-file` writes it.
        #[arg(long, env = "VIGIL_API", default_value = "http://127.0.0.1:8080", global = true)]
        api: String,
    },
    /// List and show the situations of a running engine's `correlate` stages (through
    /// its API): incidents grouped by time, labels, topology and text, with their origin.
    Situations {
        #[command(subcommand)]
        action: SituationsAction,
        /// The engine's address: a URL or `host:port` as `--addr-file` writes it.
        #[arg(long, env = "VIGIL_API", default_value = "http://127.0.0.1:8080", global = true)]
        api: String,
    },
    /// List, add and expire silences of a running engine (through its API).
    ///
    /// While a silence is active, incidents whose labels match all its matchers open
    /// without notifications. Schedule one ahead (--starts) for a maintenance window.
    Silences {
        #[command(subcommand)]
        action: SilencesAction,
        /// The engine's address: a URL (`https://vigil.internal:8443`) or `host:port` as
        /// `--addr-file` writes it.
        #[arg(long, env = "VIGIL_API", default_value = "http://127.0.0.1:8080", global = true)]
        api: String,
    },
    /// How well detection and remediation work (through a running engine's API): per
    /// respond stage alarms per day, precision from on-call's verdicts, MTTA, MTTR and
    /// notifications per incident; recall per pipeline (with `missed` windows); per
    /// channel sends and failures, and for `exec` the success rate and how often the
    /// incident resolved within `--within` after the command ran.
    Report {
        /// The period, back from now.
        #[arg(long, default_value = "7d")]
        since: String,
        /// How soon after a remediation command its incident must resolve to count.
        #[arg(long, default_value = "15m")]
        within: String,
        #[command(flatten)]
        format: OutputFormat,
        /// The engine's address: a URL or `host:port` as `--addr-file` writes it.
        #[arg(long, env = "VIGIL_API", default_value = "http://127.0.0.1:8080")]
        api: String,
    },
    /// Look at and operate a cluster of `vigil run --cluster` nodes: status (nodes,
    /// versions, leases), drain and undrain a node.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// Inspect and manage trained models: the registry under STATE/models.
    Models {
        #[command(subcommand)]
        action: ModelsAction,
        /// The state directory.
        #[arg(long, default_value = ".vigil", global = true)]
        state: PathBuf,
        /// The state database, as `vigil run --store` names it (`postgres://…`,
        /// `sqlite://PATH`); default `STATE/state.db`.
        #[arg(long, value_name = "URL", env = "VIGIL_STORE", hide_env_values = true, global = true)]
        store: Option<String>,
    },
    /// Explain a diagnostic code (`E0202`), an operator (`zscore`), or list them all
    /// (`codes`, `operators`).
    Explain {
        /// A code, an operator name, `codes` or `operators`.
        topic: String,
    },
    /// Mine log templates from a file, offline: which kinds of lines it holds, how many each.
    ///
    /// Splits each line's header from its message with --header, masks variables (numbers,
    /// ids, IPs, hosts, paths, URLs, dates, ...) and groups messages into templates such as
    /// `Received block blk_<*> of size <*> from <*>` (see docs/logs.md). Prints the templates,
    /// most frequent first; with --output, writes `line,template_id,template` for every line
    /// in order instead. Lines the header does not match are mined whole, invalid UTF-8 is
    /// decoded lossily; both are counted in the summary. Template ids are creation numbers;
    /// a template merged into another takes the other's id.
    #[command(after_help = "Examples:\n  vigil templates hdfs.log --header '<Date> <Time> <Pid> <Level> <Component>: <Content>'\n  \
                      vigil templates auth.log --header '<Month> <Date> <Time> <Host> <Component>([<PID>])?: <Content>' \\\n      \
                      --output lines.csv\n  vigil templates app.log --header '<Time>|<Level>|<Content>' --mask 'req-[0-9a-f]+' --format json")]
    Templates {
        /// The log file (`-` for standard input).
        file: PathBuf,
        /// The header layout: `<Field>` placeholders and literal text, the message named
        /// `<Content>`; runs of spaces match any whitespace; `(...)?` is optional.
        #[arg(long, value_name = "FORMAT")]
        header: String,
        /// A regex whose matches are variables, on top of the built-in masks (repeatable).
        #[arg(long, value_name = "REGEX")]
        mask: Vec<String>,
        /// Write `line,template_id,template` for every line to this CSV file.
        #[arg(long, value_name = "CSV")]
        output: Option<PathBuf>,
        /// How to print the templates (without --output).
        #[arg(long, value_enum, default_value_t = TemplatesFormat::Text)]
        format: TemplatesFormat,
        /// The most templates kept at once; beyond it the least recently seen eighth is
        /// evicted (and counted).
        #[arg(long, value_name = "N", default_value_t = 100_000)]
        max_templates: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = LOG_FORMAT.set(cli.log_format);
    let _ = LOG_LEVEL.set(match (cli.quiet, cli.verbose) {
        (true, _) => "warn",
        (_, 0) => "info",
        (_, 1) => "debug",
        _ => "trace",
    });
    if !matches!(cli.command, Command::Run { .. }) {
        // A command whose output goes to a pipe closed early (`vigil eval --json | head`)
        // ends quietly, as other Unix tools do. Not the engine: its sockets need EPIPE as an
        // error, not a signal.
        // SAFETY: setting a signal's disposition to the default before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let result = match cli.command {
        Command::Check { paths, format, deny_warnings, stdlib, timings } => cmd_check(paths, format, deny_warnings, stdlib, timings),
        Command::Fmt { paths, check } => cmd_fmt(paths, check),
        Command::Graph { file, format, pipeline } => cmd_graph(file, format, pipeline),
        Command::Explain { topic } => cmd_explain(&topic),
        Command::Templates { file, header, mask, output, format, max_templates } => {
            cmd_templates(&file, &header, &mask, output, format, max_templates)
        }
        Command::Run(args) => cmd_run(*args),
        Command::Replay { file, input, output, pipeline } => cmd_replay(file, input, output, pipeline),
        Command::Test { paths, format, filter, stdlib } => cmd_test(paths, format, filter, stdlib),
        Command::Eval { file, data, windows, out, plot, pipeline, format } => {
            cmd_eval(file, data, windows, out, plot, pipeline, format.json())
        }
        Command::Models { action, state, store } => cmd_models(action, state, store),
        Command::Cluster { action } => cmd_cluster(action),
        Command::Incidents { action, api } => cmd_incidents(action, &api),
        Command::Report { since, within, format, api } => cmd_report(&since, &within, format.json(), &api),
        Command::Situations { action, api } => cmd_situations(action, &api),
        Command::Silences { action, api } => cmd_silences(action, &api),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn print_diagnostics(out: &Compiled, diags: &[Diagnostic]) {
    if !diags.is_empty() {
        eprint!("{}", render_all(diags, &out.sources, color()));
    }
}

fn cmd_check(
    paths: Vec<PathBuf>,
    format: DiagFormat,
    deny_warnings: bool,
    stdlib: Option<PathBuf>,
    timings: bool,
) -> anyhow::Result<ExitCode> {
    let paths = if paths.is_empty() { vec![PathBuf::from("pipelines")] } else { paths };
    let started = std::time::Instant::now();
    let out = compile_with(&paths, &CompileOptions { stdlib_dir: stdlib, ..CompileOptions::default() })?;
    let elapsed = started.elapsed();
    if timings {
        for (phase, t) in &out.timings {
            eprintln!("{phase:>12}: {:>9.1} ms", t.as_secs_f64() * 1e3);
        }
    }
    let diags = &out.diagnostics.0;
    let failed = out.diagnostics.has_errors() || (deny_warnings && !diags.is_empty());
    match format {
        DiagFormat::Json => {
            let json = serde_json::to_string_pretty(&to_json(diags, &out.sources))?;
            println!("{json}");
        }
        DiagFormat::Text => {
            print_diagnostics(&out, diags);
            if let Some(plan) = &out.plan {
                let stages: usize = plan.pipelines.iter().map(|p| p.stages.len()).sum();
                eprintln!(
                    "checked {} {}: {} {}, {} {} in {:.1} ms",
                    out.user_files,
                    if out.user_files == 1 { "file" } else { "files" },
                    plan.pipelines.len(),
                    if plan.pipelines.len() == 1 { "pipeline" } else { "pipelines" },
                    stages,
                    if stages == 1 { "stage" } else { "stages" },
                    elapsed.as_secs_f64() * 1e3
                );
            }
        }
    }
    // The process is about to exit: freeing a large program's trees one by one would
    // only add time (a 10 MB corpus spends a fifth of its time in `drop`).
    std::mem::forget(out);
    Ok(ExitCode::from(if failed { EXIT_ERRORS } else { 0 }))
}

fn cmd_fmt(paths: Vec<PathBuf>, check: bool) -> anyhow::Result<ExitCode> {
    if paths.len() == 1 && paths[0].as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        return match vigil::format_source("<stdin>", &text) {
            Ok(formatted) => {
                if check {
                    return Ok(ExitCode::from(if formatted == text { 0 } else { EXIT_ERRORS }));
                }
                std::io::stdout().write_all(formatted.as_bytes())?;
                Ok(ExitCode::SUCCESS)
            }
            Err((sources, diags)) => {
                eprint!("{}", render_all(&diags, &sources, color()));
                Ok(ExitCode::from(EXIT_ERRORS))
            }
        };
    }
    let files = source_files(&paths)?;
    let mut failed = false;
    let mut unformatted = 0;
    for f in files {
        let bytes = std::fs::read(&f).map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", f.display()))?;
        let name = f.display().to_string();
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let mut sources = vigil::source::SourceMap::new();
                let id = sources.add(name, Some(&f), vigil::source::Origin::User, String::from_utf8_lossy(e.as_bytes()).into_owned());
                eprint!("{}", render_all(&[vigil::syntax::invalid_utf8(id, e.utf8_error().valid_up_to())], &sources, color()));
                failed = true;
                continue;
            }
        };
        match vigil::format_source(&name, &text) {
            Ok(formatted) if formatted == text => {}
            Ok(formatted) => {
                unformatted += 1;
                if check {
                    println!("{}", f.display());
                } else {
                    std::fs::write(&f, formatted).map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", f.display()))?;
                    eprintln!("formatted {}", f.display());
                }
            }
            Err((sources, diags)) => {
                eprint!("{}", render_all(&diags, &sources, color()));
                failed = true;
            }
        }
    }
    if check && unformatted > 0 {
        eprintln!(
            "{unformatted} {} not formatted; run `vigil fmt` on {}",
            if unformatted == 1 { "file is" } else { "files are" },
            if unformatted == 1 { "it" } else { "them" }
        );
        failed = true;
    }
    Ok(ExitCode::from(if failed { EXIT_ERRORS } else { 0 }))
}

fn cmd_graph(file: PathBuf, format: GraphFormat, pipeline: Option<String>) -> anyhow::Result<ExitCode> {
    let out = compile_with(std::slice::from_ref(&file), &CompileOptions::default())?;
    print_diagnostics(&out, &out.diagnostics.0);
    let Some(plan) = &out.plan else { return Ok(ExitCode::from(EXIT_ERRORS)) };
    let pipelines: Vec<_> = match &pipeline {
        Some(name) => {
            let found: Vec<_> = plan.pipelines.iter().filter(|p| &p.name == name).cloned().collect();
            if found.is_empty() {
                let names: Vec<&str> = plan.pipelines.iter().map(|p| p.name.as_str()).collect();
                anyhow::bail!("no pipeline `{name}` in `{}`; it has: {}", file.display(), names.join(", "));
            }
            found
        }
        None => plan.pipelines.clone(),
    };
    let text = match format {
        GraphFormat::Dot => vigil::plan::to_dot(&pipelines),
        GraphFormat::Mermaid => vigil::plan::to_mermaid(&pipelines),
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // The NATS client logs every connection event at INFO, and PostgreSQL's notices
        // ("relation … already exists, skipping" as migrations are checked) come at INFO
        // too; vigil logs what matters (joining, leases, errors) itself. RUST_LOG shows them.
        let level = LOG_LEVEL.get().copied().unwrap_or("info");
        tracing_subscriber::EnvFilter::new(format!("{level},async_nats=warn,sqlx::postgres::notice=warn"))
    });
    if LOG_FORMAT.get() == Some(&LogFormat::Json) {
        let _ = tracing_subscriber::fmt().json().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    } else {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(color()).try_init();
    }
}

/// `vigil run`'s options.
#[derive(clap::Args)]
struct RunArgs {
    /// Files or directories to run [default: pipelines]
    pub paths: Vec<PathBuf>,
    /// The state directory (created if missing): the lock, trained models' files and,
    /// without --store, the state database (`DIR/state.db`).
    #[arg(long, value_name = "DIR", default_value = ".vigil")]
    pub state: PathBuf,
    /// Where incidents, the outbox, cursors, runs, models' records, silences and verdicts
    /// are kept: `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=…]` (PostgreSQL;
    /// its schema is created or migrated at start, a newer one is refused) or
    /// `sqlite://PATH` (a SQLite file). Default: `STATE/state.db`. A password is better
    /// given in VIGIL_STORE than on the command line; errors and logs never print it.
    #[arg(long, value_name = "URL", env = "VIGIL_STORE", hide_env_values = true)]
    pub store: Option<String>,
    /// Run as one node of a cluster coordinated by NATS JetStream at this URL
    /// (`nats://HOST:PORT`; needs a PostgreSQL --store shared by the nodes): each
    /// pipeline runs on the one node holding its lease, and the nodes share them out.
    #[arg(long, value_name = "URL", env = "VIGIL_CLUSTER", hide_env_values = true)]
    pub cluster: Option<String>,
    /// This node's name in the cluster (letters, digits, `-`, `_`). Default: the host
    /// name and the process id.
    #[arg(long, value_name = "NAME", env = "VIGIL_NODE", requires = "cluster")]
    pub node: Option<String>,
    /// Names the cluster's JetStream buckets (`PREFIX-leases`, `PREFIX-nodes`): clusters
    /// sharing one NATS server need different prefixes.
    #[arg(long, value_name = "PREFIX", env = "VIGIL_CLUSTER_PREFIX", default_value = "vigil", requires = "cluster")]
    pub cluster_prefix: String,
    /// How long a pipeline's lease lasts unrenewed (renewed every third of it): a dead
    /// node's pipelines are taken over within about TTL + TTL/3.
    #[arg(long, value_name = "DURATION", env = "VIGIL_LEASE_TTL", default_value = "6s", value_parser = parse_duration, requires = "cluster")]
    pub lease_ttl: std::time::Duration,
    /// How long the live nodes may announce different source versions (nodes run their
    /// own checkouts) before this node logs a warning naming them; a line follows when
    /// they agree again. A rolling update normally ends well within the default.
    #[arg(long, value_name = "DURATION", env = "VIGIL_SKEW_WARN", default_value = "60s", value_parser = parse_duration, requires = "cluster")]
    pub skew_warn: std::time::Duration,
    /// How many training jobs of the cluster's work queue this node runs at once (0: it
    /// never trains; its train stages' jobs go to other nodes). Under --cluster every
    /// train stage submits its trainings to the queue and any node with a free slot
    /// trains them; the models go to the JetStream object store `PREFIX-models`.
    #[arg(long, value_name = "N", env = "VIGIL_TRAIN_SLOTS", default_value_t = 1, requires = "cluster")]
    pub train_slots: usize,
    /// The address of the HTTP API and /metrics. Loopback by default; another address
    /// exposes the API beyond this machine.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Once listening, write the API's address (`127.0.0.1:8080`) to this file. With
    /// `--listen 127.0.0.1:0` the system picks a free port; the file tells which.
    #[arg(long, value_name = "FILE")]
    pub addr_file: Option<PathBuf>,
    /// Read the stdlib from this directory instead of the embedded copy (and watch it).
    #[arg(long, value_name = "DIR")]
    pub stdlib: Option<PathBuf>,
    /// How long the files must be quiet after a change before reloading, e.g. `100ms`.
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = parse_duration)]
    pub debounce: std::time::Duration,
    /// Poll the files for changes instead of using file system notifications (for file
    /// systems without them, such as some network mounts).
    #[arg(long)]
    pub poll: bool,
    /// Do not watch the files; reload only on SIGHUP or POST /api/v1/reload.
    #[arg(long)]
    pub no_watch: bool,
    /// Print the notifications that would be sent instead of sending them (incidents
    /// are still opened and resolved, and recorded in the state directory).
    #[arg(long)]
    pub dry_run: bool,
    /// API tokens, one `NAME ROLE TOKEN` per line (ROLE: read or operator), added to
    /// VIGIL_API_TOKEN (operator) and VIGIL_READ_TOKEN (read). The audit trail names the
    /// token that made each change.
    #[arg(long, value_name = "FILE")]
    pub api_tokens: Option<PathBuf>,
    /// Require a token to read the API and /metrics (on by default beyond loopback).
    #[arg(long)]
    pub read_auth: bool,
    /// Listen beyond loopback without any API token (refused otherwise).
    #[arg(long)]
    pub insecure_listen: bool,
    /// Accept requests for this Host name (repeatable). Default on a loopback listener:
    /// localhost, 127.0.0.1 and [::1], against DNS rebinding; beyond loopback: any.
    #[arg(long, value_name = "NAME")]
    pub allowed_host: Vec<String>,
    /// Serve the API over TLS with this PEM certificate chain (needs --tls-key);
    /// reloaded when the file changes.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The most HTTP connections open at once (also capped at a third of the open-file
    /// limit); at the cap the oldest idle connection is closed for a new one.
    #[arg(long, value_name = "N", default_value_t = 512)]
    pub max_connections: usize,
    /// How long a client has to send a request's headers; an idle keep-alive
    /// connection is closed after as long.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub http_header_timeout: std::time::Duration,
}

/// Locks `STATE/lock` for this process (released when it exits, even by `kill -9`),
/// writing its pid there.
///
/// # Errors
/// Another process holds the lock (its pid is named), or the directory cannot be made.
fn lock_state(state: &std::path::Path) -> anyhow::Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(state).map_err(|e| anyhow::anyhow!("cannot create the state directory {}: {e}", state.display()))?;
    let path = state.join("lock");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    // SAFETY: flock(2) on a descriptor this function owns.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let mut pid = String::new();
        let _ = f.read_to_string(&mut pid);
        anyhow::bail!(
            "another vigil (pid {}) is running with the state directory {}: stop it, or give this one another --state",
            pid.trim(),
            state.display()
        );
    }
    f.set_len(0)?;
    f.rewind()?;
    write!(f, "{}", std::process::id())?;
    Ok(f)
}

/// The API's access rules from the flags and the environment.
fn access_rules(args: &RunArgs) -> anyhow::Result<vigil::access::Access> {
    use vigil::access::{Access, Role};
    let mut access = Access::default();
    let env = |k: &str| std::env::var(k).ok().filter(|t| !t.is_empty());
    if let Some(t) = env("VIGIL_API_TOKEN") {
        access.add("operator", Role::Operator, &t).map_err(anyhow::Error::msg)?;
    }
    if let Some(t) = env("VIGIL_READ_TOKEN") {
        access.add("reader", Role::Read, &t).map_err(anyhow::Error::msg)?;
    }
    if let Some(f) = &args.api_tokens {
        access.add_file(f).map_err(anyhow::Error::msg)?;
    }
    let loopback = args.listen.ip().is_loopback();
    if !loopback && access.tokens.is_empty() && !args.insecure_listen {
        anyhow::bail!(
            "refusing to listen on {} (beyond loopback) without an API token: set VIGIL_API_TOKEN or --api-tokens, or pass --insecure-listen",
            args.listen
        );
    }
    if !loopback && access.tokens.is_empty() {
        tracing::warn!(listen = %args.listen, "listening beyond loopback without any API token (--insecure-listen): anyone who reaches it can read the API");
    }
    access.read_auth = args.read_auth || (!loopback && !access.tokens.is_empty());
    access.allowed_hosts = if !args.allowed_host.is_empty() {
        Some(args.allowed_host.iter().map(|h| h.to_ascii_lowercase()).collect())
    } else if loopback {
        Some(Access::loopback_hosts())
    } else {
        None
    };
    Ok(access)
}

/// A duration as the language writes it (`100ms`, `2s`, `1h30m`), or a number of
/// milliseconds.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    vigil::time::parse_duration(s)
        .and_then(|ms| u64::try_from(ms).ok())
        .map(std::time::Duration::from_millis)
        .ok_or_else(|| format!("`{s}` is not a duration such as `100ms`, `2s` or `1h30m` (units: ms, s, m, h, d, w)"))
}

fn cmd_run(args: RunArgs) -> anyhow::Result<ExitCode> {
    use vigil::engine::reload::{self, ReloadRequest};
    init_tracing();
    let paths = if args.paths.is_empty() { vec![PathBuf::from("pipelines")] } else { args.paths.clone() };
    // Tests are not part of what runs: a broken one is reported by `vigil check`/`test`.
    let options = CompileOptions { stdlib_dir: args.stdlib.clone(), skip_test_files: true };
    let out = compile_with(&paths, &options)?;
    print_diagnostics(&out, &out.diagnostics.0);
    let Some(plan) = &out.plan else { return Ok(ExitCode::from(EXIT_ERRORS)) };
    if plan.pipelines.is_empty() {
        anyhow::bail!("no pipeline to run in {}", paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "));
    }
    let access = access_rules(&args)?;
    let tls = match args.tls_cert.clone().zip(args.tls_key.clone()) {
        Some((cert, key)) => {
            Some(std::sync::Arc::new(vigil::server::listen::Tls::load(cert.clone(), key.clone()).map_err(anyhow::Error::msg)?))
        }
        None => None,
    };
    let fd_limit = vigil::server::listen::raise_fd_limit();
    let serve_options = vigil::server::listen::ServeOptions {
        max_connections: vigil::server::listen::effective_cap(args.max_connections, fd_limit),
        header_timeout: args.http_header_timeout,
        ..Default::default()
    };
    let state = args.state.clone();
    let store_url = vigil::store::StoreUrl::parse(args.store.as_deref(), &state).map_err(anyhow::Error::msg)?;
    let cluster_opts = match &args.cluster {
        Some(url) => {
            if !matches!(store_url, vigil::store::StoreUrl::Postgres(_)) {
                anyhow::bail!(
                    "`--cluster` needs a PostgreSQL store that the nodes share: add `--store postgres://USER@HOST:PORT/DATABASE` (or set VIGIL_STORE)"
                );
            }
            let node = args.node.clone().unwrap_or_else(default_node_name);
            let opts = vigil::cluster::Options {
                url: url.clone(),
                node,
                prefix: args.cluster_prefix.clone(),
                ttl: args.lease_ttl,
                skew_warn: args.skew_warn,
            };
            opts.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
            Some(opts)
        }
        None => None,
    };
    // One engine per state directory: a second one would send every notification twice.
    let _lock = lock_state(&state)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        // The store opens before anything starts: a wrong URL, an unreachable server or a
        // newer schema stop here with one line. PostgreSQL: one engine per database too,
        // unless the nodes are a cluster (then NATS must answer, with JetStream, too).
        let (store, cluster, _db_lock) = match &cluster_opts {
            Some(opts) => {
                let (store, cluster, lock) = open_cluster(&store_url, opts).await?;
                (store, Some(cluster), Some(lock))
            }
            None => {
                let (store, lock) = open_store_for_run(&store_url).await?;
                (store, None, lock)
            }
        };
        // Training as jobs: the object store and the work queue answer before anything runs.
        let training = match &cluster_opts {
            Some(opts) => Some(
                vigil::cluster::train::connect(opts, store.clone(), state.join("models"), args.train_slots)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
            ),
            None => None,
        };
        let engine = match vigil::engine::Engine::start_owned(plan, &out.sources, &out.version, store, Some(state.clone()), args.dry_run, cluster.is_some()).await {
            Ok(e) => std::sync::Arc::new(e),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(EXIT_ERRORS));
            }
        };
        let listener = tokio::net::TcpListener::bind(args.listen).await.map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
        let addr = listener.local_addr()?;
        // Reloads: one controller; the watcher, SIGHUP and the API send it requests.
        let (reload_tx, reload_rx) = tokio::sync::mpsc::channel::<ReloadRequest>(16);
        *engine.shared.reload.write().unwrap_or_else(|e| e.into_inner()) = Some(reload_tx.clone());
        *engine.shared.access.write().unwrap_or_else(|e| e.into_inner()) = access;
        tokio::spawn(reload::run_controller(engine.clone(), paths.clone(), options.clone(), reload_rx, out.version.clone()));
        let mut watched = paths.clone();
        watched.extend(args.stdlib.clone());
        let _watcher = if args.no_watch { None } else { Some(reload::spawn_watcher(&watched, args.debounce, args.poll, reload_tx.clone()).map_err(|e| anyhow::anyhow!("cannot watch the sources: {e}"))?) };
        if let Some(file) = &args.addr_file {
            // Written whole, then renamed: a reader never sees half an address.
            let mut tmp = file.clone().into_os_string();
            tmp.push(".tmp");
            let tmp = PathBuf::from(tmp);
            std::fs::write(&tmp, format!("{addr}\n"))
                .and_then(|()| std::fs::rename(&tmp, file))
                .map_err(|e| anyhow::anyhow!("cannot write the address to {}: {e}", file.display()))?;
        }
        tracing::info!(listen = %addr, tls = args.tls_cert.is_some(), pipelines = engine.pipeline_names().await.len(), stages = engine.stage_count().await, state = %state.display(), store = %store_url.display(), version = %out.version, watching = !args.no_watch, "vigil running; SIGINT or SIGTERM stops it, SIGHUP reloads");
        let console = format!("{}://{addr}/", if args.tls_cert.is_some() { "https" } else { "http" });
        tracing::info!(url = %console, "console at {console}");
        let cancel = engine.cancellation();
        let worker = training.and_then(|t| {
            engine.train_remotely(t.remote);
            let e = engine.clone();
            t.worker.map(|w| tokio::spawn(w.run(std::sync::Arc::new(move |key: &str, fp: &str| e.has_stage(key, fp)), cancel.clone())))
        });
        // The cluster's leases decide which pipelines run here; it stops after the engine.
        let (leaving, hurry) = (tokio_util::sync::CancellationToken::new(), tokio_util::sync::CancellationToken::new());
        let lease_ttl = cluster_opts.as_ref().map(|o| o.ttl);
        let membership = cluster.map(|(cluster, leases)| {
            let owner: std::sync::Arc<dyn vigil::cluster::Owner> = engine.clone();
            tokio::spawn(cluster.run(owner, leases, leaving.clone(), hurry.clone()))
        });
        let sink = engine.shared.clone();
        let server = tokio::spawn(vigil::server::listen::serve(
            listener,
            vigil::server::router(engine.shared.clone()),
            serve_options,
            tls,
            std::sync::Arc::new(move |e| sink.metrics.http(e)),
            cancel.clone(),
        ));
        // PostgreSQL: the lock on the database is kept across a server restart; when
        // another engine took it meanwhile, this one stops.
        let lock_lost = _db_lock.as_ref().map(vigil::store::postgres::EngineLock::lost).unwrap_or_default();
        let lost = tokio::select! {
            () = wait_for_signal(&reload_tx) => false,
            () = lock_lost.cancelled() => true,
        };
        // A cluster node drains first: each pipeline is handed over (stopped here, its
        // lease released) and another node holds it before this one stops; at most two
        // TTLs, at once on a second signal.
        if let (Some(mut m), Some(ttl)) = (membership, lease_ttl) {
            leaving.cancel();
            let drained = tokio::select! {
                r = tokio::time::timeout(ttl * 2 + std::time::Duration::from_secs(3), &mut m) => r.is_ok(),
                () = wait_for_signal(&reload_tx) => false,
            };
            if !drained {
                hurry.cancel();
                let _ = tokio::time::timeout(std::time::Duration::from_secs(3), m).await;
            }
        }
        tracing::info!("stopping: letting running ticks finish");
        let clean = engine.shutdown(std::time::Duration::from_millis(4500)).await;
        if let Some(w) = worker {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(3), w).await;
        }
        let _ = tokio::time::timeout(std::time::Duration::from_millis(300), server).await;
        if let Some(file) = &args.addr_file {
            let _ = std::fs::remove_file(file);
        }
        tracing::info!(clean, "stopped");
        if lost {
            eprintln!("error: another vigil took the state database's lock while this one's session was gone; stopped");
            return Ok(ExitCode::from(EXIT_ERRORS));
        }
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}

/// The default node name: the host name and the process id.
fn default_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host.trim().chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    format!("{}-{}", if host.is_empty() { "vigil" } else { &host }, std::process::id())
}

/// Opens the shared PostgreSQL store of a cluster node and joins the cluster: both must
/// answer (NATS with JetStream) before anything starts.
async fn open_cluster(
    url: &vigil::store::StoreUrl,
    opts: &vigil::cluster::Options,
) -> anyhow::Result<(
    std::sync::Arc<dyn vigil::store::Store>,
    (vigil::cluster::Cluster, std::sync::Arc<dyn vigil::cluster::LeaseStore>),
    vigil::store::postgres::EngineLock,
)> {
    let vigil::store::StoreUrl::Postgres(u) = url else { anyhow::bail!("`--cluster` needs a PostgreSQL store") };
    // NATS first: it answers at once, where a database may take its time migrating.
    let cluster = vigil::cluster::Cluster::connect(opts.clone()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    // An outbox row a node claimed and did not send (it died) is claimed again after
    // three TTLs: longer than a send's timeout, so a slow send is not repeated.
    let claim = (opts.ttl * 3).max(std::time::Duration::from_secs(12));
    let store = vigil::store::PostgresStore::connect(u).await.map_err(|e| anyhow::anyhow!("{e}"))?.clustered(&opts.node, claim);
    // Every node shares the database; an engine without --cluster may not.
    let lock = store.lock_cluster().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!(store = %url.display(), cluster = %vigil::cluster::shown(&opts.url), node = %opts.node, "state store opened; joining the cluster");
    let store = std::sync::Arc::new(store);
    let leases: std::sync::Arc<dyn vigil::cluster::LeaseStore> = store.clone();
    Ok((store, (cluster, leases), lock))
}

/// Opens the store of `vigil run`, with the lock that keeps a second engine off a
/// PostgreSQL database (a SQLite one is kept by the state directory's lock).
async fn open_store_for_run(
    url: &vigil::store::StoreUrl,
) -> anyhow::Result<(std::sync::Arc<dyn vigil::store::Store>, Option<vigil::store::postgres::EngineLock>)> {
    // The errors name the store themselves (their sources are part of the line).
    let plain = |e: vigil::store::StoreError| anyhow::anyhow!("{e}");
    match url {
        vigil::store::StoreUrl::Postgres(u) => {
            let store = vigil::store::PostgresStore::connect(u).await.map_err(plain)?;
            let lock = store.lock_engine().await.map_err(plain)?;
            tracing::debug!(store = %url.display(), "state store opened");
            Ok((std::sync::Arc::new(store), Some(lock)))
        }
        other => Ok((vigil::store::open(other).await.map_err(plain)?, None)),
    }
}

/// Waits for SIGINT or SIGTERM; SIGHUP asks for a reload meanwhile.
async fn wait_for_signal(reload: &tokio::sync::mpsc::Sender<vigil::engine::reload::ReloadRequest>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
        let mut hup = signal(SignalKind::hangup()).expect("installing a SIGHUP handler");
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return,
                _ = term.recv() => return,
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading");
                    let _ = reload.send(vigil::engine::reload::ReloadRequest { reason: "SIGHUP", reply: None }).await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = reload;
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn cmd_replay(file: PathBuf, input: PathBuf, output: PathBuf, pipeline: Option<String>) -> anyhow::Result<ExitCode> {
    init_tracing();
    let out = compile_with(std::slice::from_ref(&file), &CompileOptions::default())?;
    print_diagnostics(&out, &out.diagnostics.0);
    let Some(plan) = &out.plan else { return Ok(ExitCode::from(EXIT_ERRORS)) };
    let p = vigil::replay::pick_pipeline(plan, pipeline.as_deref())?;
    let base = file.parent().map(PathBuf::from).unwrap_or_default();
    let started = std::time::Instant::now();
    let report = vigil::replay::replay(p, &base, &input, &output)?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "replayed {} rows through `{}` ({}) in {:.2} s ({:.1} M rows/s): {} anomalous; skipped {} malformed, {} non-finite, {} out of order; {} duplicate timestamps",
        report.rows,
        report.pipeline,
        report.stage,
        secs,
        report.rows as f64 / secs.max(1e-9) / 1e6,
        report.anomalous,
        report.malformed,
        report.non_finite,
        report.out_of_order,
        report.duplicate
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Clone, Copy, ValueEnum)]
enum TestFormat {
    Text,
    Junit,
}

fn cmd_test(paths: Vec<PathBuf>, format: TestFormat, filter: Option<String>, stdlib: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let mut paths = if paths.is_empty() { vec![PathBuf::from("pipelines")] } else { paths };
    // `vigil test NAME.vigil` runs the tests in `NAME.test.vigil` beside it.
    for p in paths.clone() {
        let test = p.with_extension("test.vigil");
        if p.extension().is_some_and(|x| x == "vigil")
            && vigil::compile::tested_file(&p).is_none()
            && test.is_file()
            && !paths.contains(&test)
        {
            paths.push(test);
        }
    }
    let out = compile_with(&paths, &CompileOptions { stdlib_dir: stdlib, ..CompileOptions::default() })?;
    print_diagnostics(&out, &out.diagnostics.0);
    let Some(plan) = &out.plan else { return Ok(ExitCode::from(EXIT_ERRORS)) };
    let tests: Vec<vigil::testing::TestCase> =
        out.tests.iter().filter(|t| filter.as_deref().is_none_or(|f| t.name.contains(f))).cloned().collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = std::time::Instant::now();
    let results = vigil::testing::run_all(&tests, plan, Path::new("."), threads);
    let failed = results.iter().filter(|r| !r.passed()).count();
    match format {
        TestFormat::Junit => print!("{}", vigil::testing::junit(&results)),
        TestFormat::Text => {
            println!("running {} test{}", results.len(), if results.len() == 1 { "" } else { "s" });
            for r in &results {
                let status = if r.passed() { "ok" } else { "FAILED" };
                println!("test {}::{} ... {status} ({} ms)", r.pipeline, r.name, r.duration.as_millis());
            }
            for r in results.iter().filter(|r| !r.passed()) {
                println!("\n---- {}::{} ({}) ----", r.pipeline, r.name, r.location);
                if let Some(e) = &r.error {
                    println!("the run failed: {e}");
                }
                for f in &r.failures {
                    println!("{}: expected `{}`", f.location, f.expected);
                    for line in f.actual.lines() {
                        println!("    {line}");
                    }
                }
            }
            println!(
                "\ntest result: {}. {} passed; {failed} failed; finished in {:.2} s",
                if failed == 0 { "ok" } else { "FAILED" },
                results.len() - failed,
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(EXIT_ERRORS) })
}

fn cmd_explain(topic: &str) -> anyhow::Result<ExitCode> {
    if topic == "codes" {
        for c in Code::ALL {
            let i = c.info();
            println!("{}  {}", i.code, i.title);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if topic == "operators" {
        let mut kind = None;
        for op in vigil::operators::specs() {
            if kind != Some(op.kind) {
                kind = Some(op.kind);
                println!("{}:", op.kind);
            }
            println!("  {:<24} {}", op.name, op.summary);
        }
        println!("\nstdlib stages (`vigil explain NAME`):");
        for (module, t) in stdlib_templates() {
            println!("  {:<24} {}", format!("{module}.{}", t.name.node), t.doc.first().map(|d| d.trim()).unwrap_or(""));
        }
        println!("\n`vigil explain NAME` for an operator's parameters; `vigil explain options`, `templates`, `codes`.");
        return Ok(ExitCode::SUCCESS);
    }
    if topic == "options" {
        for (name, form, kinds, doc) in vigil::check::options::OPTIONS {
            let kinds =
                if kinds.is_empty() { "every stage".to_owned() } else { kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ") };
            println!("{name}  ({kinds})\n  {form}\n  {doc}\n");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if topic == "templates" {
        // Two things share the word: notification templates and the log-mining operator.
        print!("{TEMPLATE_VARIABLES}");
        if let Some(op) = vigil::operators::spec("templates") {
            println!("\n---\n\nThe `templates` operator (log template mining):\n");
            print!("{}", vigil::operators::operator_markdown(op));
        }
        return Ok(ExitCode::SUCCESS);
    }
    // An option's old name explains the option it became.
    let topic = vigil::check::options::DEPRECATED.iter().find(|(old, _, _)| *old == topic).map_or(topic, |(_, new, _)| *new);
    if let Some((name, form, kinds, doc)) = vigil::check::options::OPTIONS.iter().find(|(n, _, _, _)| *n == topic) {
        let kinds =
            if kinds.is_empty() { "every stage".to_owned() } else { kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ") };
        println!("stage option `{name}` ({kinds})\n\n  {form}\n\n{doc}");
        return Ok(ExitCode::SUCCESS);
    }
    let short = topic.rsplit('.').next().unwrap_or(topic);
    if let Some((module, t)) =
        stdlib_templates().into_iter().find(|(m, t)| t.name.node == topic || (t.name.node == short && topic == format!("{m}.{short}")))
    {
        println!("stdlib stage `{}` (use {module}.{{{}}})\n", t.name.node, t.name.node);
        for line in &t.doc {
            println!("{}", line.strip_prefix(' ').unwrap_or(line));
        }
        println!("\nparameters:");
        for p in &t.params {
            let default = p.default.as_ref().map(|d| format!(" = {d}")).unwrap_or_default();
            println!("  {}: {}{default}  {}", p.name.node, type_text(&p.ty), p.doc.iter().map(|d| d.trim()).collect::<Vec<_>>().join(" "));
        }
        println!("\nyields {}", type_text(&t.output));
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(code) = Code::parse(topic) {
        print!("{}", code.info());
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(op) = vigil::operators::spec(topic) {
        print!("{}", vigil::operators::operator_markdown(op));
        return Ok(ExitCode::SUCCESS);
    }
    let templates = stdlib_templates();
    let mut candidates: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
    candidates.extend(vigil::operators::specs().map(|o| o.name));
    candidates.extend(vigil::check::options::OPTIONS.iter().map(|o| o.0));
    candidates.extend(templates.iter().map(|(_, t)| t.name.node.as_str()));
    candidates.extend(["codes", "operators", "options", "templates"]);
    let hint = vigil::diagnostic::suggest(topic, candidates).map(|s| format!(" ({s})")).unwrap_or_default();
    anyhow::bail!("nothing to explain for `{topic}`{hint}; try `vigil explain codes` or `vigil explain operators`")
}

/// The variables of notification templates (subjects, bodies, exec arguments, dedup keys).
const TEMPLATE_VARIABLES: &str = "Notification templates (minijinja: `{{ incident.key }}`, filters such as `| upper`) see:

  pipeline                  the pipeline's name
  stage                     the respond stage's key (`pipeline.stage`)
  series                    the first series of the incident (`name{label=\"value\"}`)
  labels.NAME               a label of the incident's series
  transition                firing, resolved, acknowledged, escalated, repeat-N, resend-N
  incident.id               the incident's id (stable)
  incident.key              its dedup key
  incident.status           firing or resolved
  incident.score            the anomaly score that opened or last updated it (a number, 3 decimals)
  incident.value            the series' value then
  incident.series           the first series; incident.all_series: every series (grouped incidents)
  incident.labels.NAME      as labels.NAME
  incident.opened_at        when it opened (RFC 3339); incident.timestamp: its last update
  incident.acknowledged     true once acknowledged; incident.acknowledged_by: who
  incident.transition       as transition
  incident.samples          lines that show what happened (log incidents: the last lines of
                            the template counted when it opened), a list

`vigil check` refuses an unknown variable (with a suggestion). A template that fails to
render at send time (an unknown filter, a filter on the wrong type) is replaced by the
default message and the error is audited (`render_failed`).
";

/// The stdlib's stage templates with their module names.
fn stdlib_templates() -> Vec<(&'static str, vigil::syntax::ast::Template)> {
    let mut out = Vec::new();
    let mut sources = vigil::source::SourceMap::new();
    for m in vigil::stdlib::MODULES {
        let id = sources.add(m.file, None, vigil::source::Origin::Stdlib, m.text);
        for item in vigil::syntax::parse(id, m.text).file.items {
            if let vigil::syntax::ast::Item::Template(t) = item {
                out.push((m.name, t));
            }
        }
    }
    out
}

/// A parameter type as written: `Series`, `List<String>`.
fn type_text(t: &vigil::syntax::ast::TypeExpr) -> String {
    match &t.arg {
        Some(a) => format!("{}<{}>", t.name.node, type_text(a)),
        None => t.name.node.clone(),
    }
}

fn cmd_eval(
    file: PathBuf,
    data: PathBuf,
    windows: PathBuf,
    out_dir: Option<PathBuf>,
    plot: bool,
    pipeline: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    init_tracing();
    let out = compile_with(std::slice::from_ref(&file), &CompileOptions::default())?;
    print_diagnostics(&out, &out.diagnostics.0);
    let Some(plan) = &out.plan else { return Ok(ExitCode::from(EXIT_ERRORS)) };
    let p = vigil::replay::pick_pipeline(plan, pipeline.as_deref())?;
    let base = file.parent().map(PathBuf::from).unwrap_or_default();
    let opts = vigil::eval::EvalOptions { data: &data, windows: &windows, out: out_dir.as_deref(), plot, progress: true };
    let report = vigil::eval::evaluate(p, &base, &opts)?;
    for m in &report.missing {
        eprintln!("warning: the windows file names `{m}`, which is not under `{}`; skipped", data.display());
    }
    for u in &report.unlabelled {
        eprintln!("warning: `{u}` has no entry in the windows file; scored as having no anomalies");
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let width = report.files.iter().map(|f| f.file.len()).max().unwrap_or(4).max(4);
    println!("{:width$}  {:>7}  {:>8}  {:>4}  {:>8}", "file", "windows", "detected", "FP", "score");
    for f in &report.files {
        println!("{:width$}  {:>7}  {:>8}  {:>4}  {:>8.3}", f.file, f.windows, f.detected, f.fp, f.score);
    }
    let (w, d, fp): (u32, u32, u32) = report.files.iter().fold((0, 0, 0), |a, f| (a.0 + f.windows, a.1 + f.detected, a.2 + f.fp));
    println!("{:width$}  {:>7}  {:>8}  {:>4}", "total", w, d, fp);
    println!();
    for p in &report.profiles {
        println!("{:<20} {:>6.2}   (threshold {:.6}, raw {:.3})", p.profile, p.score, p.threshold, p.raw);
    }
    eprintln!("{} files, {} rows in {:.1} s", report.files.len(), report.rows, report.seconds);
    Ok(ExitCode::SUCCESS)
}

fn cmd_cluster(action: ClusterAction) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let err = |e: vigil::cluster::ClusterError| anyhow::anyhow!("{e}");
    match action {
        ClusterAction::Status { cluster, cluster_prefix, format } => {
            let status = rt.block_on(vigil::cluster::status(&cluster, &cluster_prefix)).map_err(err)?;
            if format.json() {
                println!("{}", serde_json::to_string_pretty(&status)?);
                return Ok(ExitCode::SUCCESS);
            }
            let versions = vigil::cluster::versions(&status.nodes);
            println!(
                "{} nodes, {} leases, {} source version{}{}",
                status.nodes.len(),
                status.leases.len(),
                versions.len(),
                if versions.len() == 1 { "" } else { "s" },
                if status.skew { " (version skew)" } else { "" }
            );
            for n in &status.nodes {
                let version = if n.version.is_empty() { "?" } else { &n.version };
                let vigil_version = if n.vigil_version.is_empty() { "?" } else { &n.vigil_version };
                println!(
                    "{:<24} pid {:<8} version {version:<16} vigil {vigil_version:<8}{} {:>3} pipelines: {}",
                    n.node,
                    n.pid,
                    if n.draining { " draining" } else { "" },
                    n.pipelines.len(),
                    n.pipelines.join(" ")
                );
            }
            for (pipeline, node) in &status.leases {
                println!("{pipeline:<24} {node}");
            }
            Ok(ExitCode::SUCCESS)
        }
        ClusterAction::Drain { node, cluster, cluster_prefix, timeout } => rt.block_on(async {
            let admin = vigil::cluster::Admin::open(&cluster, &cluster_prefix, "drain").await.map_err(err)?;
            let held: Vec<String> = admin.leases().await.into_iter().filter(|(_, n)| *n == node).map(|(p, _)| p).collect();
            admin.drain(&node).await.map_err(err)?;
            let started = std::time::Instant::now();
            eprintln!("draining {node}: {} pipelines to hand over{}", held.len(), if held.is_empty() { "" } else { ":" });
            if !held.is_empty() {
                eprintln!("  {}", held.join(" "));
            }
            let others = admin.status().await.map_err(err)?.nodes.iter().filter(|n| n.node != node && !n.draining).count();
            if others == 0 && !held.is_empty() {
                eprintln!("warning: no other live node that is not draining: the pipelines wait for a node to join (or `vigil cluster undrain {node}`)");
            }
            let mut took: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
            loop {
                let leases = admin.leases().await;
                for p in &held {
                    match leases.get(p) {
                        Some(n) if *n != node && !took.contains_key(p) => {
                            eprintln!("  {p} → {n} ({}/{}, {:.1} s)", took.len() + 1, held.len(), started.elapsed().as_secs_f64());
                            took.insert(p.clone(), n.clone());
                        }
                        _ => {}
                    }
                }
                if took.len() == held.len() {
                    break;
                }
                if started.elapsed() >= timeout {
                    let pending: Vec<&str> = held.iter().filter(|p| !took.contains_key(*p)).map(String::as_str).collect();
                    eprintln!(
                        "error: {node} is draining, but after {:.0} s no other node holds {} (check `vigil cluster status`; the node keeps draining)",
                        timeout.as_secs_f64(),
                        pending.join(" ")
                    );
                    return Ok(ExitCode::from(EXIT_ERRORS));
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            println!("drained {node} in {:.1} s: it runs nothing and takes nothing until `vigil cluster undrain {node}` or its restart", started.elapsed().as_secs_f64());
            for (p, n) in &took {
                println!("{p:<24} {n}");
            }
            Ok(ExitCode::SUCCESS)
        }),
        ClusterAction::Undrain { node, cluster, cluster_prefix } => rt.block_on(async {
            let admin = vigil::cluster::Admin::open(&cluster, &cluster_prefix, "undrain").await.map_err(err)?;
            if admin.undrain(&node).await.map_err(err)? {
                println!("undrained {node}: it takes its share of the pipelines again at its next rounds");
            } else {
                println!("{node} was not drained: nothing to do");
            }
            Ok(ExitCode::SUCCESS)
        }),
    }
}

fn cmd_models(action: ModelsAction, state: PathBuf, store: Option<String>) -> anyhow::Result<ExitCode> {
    let url = vigil::store::StoreUrl::parse(store.as_deref(), &state).map_err(anyhow::Error::msg)?;
    if url == vigil::store::StoreUrl::StateDir(state.clone()) && !state.join("state.db").exists() {
        anyhow::bail!(
            "no state database at `{}` (run `vigil run --state {}` first, or pass --state)",
            state.join("state.db").display(),
            state.display()
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let store = vigil::store::open(&url).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        match action {
            ModelsAction::List { stage, format } => {
                let json = format.json();
                let rows = store.models(stage.as_deref()).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                } else if rows.is_empty() {
                    eprintln!("no models yet");
                } else {
                    println!(
                        "{:>5}  {:<6}  {:<28}  {:<24}  {:>4}  {:<11}  {:>8}  {:>10}  created",
                        "id", "active", "stage", "series", "ver", "kind", "samples", "val_loss"
                    );
                    for r in rows {
                        let m = &r.meta;
                        println!(
                            "{:>5}  {:<6}  {:<28}  {:<24}  {:>4}  {:<11}  {:>8}  {:>10}  {}",
                            r.id,
                            if r.active { "*" } else { "" },
                            m.key,
                            m.series,
                            m.version,
                            m.kind,
                            m.samples,
                            m.val_loss.map_or("-".into(), |v| format!("{v:.5}")),
                            vigil::time::format_rfc3339(m.created_at)
                        );
                    }
                }
            }
            ModelsAction::Show { id } => {
                let rows = store.models(None).await?;
                let Some(r) = rows.into_iter().find(|r| r.id == id) else { anyhow::bail!("no model version with id {id}") };
                // With the stage and series' decisions: promotions, rejections, rollbacks.
                let audit = store.audit_of(&vigil::runtime::ops::learn::model_subject(&r.meta.key, &r.meta.series)).await?;
                let mut v = serde_json::to_value(&r)?;
                v["audit"] = serde_json::to_value(&audit)?;
                println!("{}", serde_json::to_string_pretty(&v)?);
            }
            ModelsAction::Promote { id } => {
                if !vigil::learn::registry::promote(&*store, Some(&state.join("models")), id, "cli").await? {
                    anyhow::bail!("no model version with id {id}");
                }
                println!("model {id} is now active; a running engine switches to it within 10 s");
            }
            ModelsAction::Compare { active, candidate, windows, format } => {
                let rows = store.models(None).await?;
                let find = |id: i64| rows.iter().find(|r| r.id == id).ok_or_else(|| anyhow::anyhow!("no model version with id {id}"));
                let (a, c) = (find(active)?, find(candidate)?);
                if a.meta.key != c.meta.key || a.meta.series != c.meta.series {
                    anyhow::bail!("versions {active} and {candidate} model different stages or series");
                }
                let run = vigil::learn::shadow::load_run(&state.join("models"), &c.meta).ok_or_else(|| {
                    anyhow::anyhow!(
                        "no shadow period recorded for v{} (only retrained versions of a stage with `shadow for …` run in shadow)",
                        c.meta.version
                    )
                })?;
                if run.active.version != a.meta.version {
                    anyhow::bail!("v{} ran in shadow beside v{}, not v{}", c.meta.version, run.active.version, a.meta.version);
                }
                let mut known: Vec<vigil::feedback::Window> = Vec::new();
                let pipeline = a.meta.key.split('.').next().unwrap_or("").to_owned();
                let book = vigil::feedback::FeedbackBook::with(store.feedback().await?);
                known.extend(book.windows(&pipeline, &a.meta.series));
                if let Some(path) = windows {
                    known.extend(
                        vigil::eval::load_windows(&path)?
                            .get(&a.meta.series)
                            .map(|w| vigil::learn::shadow::labelled(w))
                            .unwrap_or_default(),
                    );
                }
                let to =
                    run.active.alarms.iter().chain(&run.candidate.alarms).copied().max().unwrap_or(run.from).max(vigil::time::now_ms());
                let cmp = vigil::learn::shadow::compare(&run.active, &run.candidate, &known, run.from, to);
                if format.json() {
                    println!("{}", serde_json::to_string_pretty(&cmp)?);
                } else {
                    let pct = |v: Option<f64>| v.map_or("-".into(), |x| format!("{:.0}%", x * 100.0));
                    println!("{} {} from {}", a.meta.key, a.meta.series, vigil::time::format_rfc3339(cmp.from));
                    println!(
                        "{:<10} {:>7} {:>10} {:>12} {:>10} {:>7}",
                        "version", "alarms", "confirmed", "unconfirmed", "precision", "recall"
                    );
                    for (who, f) in [("active", &cmp.active), ("candidate", &cmp.candidate)] {
                        println!(
                            "{:<10} {:>7} {:>10} {:>12} {:>10} {:>7}   v{}",
                            who,
                            f.alarms,
                            f.confirmed,
                            f.unconfirmed,
                            pct(f.precision),
                            pct(f.recall),
                            f.version
                        );
                    }
                    println!("agreement: {}; known anomaly windows: {}", pct(cmp.agreement), cmp.windows);
                    println!("promote when better: {}", vigil::learn::shadow::better(&cmp).1);
                }
            }
            ModelsAction::Rollback { stage, series } => {
                if store.models(Some(&stage)).await?.is_empty() {
                    anyhow::bail!("stage `{stage}` has no models");
                }
                let mut done = 0;
                for r in vigil::learn::registry::rollback(&*store, &stage, series.as_deref(), "cli").await? {
                    match r {
                        vigil::learn::registry::RolledBack::Rolled { series, from, to, id } => {
                            println!("{series}: v{from} → v{to} (id {id})");
                            done += 1;
                        }
                        vigil::learn::registry::RolledBack::Oldest { series, version } => {
                            eprintln!("{series}: v{version} is the oldest version; nothing to roll back to");
                        }
                    }
                }
                if done == 0 {
                    // Nothing to roll back is a state problem, not an error in the sources.
                    return Ok(ExitCode::from(EXIT_USAGE));
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Calls the engine's API: the JSON answer, or an error naming the engine's complaint.
fn api_call(method: &str, api: &str, path: &str, body: Option<serde_json::Value>) -> anyhow::Result<serde_json::Value> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build()?;
        let base =
            if api.contains("://") { api.trim_end_matches('/').to_owned() } else { format!("http://{}", api.trim().trim_end_matches('/')) };
        let url = format!("{base}{path}");
        let mut req = if method == "POST" { client.post(&url) } else { client.get(&url) };
        let token = |k: &str| std::env::var(k).ok().filter(|t| !t.is_empty());
        if method == "POST" {
            match token("VIGIL_API_TOKEN") {
                Some(t) => req = req.bearer_auth(t),
                None => anyhow::bail!("set VIGIL_API_TOKEN to the engine's API token"),
            }
            req = req.json(&body.unwrap_or_else(|| serde_json::json!({})));
        } else if let Some(t) = token("VIGIL_API_TOKEN").or_else(|| token("VIGIL_READ_TOKEN")) {
            // Reads need a token where the engine asks for one (beyond loopback).
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| anyhow::anyhow!("cannot reach the engine at {api}: {e}"))?;
        let code = resp.status();
        let v: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
        if !code.is_success() {
            anyhow::bail!("{} ({})", v.get("error").and_then(|e| e.as_str()).unwrap_or("request failed"), code);
        }
        Ok(v)
    })
}

fn cmd_incidents(action: IncidentsAction, api: &str) -> anyhow::Result<ExitCode> {
    match action {
        IncidentsAction::List { status, format } => {
            let json = format.json();
            let path = match &status {
                Some(s) => format!("/api/v1/incidents?status={s}"),
                None => "/api/v1/incidents".into(),
            };
            let v = api_call("GET", api, &path, None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            let list = v.as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                eprintln!("no incidents");
            } else {
                println!("{:<16}  {:<8}  {:<4}  {:<9}  {:<24}  {:<28}  key", "id", "status", "ack", "silenced", "opened", "stage");
            }
            for i in list {
                let silenced = match &i["silenced_by"] {
                    serde_json::Value::Number(n) => format!("#{n}"),
                    _ if i["silenced"] == true => "at open".into(),
                    _ => String::new(),
                };
                println!(
                    "{:<16}  {:<8}  {:<4}  {:<9}  {:<24}  {:<28}  {}",
                    i["id"].as_str().unwrap_or(""),
                    i["status"].as_str().unwrap_or(""),
                    if i["acknowledged"] == true { "yes" } else { "" },
                    silenced,
                    vigil::time::format_rfc3339(i["opened_at"].as_i64().unwrap_or(0)),
                    i["stage"].as_str().unwrap_or(""),
                    i["key"].as_str().unwrap_or("")
                );
            }
        }
        IncidentsAction::Show { id } => {
            println!("{}", serde_json::to_string_pretty(&api_call("GET", api, &format!("/api/v1/incidents/{id}"), None)?)?)
        }
        IncidentsAction::Ack { id, by } => {
            api_call("POST", api, &format!("/api/v1/incidents/{id}/ack"), Some(serde_json::json!({ "by": by })))?;
            println!("acknowledged {id}");
        }
        IncidentsAction::Resolve { id, by } => {
            api_call("POST", api, &format!("/api/v1/incidents/{id}/resolve"), Some(serde_json::json!({ "by": by })))?;
            println!("resolved {id}");
        }
        IncidentsAction::Feedback { id, verdict, note } => {
            api_call(
                "POST",
                api,
                &format!("/api/v1/incidents/{id}/feedback"),
                Some(serde_json::json!({ "verdict": verdict, "note": note })),
            )?;
            println!("{id}: {verdict}");
        }
        IncidentsAction::Missed { pipeline, series, from, to, note } => {
            let at = |s: &str| vigil::time::parse_timestamp(s).ok_or_else(|| anyhow::anyhow!("`{s}` is not a timestamp (RFC 3339)"));
            let body = serde_json::json!({ "pipeline": pipeline, "series": series, "from": at(&from)?, "to": at(&to)?, "note": note });
            let r = api_call("POST", api, "/api/v1/feedback", Some(body))?;
            println!("missed window recorded (id {})", r.get("id").and_then(serde_json::Value::as_i64).unwrap_or(0));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_report(since: &str, within: &str, json: bool, api: &str) -> anyhow::Result<ExitCode> {
    for (name, v) in [("since", since), ("within", within)] {
        if vigil::time::parse_duration(v).is_none_or(|d| d <= 0) {
            eprintln!("error: --{name} must be a duration such as 7d, 12h or 1h30m, not `{v}`");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    }
    let r = api_call("GET", api, &format!("/api/v1/report?since={since}&within={within}"), None)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    let report: vigil::respond::report::Report = serde_json::from_value(r)?;
    print!("{}", report.text());
    Ok(ExitCode::SUCCESS)
}

fn cmd_situations(action: SituationsAction, api: &str) -> anyhow::Result<ExitCode> {
    let time = |v: &serde_json::Value| v.as_i64().map(vigil::time::format_rfc3339).unwrap_or_default();
    match action {
        SituationsAction::List { status, format } => {
            if let Some(s) = status.as_deref().filter(|s| !["open", "closed"].contains(s)) {
                anyhow::bail!("--status is open or closed, not `{s}`");
            }
            let path = match &status {
                Some(s) => format!("/api/v1/situations?status={s}"),
                None => "/api/v1/situations".into(),
            };
            let v = api_call("GET", api, &path, None)?;
            if format.json() {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            let list = v.as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                eprintln!("no situations");
            } else {
                println!("{:<21}  {:<6}  {:>7}  {:>6}  {:<24}  {:<28}  origin", "id", "status", "members", "firing", "opened", "stage");
            }
            for s in list {
                println!(
                    "{:<21}  {:<6}  {:>7}  {:>6}  {:<24}  {:<28}  {}",
                    s["id"].as_str().unwrap_or(""),
                    s["status"].as_str().unwrap_or(""),
                    s["members"].as_array().map_or(0, Vec::len),
                    s["firing"],
                    time(&s["opened_at"]),
                    s["stage"].as_str().unwrap_or(""),
                    s["origin"].as_str().unwrap_or("")
                );
            }
        }
        SituationsAction::Show { id, format } => {
            let s = api_call("GET", api, &format!("/api/v1/situations/{id}"), None)?;
            if format.json() {
                println!("{}", serde_json::to_string_pretty(&s)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "situation {}  ({}, stage {})",
                s["id"].as_str().unwrap_or(""),
                s["status"].as_str().unwrap_or(""),
                s["stage"].as_str().unwrap_or("")
            );
            println!("origin     {}  ({})", s["origin"].as_str().unwrap_or("-"), s["origin_reason"].as_str().unwrap_or(""));
            println!(
                "incidents  {}",
                s["incidents"].as_array().map(|a| a.iter().filter_map(|i| i.as_str()).collect::<Vec<_>>().join(", ")).unwrap_or_default()
            );
            println!("timeline");
            for e in s["timeline"].as_array().cloned().unwrap_or_default() {
                println!("  {}  {}", time(&e["ts"]), e["event"].as_str().unwrap_or(""));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_silences(action: SilencesAction, api: &str) -> anyhow::Result<ExitCode> {
    match action {
        SilencesAction::List { format } => {
            let json = format.json();
            let v = api_call("GET", api, "/api/v1/silences", None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            let now = vigil::time::now_ms();
            for s in v.as_array().cloned().unwrap_or_default() {
                let (start, end) = (s["starts_at"].as_i64().unwrap_or(0), s["ends_at"].as_i64().unwrap_or(0));
                let state = if now < start {
                    "pending"
                } else if now < end {
                    "active"
                } else {
                    "expired"
                };
                println!(
                    "{:>4}  {:<8}  {} → {}  {}  {}",
                    s["id"],
                    state,
                    vigil::time::format_rfc3339(start),
                    vigil::time::format_rfc3339(end),
                    s["matchers"]
                        .as_array()
                        .map(|ms| ms
                            .iter()
                            .map(|m| format!(
                                "{}{}{}",
                                m["name"].as_str().unwrap_or(""),
                                m["op"].as_str().unwrap_or(""),
                                m["value"].as_str().unwrap_or("")
                            ))
                            .collect::<Vec<_>>()
                            .join(","))
                        .unwrap_or_default(),
                    s["comment"].as_str().unwrap_or("")
                );
            }
        }
        SilencesAction::Add { matchers, duration, starts, comment, by } => {
            // Checked here too, so a typo is a usage error before anything is sent.
            for x in &matchers {
                vigil::respond::SilenceMatcher::parse(x).map_err(anyhow::Error::msg)?;
            }
            let m = matchers.clone();
            let mut body = serde_json::json!({ "matchers": m, "duration": duration, "comment": comment, "created_by": by });
            if let Some(s) = starts {
                body["starts_at"] = s.into();
            }
            let v = api_call("POST", api, "/api/v1/silences", Some(body))?;
            println!("silence {} until {}", v["id"], vigil::time::format_rfc3339(v["ends_at"].as_i64().unwrap_or(0)));
        }
        SilencesAction::Expire { id } => {
            api_call("POST", api, &format!("/api/v1/silences/{id}/expire"), None)?;
            println!("silence {id} expired");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_templates(
    file: &Path,
    header: &str,
    masks: &[String],
    output: Option<PathBuf>,
    format: TemplatesFormat,
    max_templates: usize,
) -> anyhow::Result<ExitCode> {
    use vigil::logs::{report, Config, HeaderFormat};
    let header = HeaderFormat::new(header)?;
    let masks = masks
        .iter()
        .map(|m| regex::Regex::new(m).map_err(|e| anyhow::anyhow!("bad --mask `{m}`: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(max_templates > 0, "--max-templates must be at least 1");
    let config = Config { max_templates, masks, ..Config::default() };
    let mined = if file == Path::new("-") {
        report::mine(std::io::stdin().lock(), Some(&header), config, output.is_some())?
    } else {
        let f = std::fs::File::open(file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
        report::mine(std::io::BufReader::with_capacity(1 << 16, f), Some(&header), config, output.is_some())?
    };
    match output {
        Some(path) => {
            let f = std::fs::File::create(&path).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            report::write_csv(std::io::BufWriter::new(f), &mined)?;
            eprintln!("{}", report::summary(&mined));
        }
        None => {
            let out = std::io::BufWriter::new(std::io::stdout().lock());
            let written = match format {
                TemplatesFormat::Text => report::write_text(out, &mined),
                TemplatesFormat::Json => report::write_json(out, &mined),
            };
            // `vigil templates ... | head` is not an error.
            match written {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                other => other?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
