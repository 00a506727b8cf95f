//! `exec`: a remediation command. Environment: none.

use super::common::{self, Common, Message, DEFAULT_SUBJECT};
use crate::expr::Template;
use crate::operators::prelude::*;
use crate::operators::rules;
use crate::respond::channels;

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "exec",
    kind: StageKind::Respond,
    summary: "Runs a remediation command (argv, never a shell).",
    doc: "Runs `command` (argv list; the first element is the program; elements may be templates) on each incident transition, without a shell, with a timeout after which it is killed, and only the environment variables in `env`. Output is kept in the audit trail.",
    inputs: &[input("input", RESPONDABLE, "The scores to page on (a `correlate` stage's situations too), or another respond stage's incidents (`when:` routes them by `severity`, `labels`, `score`...).")],
    params: &[
        p("command", Ty::List(Scalar::String), Required, "The program and its arguments."),
        min("timeout", Ty::Duration, Dur(30_000), 1.0, "Kill the command after this."),
        p("env", Ty::List(Scalar::String), Strs(&[]), "Environment variables passed through."),
        p(
            "allow",
            Ty::String,
            Str("^[A-Za-z0-9_][A-Za-z0-9._:@=+-]*$"),
            "Regular expression every value a template puts into an argument must match, else the run is refused and audited (an argument may never start with `-` unless its literal text does).",
        ),
        p("retry_on_crash", Ty::Bool, Bool(false), "Run the command again after a crash interrupted it (by default a remediation runs at most once)."),
    ],
    output: Output::Fixed(Ty::Incidents),
    example: r#"respond fix = exec(scores, command: ["systemctl", "restart", "{{ labels.service }}"], timeout: 1m)"#,
};

/// The parameters of `exec`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub command: Vec<String>,
    pub timeout: Ms,
    pub env: Vec<String>,
    pub allow: String,
    pub retry_on_crash: bool,
    #[serde(flatten)]
    pub common: Common,
}

impl Params {
    fn allow(&self) -> &str {
        if self.allow.is_empty() {
            channels::DEFAULT_EXEC_ALLOW
        } else {
            &self.allow
        }
    }
}

/// The `exec` operator.
pub struct Exec;

impl Definition for Exec {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn validate(p: &Params) -> Vec<Refusal> {
        let mut out = Vec::new();
        p.common.validate(&mut out);
        for a in &p.command {
            rules::template("command", a, &mut out);
        }
        if p.command.is_empty() {
            out.push(Refusal::new(
                "command",
                "`command` is empty",
                "give the program and its arguments, such as `[\"systemctl\", \"restart\", \"{{ labels.service }}\"]`",
            ));
        }
        rules::regex("allow", p.allow(), &mut out);
        out
    }

    fn build(p: Params, node: &StageNode, env: &BuildEnv) -> Result<Step, BuildError> {
        let invalid = BuildError::Invalid;
        let argv = p.command.iter().map(|a| Template::new(a).map_err(invalid)).collect::<Result<Vec<_>, _>>()?;
        if argv.is_empty() {
            return Err(invalid("`command` is empty: give the program and its arguments".into()));
        }
        let allow = regex::Regex::new(p.allow()).map_err(|e| invalid(format!("`allow` is not a valid regular expression: {e}")))?;
        let exec = channels::Exec {
            argv,
            timeout: std::time::Duration::from_millis(p.timeout.0.max(1)),
            env: p.env,
            allow,
            retry_on_crash: p.retry_on_crash,
        };
        let message = Message { subject: DEFAULT_SUBJECT, body: None, resend_ms: None };
        common::build(p.common, message, node, env, || Ok(Box::new(exec)))
    }
}
