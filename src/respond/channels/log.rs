//! `log`: incidents on the console and in `STATE/outbox.jsonl`.

use super::{Deliver, Notification, Outcome, Sending};

/// The console, and the outbox file when there is a state directory.
pub struct Log {
    pub outbox: Option<std::path::PathBuf>,
}

impl Deliver for Log {
    fn name(&self) -> &'static str {
        "log"
    }

    fn destination(&self) -> String {
        "console".into()
    }

    fn knows_acknowledgements(&self) -> bool {
        true
    }

    fn describe(&self, n: &Notification) -> String {
        format!("log: {}", n.subject)
    }

    fn send<'a>(&'a self, n: &'a Notification) -> Sending<'a> {
        Box::pin(async move { self.write(n) })
    }
}

impl Log {
    fn write(&self, n: &Notification) -> Outcome {
        let i = &n.incident;
        tracing::info!(target: "vigil::incident", pipeline = %i.pipeline, stage = %i.stage, status = %i.status, key = %i.key, "{}", n.subject);
        if let Some(path) = &self.outbox {
            let update = crate::respond::IncidentUpdate {
                id: i.id.clone(),
                stage: i.stage.clone(),
                labels: i.labels.clone(),
                key: i.key.clone(),
                status: i.status.clone(),
                series: i.series.first().cloned().unwrap_or_default(),
                score: i.score,
                value: i.value,
                ts: i.updated_at,
            };
            let record = serde_json::json!({
                "channel": "log", "pipeline": i.pipeline, "stage": i.stage, "message": n.subject,
                "transition": n.transition, "incident": i.id, "update": update,
            });
            if let Err(e) = crate::respond::append_line(path, &record.to_string()) {
                return Outcome::Retry(format!("cannot append to `{}`: {e}", path.display()));
            }
        }
        Outcome::Sent("logged".into())
    }
}
