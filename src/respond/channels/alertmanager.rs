//! `alertmanager`: incidents pushed as alerts (`/api/v2/alerts`), re-sent while firing.

use std::collections::BTreeMap;

use super::{describe_post, no_query, post_json, Deliver, Notification, Sending};
use crate::expr::Template;

/// An Alertmanager.
pub struct Alertmanager {
    pub url: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: Vec<(String, Template)>,
    pub client: reqwest::Client,
}

impl Deliver for Alertmanager {
    fn name(&self) -> &'static str {
        "alertmanager"
    }

    fn destination(&self) -> String {
        no_query(&self.url)
    }

    fn payload(&self, n: &Notification) -> Option<serde_json::Value> {
        let i = &n.incident;
        let ctx = i.template_context(&n.transition);
        let mut l: BTreeMap<String, String> = i.labels.clone();
        l.insert("alertname".into(), "VigilIncident".into());
        l.insert("pipeline".into(), i.pipeline.clone());
        l.insert("stage".into(), i.stage.clone());
        l.insert("incident".into(), i.key.clone());
        l.extend(self.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut a: BTreeMap<String, String> = self.annotations.iter().map(|(k, t)| (k.clone(), t.render(&ctx))).collect();
        a.entry("summary".into()).or_insert_with(|| n.subject.clone());
        a.entry("description".into()).or_insert_with(|| n.body.clone());
        let mut alert = serde_json::json!({
            "labels": l, "annotations": a, "startsAt": crate::time::format_rfc3339(i.opened_at),
            "generatorURL": format!("vigil://{}/{}", i.pipeline, i.stage),
        });
        match i.resolved_at {
            // Resolved: ended now (or when the data said, if earlier).
            Some(t) if i.status == "resolved" => alert["endsAt"] = crate::time::format_rfc3339(t.min(crate::time::now_ms())).into(),
            // While firing: valid for a while past the next re-send.
            _ => alert["endsAt"] = crate::time::format_rfc3339(crate::time::now_ms() + 3_600_000).into(),
        }
        Some(serde_json::json!([alert]))
    }

    fn describe(&self, n: &Notification) -> String {
        describe_post(self, &self.url, n)
    }

    fn send<'a>(&'a self, n: &'a Notification) -> Sending<'a> {
        Box::pin(async move {
            let target = format!("{}/api/v2/alerts", self.url.trim_end_matches('/'));
            post_json(self, &self.client, &target, n).await
        })
    }
}
