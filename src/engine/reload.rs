//! Hot reload: the controller that recompiles and applies, and the watcher that asks it
//! to.
//!
//! The watcher only sends a message; the one controller task owns reloading. It
//! recompiles everything off the async threads; invalid sources are `rejected` (the old
//! plan keeps running, the diagnostics are logged and reported); a new plan is applied
//! make-before-break by [`Engine::apply`], and a stage that cannot be built leaves the
//! old plan running (`rolled_back`). Requests that arrive during a reload are coalesced
//! into the next one.
//!
//! A half-written file is never applied: after compiling, the controller reads every
//! source again and, if any changed meanwhile, drops the result and waits for the
//! watcher's next message (the change that interrupted it sends one).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{Engine, ReloadOutcome, ReloadStatus, StageChanges};
use crate::compile::{compile_with, CompileOptions};
use crate::source::Origin;

/// A request to reload, from the watcher, SIGHUP or `POST /api/v1/reload`.
#[derive(Debug)]
pub struct ReloadRequest {
    /// Why: `files changed`, `SIGHUP`, `api`.
    pub reason: &'static str,
    /// Where to send the outcome, for callers that wait for it.
    pub reply: Option<oneshot::Sender<Option<ReloadStatus>>>,
}

/// The controller task: reloads on each request until the channel closes.
///
/// Cancellation: dropping the task between reloads loses nothing; a reload in progress
/// either applies completely or not at all.
pub async fn run_controller(
    engine: Arc<Engine>,
    paths: Vec<PathBuf>,
    options: CompileOptions,
    mut requests: mpsc::Receiver<ReloadRequest>,
    mut version: String,
) {
    while let Some(first) = requests.recv().await {
        let mut replies = vec![first.reply];
        let mut reasons = vec![first.reason];
        while let Ok(more) = requests.try_recv() {
            replies.push(more.reply);
            reasons.push(more.reason);
        }
        reasons.dedup();
        tracing::debug!(reasons = ?reasons, "reloading");
        let status = reload_once(&engine, &paths, &options, &mut version).await;
        for r in replies.into_iter().flatten() {
            let _ = r.send(status.clone());
        }
    }
}

/// One reload. Returns the reload's status, or `None` when nothing was done (the sources
/// did not change, or changed again while being compiled).
pub async fn reload_once(engine: &Engine, paths: &[PathBuf], options: &CompileOptions, version: &mut String) -> Option<ReloadStatus> {
    let (p, o) = (paths.to_vec(), options.clone());
    let compiled = tokio::task::spawn_blocking(move || compile_with(&p, &o)).await;
    let out = match compiled {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "reload rejected: the sources cannot be read");
            engine.record_reload(ReloadOutcome::Rejected, version, &StageChanges::default(), vec![e.to_string()], Vec::new());
            return last(engine);
        }
        Err(e) => {
            tracing::error!(error = %e, "reload failed");
            return None;
        }
    };
    if out.version == *version {
        let failed = last(engine).is_some_and(|r| r.outcome == "rejected" || r.outcome == "rolled_back");
        if !failed {
            tracing::debug!("sources unchanged; nothing to reload");
            return None;
        }
        tracing::info!(version = %out.version, "the sources are back to the running version: the configuration is good again");
        engine.record_reload(ReloadOutcome::Restored, &out.version, &StageChanges::default(), Vec::new(), Vec::new());
        return last(engine);
    }
    if changed_since_read(&out.sources) {
        tracing::debug!("sources changed while compiling; waiting for the next change");
        return None;
    }
    let Some(plan) = &out.plan else {
        let rendered = crate::diagnostic::render_all(&out.diagnostics.0, &out.sources, false);
        tracing::warn!("reload rejected: the old plan keeps running\n{rendered}");
        let diags = out.diagnostics.0.iter().filter(|d| d.is_error()).map(|d| crate::diagnostic::render(d, &out.sources, false)).collect();
        let errors: Vec<_> = out.diagnostics.0.iter().filter(|d| d.is_error()).cloned().collect();
        let structured = match crate::diagnostic::to_json(&errors, &out.sources) {
            serde_json::Value::Array(list) => list,
            _ => Vec::new(),
        };
        engine.record_reload(ReloadOutcome::Rejected, &out.version, &StageChanges::default(), diags, structured);
        return last(engine);
    };
    match engine.apply(plan, &out.sources, &out.version).await {
        Ok(_) => *version = out.version.clone(),
        Err(e) => {
            tracing::error!(error = %e, "reload rolled back: the old plan keeps running");
            engine.record_reload(ReloadOutcome::RolledBack, &out.version, &StageChanges::default(), vec![e.to_string()], Vec::new());
        }
    }
    last(engine)
}

fn last(engine: &Engine) -> Option<ReloadStatus> {
    engine.shared.status.read().ok().and_then(|s| s.last_reload.clone())
}

/// Whether any user file compiled differs from what is on disk now.
fn changed_since_read(sources: &crate::source::SourceMap) -> bool {
    sources.files().filter(|f| f.origin == Origin::User).any(|f| match &f.path {
        Some(p) => std::fs::read(p).map_or(true, |now| now != f.text.as_bytes()),
        None => false,
    })
}

/// A running file watcher; dropping it stops watching.
pub struct Watcher {
    _inner: Box<dyn notify::Watcher + Send>,
}

/// Watches `paths` (directories recursively; a file through its directory, so that a
/// save by rename-over or a symlink swap is seen) and, once no event has come for
/// `debounce`, sends one reload request. Uses the platform's notifications, or polling
/// every `debounce` when `poll` is set or notifications are unavailable.
///
/// # Errors
/// When a path cannot be watched.
pub fn spawn_watcher(
    paths: &[PathBuf],
    debounce: Duration,
    poll: bool,
    requests: mpsc::Sender<ReloadRequest>,
) -> Result<Watcher, notify::Error> {
    use notify::{EventKind, RecursiveMode};
    let (events, rx) = std::sync::mpsc::channel::<()>();
    let handler = move |res: notify::Result<notify::Event>| {
        let Ok(ev) = res else { return };
        let relevant = !matches!(ev.kind, EventKind::Access(_))
            && ev.paths.iter().any(|p| p.extension().is_some_and(|e| e == "vigil") || p.extension().is_none());
        if relevant {
            let _ = events.send(());
        }
    };
    let mut watcher: Box<dyn notify::Watcher + Send> = if poll {
        Box::new(notify::PollWatcher::new(
            handler,
            notify::Config::default().with_poll_interval(debounce.max(Duration::from_millis(50))).with_compare_contents(true),
        )?)
    } else {
        match notify::recommended_watcher(handler.clone()) {
            Ok(w) => Box::new(w),
            Err(e) => {
                tracing::warn!(error = %e, "file notifications unavailable; polling instead");
                Box::new(notify::PollWatcher::new(
                    handler,
                    notify::Config::default().with_poll_interval(debounce.max(Duration::from_millis(50))).with_compare_contents(true),
                )?)
            }
        }
    };
    for p in paths {
        if p.is_dir() {
            watcher.watch(p, RecursiveMode::Recursive)?;
        } else {
            let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            watcher.watch(dir, RecursiveMode::NonRecursive)?;
        }
    }
    std::thread::Builder::new()
        .name("vigil-watch".into())
        .spawn(move || {
            // Debounce: after an event, wait until the files have been quiet for `debounce`.
            while rx.recv().is_ok() {
                loop {
                    match rx.recv_timeout(debounce) {
                        Ok(()) => continue,
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
                if requests.blocking_send(ReloadRequest { reason: "files changed", reply: None }).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| notify::Error::generic(&e.to_string()))?;
    Ok(Watcher { _inner: watcher })
}
