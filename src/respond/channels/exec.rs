//! `exec`: a remediation command (argv, never a shell).

use std::time::Duration;

use super::{Deliver, Notification, Outcome, Sending};
use crate::expr::Template;

/// An `exec` remediation.
pub struct Exec {
    pub argv: Vec<Template>,
    pub timeout: Duration,
    pub env: Vec<String>,
    /// Every value a template puts into an argument must match this, else the run is
    /// refused (and audited).
    pub allow: regex::Regex,
    /// Run again after a crash interrupted it (default: at most once).
    pub retry_on_crash: bool,
}

/// The values a template may put into a command's arguments by default: a word of
/// letters, digits and `._:@=+-` that does not start with `-` (no spaces, no slashes, no
/// option). `allow:` on the stage replaces it.
pub const DEFAULT_EXEC_ALLOW: &str = "^[A-Za-z0-9_][A-Za-z0-9._:@=+-]*$";

impl Deliver for Exec {
    fn name(&self) -> &'static str {
        "exec"
    }

    fn destination(&self) -> String {
        self.argv.first().map(|a| a.source().to_owned()).unwrap_or_default()
    }

    fn retries_on_crash(&self) -> bool {
        self.retry_on_crash
    }

    fn describe(&self, n: &Notification) -> String {
        match exec_args(self, n) {
            Ok(args) => format!("exec {args:?}"),
            Err(why) => format!("exec refused: {why}"),
        }
    }

    fn send<'a>(&'a self, n: &'a Notification) -> Sending<'a> {
        Box::pin(run_exec(self, n))
    }
}

/// Output kept in the audit trail, per stream.
const EXEC_OUTPUT: usize = 4096;

/// The command's arguments for a notification; refused when a template put in a value
/// the stage's `allow` pattern does not match, or made an argument start with `-` that
/// its literal text does not.
///
/// # Errors
/// Why the arguments are refused (the offending value shortened).
pub fn exec_args(x: &Exec, n: &Notification) -> Result<Vec<String>, String> {
    let ctx = n.incident.template_context(&n.transition);
    let mut out = Vec::with_capacity(x.argv.len());
    for (i, t) in x.argv.iter().enumerate() {
        let arg = t.render_values(&ctx, &x.allow).map_err(|e| format!("argument {i} (`{}`): {e}", t.source()))?;
        if arg.starts_with('-') && !t.source().starts_with('-') {
            return Err(format!("argument {i} (`{}`) would start with `-`, which its template does not: refused", t.source()));
        }
        out.push(arg);
    }
    Ok(out)
}

/// Sends SIGKILL to a process group unless disarmed: a command that outlives its
/// timeout, or whose send is dropped, takes its children with it.
struct GroupKill(Option<i32>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            // SAFETY: kill(2) with a negative pid signals a process group; no memory is
            // touched.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

/// Spawns commands from one long-lived thread: a parent-death signal is tied to the
/// thread that forked, and the runtime's worker threads can end.
fn spawn_on_spawner(cmd: tokio::process::Command) -> std::io::Result<tokio::process::Child> {
    type Job = (tokio::process::Command, tokio::runtime::Handle, std::sync::mpsc::SyncSender<std::io::Result<tokio::process::Child>>);
    static SPAWNER: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<Job>>> = std::sync::OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("vigil-exec-spawner".into())
            .spawn(move || {
                for (mut cmd, handle, reply) in rx {
                    let _guard = handle.enter();
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("starting the exec spawner thread");
        std::sync::Mutex::new(tx)
    });
    let (reply, answer) = std::sync::mpsc::sync_channel(1);
    let handle = tokio::runtime::Handle::current();
    tx.lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, handle, reply))
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    answer.recv().map_err(|_| std::io::Error::other("the spawner thread is gone"))?
}

async fn run_exec(x: &Exec, n: &Notification) -> Outcome {
    let args = match exec_args(x, n) {
        Ok(a) => a,
        Err(why) => return Outcome::Fail(format!("not run: {why}")),
    };
    let Some((program, rest)) = args.split_first() else { return Outcome::Fail("the command is empty".into()) };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(rest).env_clear().kill_on_drop(true).stdin(std::process::Stdio::null());
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    for name in &x.env {
        if let Ok(v) = std::env::var(name) {
            cmd.env(name, v);
        }
    }
    cmd.env("VIGIL_INCIDENT", &n.incident.id).env("VIGIL_TRANSITION", &n.transition).env("VIGIL_KEY", &n.incident.key);
    // Its own process group (killed whole on timeout), and killed if the engine dies.
    cmd.process_group(0);
    let parent = std::process::id() as i32;
    // SAFETY: between fork and exec only async-signal-safe calls: prctl, getppid, _exit.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent {
                // The engine died before the signal was armed.
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let child = match spawn_on_spawner(cmd) {
        Ok(c) => c,
        Err(e) => return Outcome::Fail(format!("cannot run `{program}`: {e}")),
    };
    let mut group = GroupKill(child.id().map(|p| p as i32));
    let result = tokio::time::timeout(x.timeout, child.wait_with_output()).await;
    match result {
        Err(_) => Outcome::Fail(format!("`{program}` did not finish within {} ms and was killed", x.timeout.as_millis())),
        Ok(Err(e)) => Outcome::Fail(format!("`{program}` failed: {e}")),
        Ok(Ok(out)) => {
            // Finished: what it started in the background is its business.
            group.0 = None;
            let cut = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(EXEC_OUTPUT)]).into_owned();
            let detail = format!(
                "exit {}; stdout: {}; stderr: {}",
                out.status.code().map_or("signal".into(), |c| c.to_string()),
                cut(&out.stdout),
                cut(&out.stderr)
            );
            if out.status.success() {
                Outcome::Sent(detail)
            } else {
                Outcome::Fail(detail)
            }
        }
    }
}
