//! The diagnostic codes. A code is never reused; each has an entry with what it means, an
//! example and the fix (`vigil explain CODE`, and `docs/diagnostics.md`, generated from this
//! table and checked by a test).

macro_rules! codes {
    ($( $code:ident : $title:literal, $explain:literal, $example:literal, $fix:literal; )*) => {
        /// A stable diagnostic code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code { $( $code, )* }

        impl Code {
            /// Every code, in order.
            pub const ALL: &'static [Code] = &[ $( Code::$code, )* ];

            /// `E0201`.
            pub fn as_str(self) -> &'static str {
                match self { $( Code::$code => stringify!($code), )* }
            }

            /// The documentation entry for this code.
            pub fn info(self) -> CodeInfo {
                match self {
                    $( Code::$code => CodeInfo { code: stringify!($code), title: $title, explanation: $explain, example: $example, fix: $fix }, )*
                }
            }

            /// The code named by a string such as `E0201` (case-insensitive).
            pub fn parse(s: &str) -> Option<Code> {
                Code::ALL.iter().copied().find(|c| c.as_str().eq_ignore_ascii_case(s))
            }
        }
    };
}

/// What a code means.
#[derive(Clone, Copy, Debug)]
pub struct CodeInfo {
    pub code: &'static str,
    pub title: &'static str,
    pub explanation: &'static str,
    pub example: &'static str,
    pub fix: &'static str,
}

impl std::fmt::Display for CodeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}: {}\n\n{}\n\nExample:\n", self.code, self.title, self.explanation)?;
        for line in self.example.lines() {
            writeln!(f, "    {line}")?;
        }
        writeln!(f, "\nFix: {}", self.fix)
    }
}

codes! {
    // ---- syntax (syntax::parse) -------------------------------------------------------
    E0100: "the file is not valid UTF-8",
        "vigil sources are UTF-8 text. The file has a byte sequence that is not UTF-8 at the position shown (often a binary file passed by mistake, or a file saved as Latin-1).",
        "pipeline p { every 30s } \\xff",
        "Save the file as UTF-8, or check that the path names a pipeline file.";
    E0101: "syntax error",
        "The parser met something it did not expect. The message lists what would have been valid at that point.",
        "pipeline p {\n  every 30s\n  collect x = csv(path: \"a.csv\"\n}",
        "Look at the position shown and at the list of expected items; often a missing `,`, `)` or `=`.";
    E0102: "unterminated string",
        "A string opened with `\"` has no closing `\"` before the end of the file.",
        "collect x = csv(path: \"data.csv)",
        "Add the closing `\"`. Write `\\\"` for a quote inside a string.";
    E0103: "nesting too deep",
        "Brackets, braces or parentheses are nested more deeply than vigil allows (64 levels). The limit keeps the compiler from exhausting its stack on hostile input.",
        "predict s = f(((((((((((((((((((((x)))))))))))))))))))))  // ... 65 levels",
        "Flatten the expression, or move parts of it into their own stages.";
    E0104: "expression too complex",
        "An expression has more operators chained or nested than vigil allows (256 levels deep).",
        "predict s = threshold(x, above: 1 + 1 + 1 + ... )  // 300 operators",
        "Split the expression, or compute the constant yourself.";
    E0105: "invalid escape in string",
        "Inside a string, a backslash starts an escape. The valid escapes are `\\\"`, `\\\\`, `\\n`, `\\t`, `\\r`, `\\{`, `\\}` and `\\u{HEX}`.",
        "collect c = csv(path: \"C:\\data\\cpu.csv\")",
        "Write `\\\\` for a backslash.";
    E0106: "number out of range",
        "An integer literal does not fit in 64 bits, or a float literal is not finite.",
        "train m = autoencoder(x, epochs: 99999999999999999999)",
        "Use a smaller number.";
    E0107: "invalid duration",
        "A duration is an integer followed by a unit: `ms`, `s`, `m`, `h`, `d` or `w`, or a sum such as `1h30m`. The unit was not recognised, or the duration overflows.",
        "every 30sec",
        "Write `30s`; units are ms, s, m, h, d, w.";
    E0108: "invalid template in string",
        "Strings may contain `{{ expression }}` templates, rendered at run time. A `{{` has no matching `}}`, or a template is empty.",
        "dedup: \"{{ pipeline }/{{ series }}\"",
        "Close each `{{` with `}}`; write `\\{` for a literal brace.";
    E0109: "unclosed delimiter",
        "A `(`, `[` or `{` is never closed.",
        "pipeline p {\n  every 30s\n",
        "Add the closing delimiter where the construct ends.";
    E0110: "unexpected closing delimiter",
        "A `)`, `]` or `}` does not close the delimiter that is open at that point, or nothing is open.",
        "collect x = csv(path: \"a.csv\"]",
        "Remove it, or change it to match the opening delimiter shown.";
    E0111: "doc comment documents nothing",
        "`///` documents the item, stage or parameter that follows it, and `//!` documents the file and may appear only at its top. This doc comment is somewhere else.",
        "pipeline p {\n  every 30s\n  /// trailing\n}",
        "Move it before what it documents, or make it a plain `//` comment.";
    E0112: "`#` is not a comment",
        "vigil's comments start with `//` (to the end of the line); `///` documents the item, stage or parameter after it and `//!` the file. `#` has no meaning in the language, so a line copied from a shell script or YAML file is refused rather than read as something else.",
        "pipeline p {\n  # page after 2 minutes\n  every 30s\n}",
        "Replace `#` with `//`.";

    // ---- names (check) ------------------------------------------------------------------
    E0201: "unknown stage kind",
        "A stage statement starts with its kind: collect, preprocess, train, predict or respond.",
        "trian model = autoencoder(clean)",
        "Use one of the five kinds; the help names the closest.";
    E0202: "unknown name",
        "A name refers to no stage, parameter or import in scope. Stages are visible only inside their own pipeline or template.",
        "predict s = zscore(claen)",
        "Fix the spelling, or define the stage.";
    E0203: "unknown operator or template",
        "A stage calls something that is neither a built-in operator nor a stage template in scope.",
        "preprocess x = smooth(raw)",
        "Check the name against `vigil explain operators` or import the template with `use`.";
    E0204: "duplicate definition",
        "Two pipelines, templates, stages of one pipeline, or parameters of one template share a name.",
        "preprocess x = fill(a)\npreprocess x = diff(a)",
        "Rename one of them.";
    E0205: "unknown module",
        "A `use` names a module that does not exist in the standard library.",
        "use std.detct",
        "Use one of the stdlib modules: std.collect, std.preprocess, std.detect, std.respond, std.logs.";
    E0206: "unknown item in module",
        "A `use` or a qualified name asks a module for an item it does not define.",
        "use std.detect.{robust_zscor}",
        "Fix the name; the help lists the closest item the module has.";
    E0207: "cannot read imported file",
        "A `use \"file.vigil\"` names a file that cannot be read. Paths are relative to the importing file.",
        "use \"common.vigl\"",
        "Fix the path.";
    E0208: "conflicting import",
        "Two imports bring the same name into scope, or an import has the name of a template defined in the file.",
        "use std.detect.{robust_zscore}\nuse std.preprocess.{robust_zscore}",
        "Import one under another name with `as`, or use the qualified name.";
    E0209: "unknown field",
        "A field access names a field the value does not have. Scores have score, value, anomalous, expected, lower, upper, series, timestamp; Events have labels, annotations, status, timestamp; Incidents have key, status, severity, labels, opened_at. A template's Condition parameter is checked again where the template applies it: a condition written over the events a template is given cannot read `status` once the template applies it to the scores it computes from them.",
        "when: scores.anomalus",
        "Use one of the fields listed in the help.";
    E0210: "unknown trigger source",
        "`on` takes the source of the trigger; `webhook` is the only one.",
        "on kafka \"alerts\"",
        "Use `on webhook \"/path\"`, `every 30s` or `cron \"...\"`.";
    E0211: "a stage must call an operator",
        "A stage's expression must be a call of an operator or template (possibly chained with `|`). A bare reference, literal or arithmetic is not a stage.",
        "preprocess copy = clean",
        "Call an operator, for example `fill(clean, \"previous\")`.";
    E0212: "import hides a built-in namespace",
        "Built-in operators such as `prometheus.query_range` and `logs.file` live in the namespaces `prometheus` and `logs`. A `use` that binds one of these names (by its alias, or a module's or file's own name) would make `prometheus.` or `logs.` mean the imported module in this file, and the built-in operators under it unreachable.",
        "use std.logs  // binds `logs`: `logs.file` would be hidden",
        "Import the module under another name (`use \"metrics.vigil\" as metrics`, `use std.logs as log_detectors`), or import its templates by name (`use std.logs.{log_anomalies}`).";

    // ---- arguments and values (check) ---------------------------------------------------
    E0301: "unknown parameter",
        "A named argument is not a parameter of the operator or template called.",
        "preprocess x = rolling(raw, windw: 5m)",
        "Use one of the parameters listed in the help.";
    E0302: "missing argument",
        "A required input or parameter has no value and no default.",
        "collect x = csv()",
        "Add the argument shown.";
    E0303: "argument given twice",
        "The same parameter receives two values, by name or by position.",
        "preprocess x = fill(raw, \"linear\", method: \"previous\")",
        "Remove one of them.";
    E0304: "type mismatch",
        "A value does not have the type the parameter declares.",
        "preprocess x = rolling(raw, window: \"5m\")",
        "Write a value of the declared type (here the duration `5m`, without quotes).";
    E0305: "too many arguments",
        "More positional arguments were passed than the operator or template has inputs and parameters.",
        "preprocess x = diff(raw, 1, 2, 3)",
        "Remove the extra arguments or name them.";
    E0306: "positional argument after a named one",
        "Positional arguments come first; once an argument is named, the rest must be named too.",
        "preprocess x = fill(method: \"linear\", raw)",
        "Move the positional argument before the named ones, or name it.";
    E0307: "invalid value",
        "The value has the right type but is not allowed: not one of the choices the parameter accepts, out of its range, or refused by the operator as building the stage would refuse it (a regular expression, selector, template, URL, address or header format that does not parse, parameters needed together). Only what depends on the environment (a secret not set, a file not readable) is left to `vigil run`.",
        "preprocess x = resample(raw, every: 30s, agg: \"meen\")",
        "Use one of the accepted values listed in the help, or fix the value as the label says.";
    E0308: "invalid secret reference",
        "`secret(...)` takes a string literal `\"env:NAME\"` (an environment variable) or `\"file:PATH\"` (a file's contents).",
        "smtp: secret(\"SMTP_URL\")",
        "Write `secret(\"env:SMTP_URL\")` or `secret(\"file:/run/secrets/smtp\")`.";
    E0309: "secret written in plain text",
        "The parameter holds a credential and accepts only a `secret(...)` reference, so the value never lands in git, logs or the API.",
        "routing_key: \"R0UT1NGKEY\"",
        "Put the value in an environment variable or file and write `secret(\"env:PD_ROUTING_KEY\")`.";
    E0310: "invalid cron expression",
        "`cron` takes a five-field schedule: minute, hour, day of month, month, day of week (UTC).",
        "cron \"0 * * *\"",
        "Write five fields, for example `cron \"*/5 * * * *\"`.";
    E0311: "invalid webhook path",
        "A webhook path must start with `/` and contain only letters, digits and `-_./`.",
        "on webhook \"hooks/alerts\"",
        "Write an absolute path such as `\"/hooks/alerts\"`.";
    E0312: "condition refers to a stage that is not an input",
        "A condition such as `when:` is evaluated on each item of the stage's inputs and can only refer to those inputs.",
        "respond r = log(scores, when: other.anomalous)",
        "Refer to the stage's input (`scores.anomalous`).";
    E0313: "unknown stage option",
        "Stage options are retry, timeout, max_series, series_idle, retrain, learn_from, shadow, promote, min_samples, warm_start, fallback, pending, keep_firing, repeat, rate_limit, escalate, maintenance and resolve_timeout (see docs/operators.md, Stage options).",
        "train m = autoencoder(x) { retrian every 6h }",
        "Use one of the options listed in the help.";
    E0314: "invalid option",
        "An option's words do not match its form, for example `retry 3 backoff 1s`, `timeout 10s`, `retrain every 6h`, `retrain every 1000 samples`, `min_samples 500`.",
        "train m = autoencoder(x) { retrain 6h }",
        "Use the form shown in the help.";
    E0315: "option not valid for this stage kind",
        "Some options belong to one kind of stage: retrain, learn_from, shadow, promote, min_samples and warm_start to train; fallback to predict; pending, keep_firing, repeat, rate_limit, escalate, maintenance and resolve_timeout to respond.",
        "predict s = zscore(x) { retrain every 6h }",
        "Move the option to a stage of the right kind.";
    E0316: "option given twice",
        "A stage sets the same option twice.",
        "collect x = csv(path: \"a.csv\") { timeout 5s timeout 10s }",
        "Keep one.";
    E0317: "invalid operand",
        "An operator is applied to values it does not work on, such as adding a string to a number or `not` on a number.",
        "predict s = threshold(x, above: \"high\" * 2)",
        "Use operands of the types the operator takes: numbers for arithmetic, booleans for `and`, `or`, `not`.";
    E0318: "unknown type",
        "A template parameter or result names a type that does not exist. Types: Series, Events, Features, Model, Scores, Incidents, Int, Float, Bool, String, Duration, Secret, Condition, Map, List[T].",
        "stage f(input: Serie) -> Scores { ... }",
        "Use one of the types listed.";

    // ---- port types and stage kinds (check) ---------------------------------------------
    E0401: "port type mismatch",
        "A stage's input is connected to a stage whose output has another port type. Each operator declares the port types it accepts.",
        "train m = autoencoder(alerts)  // alerts: Events, autoencoder takes Series or Features",
        "Connect a stage of the expected type, or convert the data first (for example `aggregate` Events into Series).";
    E0402: "operator used in the wrong stage kind",
        "Each operator belongs to one stage kind: `autoencoder` trains, `zscore` predicts, `email` responds, and so on. The stage's keyword must match.",
        "preprocess s = zscore(x)",
        "Use the kind the operator belongs to.";
    E0403: "template result does not fit the stage kind",
        "A template called from a stage yields a port type that this kind of stage cannot produce: collect yields Series or Events, preprocess Series, Events or Features, train a Model, predict Scores, respond Incidents.",
        "train m = robust_zscore(x)  // yields Scores",
        "Use the stage kind that matches the template's result type.";
    E0404: "template body does not yield its declared type",
        "The final expression of a template has a different type from the one after `->`.",
        "stage f(x: Series) -> Scores { preprocess y = fill(x) y }",
        "Change the declared type or the final expression.";
    E0405: "stage where a value is expected, or the reverse",
        "A stage reference was given to a parameter that takes a constant value, or a constant was given where a stage's output is expected.",
        "preprocess r = rolling(raw, window: other)",
        "Pass a literal (or a template parameter) to value parameters, and a stage to inputs.";
    E0406: "pipeline has no collect stage",
        "Every pipeline needs at least one collect stage to bring data in.",
        "pipeline p { every 30s predict s = zscore(x) }",
        "Add a collect stage.";
    E0407: "webhook collect without a webhook trigger",
        "A `webhook_events` collect stage receives the requests of the pipeline's `on webhook` trigger, so the pipeline needs one.",
        "pipeline p { every 30s collect a = webhook_events() }",
        "Add `on webhook \"/hooks/name\"` to the pipeline.";
    E0408: "webhook path used twice",
        "Two `on webhook` triggers, in one pipeline or in two, listen on the same path.",
        "on webhook \"/hooks/a\"  // in two pipelines",
        "Give each trigger its own path.";

    // ---- graph (check) ------------------------------------------------------------------
    E0501: "cycle between stages",
        "Stages refer to each other in a cycle, so no order can run them. The message gives the whole cycle.",
        "preprocess a = fill(b)\npreprocess b = diff(a)",
        "Break the cycle; data flows from collect stages down to respond stages.";
    E0502: "recursive template",
        "A stage template calls itself, directly or through other templates, so expanding it never ends. The message gives the whole chain.",
        "stage f(x: Series) -> Series { preprocess y = f(x) y }",
        "Remove the recursive call.";
    E0503: "templates nested too deeply",
        "Expanding a stage calls templates that call templates more than 32 levels deep. The limit keeps expansion bounded.",
        "stage t1(x: Series) -> Series { preprocess y = t2(x) y }  // ... t33",
        "Flatten the templates: call operators directly in some of them.";

    E0701: "test of an unknown pipeline",
        "A `test name for pipeline { ... }` names a pipeline that none of the compiled files defines. Compile the test together with the pipeline's file (`vigil test pipelines/`).",
        "test spike for chekout { expect count(alert.opened) == 1 }",
        "Name a pipeline of the files compiled with the test; the help suggests the closest name.";
    E0702: "invalid fixture",
        "A `given` gives a stage data the test cannot use: the value must be `csv(\"file.csv\")` (a `timestamp,value` file, relative to the test's file) or `points([[\"2024-01-01 00:00:00\", 1.5], ...])`, the file must exist, and every row must hold a timestamp and a finite number, in increasing time. Only stages whose output is Series can be given.",
        "given raw = csv(\"fixtures/missing.csv\")",
        "Point at an existing file, fix the row the message names, or give a Series stage.";
    E0703: "collect stage without a fixture",
        "`vigil test` runs nothing that reaches outside: every collect stage of the tested pipeline must be given its data.",
        "test t for checkout { expect max(scores.score) > 0.5 }",
        "Add `given <collect stage> = csv(\"fixture.csv\")` or `points([...])`.";
    E0704: "invalid expectation",
        "An `expect` reads something a run does not produce: an unknown function, a stage without that field (Series have `value` and `timestamp`; Scores `score`, `value`, `anomalous`, `expected`, `lower`, `upper`, `timestamp`; respond stages `opened`, `resolved`, `notifications`, `subject`, `body`), a stage of another port type, a bare stage name, or a stage that does not run in the test because every stage that reads it is given.",
        "expect max(alert.score) > 0.5",
        "Use `function(stage.field)` with a field of the stage's port type; `vigil explain E0704` lists them.";
    // ---- warnings -----------------------------------------------------------------------
    W0001: "unused stage",
        "A stage's output is not used by any other stage and it is not a respond stage, so its work is wasted.",
        "preprocess extra = diff(raw)  // nothing reads `extra`",
        "Use it, remove it, or start its name with `_` to keep it quietly.";
    W0002: "unused import",
        "An imported module or item is not used in the file.",
        "use std.detect",
        "Remove the `use`.";
    W0003: "pipeline has no trigger",
        "A pipeline with no `every`, `cron` or `on webhook` trigger never ticks on its own; it runs only under `vigil replay`, `vigil eval` and `vigil test`.",
        "pipeline p { collect x = csv(path: \"a.csv\") ... }",
        "Add a trigger, such as `every 30s`, unless the pipeline is meant for replay only.";
    W0004: "unused template parameter",
        "A stage template declares a parameter its body never uses.",
        "stage f(x: Series, k: Int = 3) -> Series { preprocess y = fill(x) y }",
        "Use it or remove it; start its name with `_` to keep it quietly.";
    W0005: "deprecated spelling",
        "The language has one way to say each thing; an older spelling is still accepted for one release, with this warning. `pending_for 2m` is now `pending for 2m` and `keep_firing_for 5m` is `keep_firing for 5m` (like `threshold(for: 2m)`, `shadow for 1d` and `maintenance ... for 2h`); an escalation names its target stage bare, like `fallback:` does: `escalate after 30m to manager`, not `to \"manager\"`. README.md, Upgrading, lists the changes.",
        "respond page = log(scores) {\n  pending_for 2m\n  escalate after 30m to \"manager\"\n}",
        "Write the spelling the help gives: `pending for 2m`, `escalate after 30m to manager`.";
    W0006: "window cannot hold min_samples",
        "A `zscore` stage (also behind `zscore_detector` and `robust_zscore`) scores a sample only when its trailing window holds at least `min_samples` samples. Where the input's step is known before anything runs (`synthetic(interval:)`, `prometheus.query_range(step:)`, `prometheus.scrape` under the pipeline's only `every` trigger, `resample(every:)`), a window that holds fewer at that step would never score anything. For other sources the engine warns once per stage at run time, when it sees the step.",
        "predict z = zscore(raw, window: 10s, min_samples: 30)  // raw: synthetic(), one sample a second",
        "Lengthen `window` to at least step × min_samples, or lower `min_samples` (the help gives both numbers).";
}

/// Markdown documentation of every code (the content of `docs/diagnostics.md`).
pub fn codes_markdown() -> String {
    use std::fmt::Write;
    let mut s = String::from(
        "# Diagnostic codes\n\nGenerated from `src/diagnostic/codes.rs` (`vigil explain CODE` prints one entry); a test keeps this file in sync.\n\n\
         Codes are stable and never reused. `E01xx`: syntax. `E02xx`: names and imports. `E03xx`: arguments, values and options. \
         `E04xx`: port types and stage kinds. `E05xx`: the stage graph and template expansion. `E07xx`: pipeline tests (`vigil test`). `W00xx`: warnings, which do not fail `vigil check` \
         unless `--deny-warnings` is given.\n\n| code | meaning |\n|---|---|\n",
    );
    for c in Code::ALL {
        let i = c.info();
        let _ = writeln!(s, "| [{}](#{}) | {} |", i.code, i.code.to_lowercase(), i.title);
    }
    for c in Code::ALL {
        let i = c.info();
        let _ = write!(s, "\n## {}\n\n**{}.** {}\n\n```vigil\n{}\n```\n\nFix: {}\n", i.code, i.title, i.explanation, i.example, i.fix);
    }
    s
}
