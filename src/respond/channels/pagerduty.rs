//! `pagerduty`: Events API v2 `trigger`, `acknowledge` and `resolve` (the routing key is
//! a credential: never shown).

use super::{describe_post, post_json, Deliver, Notification, Sending};

/// A PagerDuty integration.
pub struct PagerDuty {
    pub routing_key: String,
    pub severity: String,
    pub url: String,
    pub client: reqwest::Client,
}

impl Deliver for PagerDuty {
    fn name(&self) -> &'static str {
        "pagerduty"
    }

    fn destination(&self) -> String {
        "pagerduty".into()
    }

    fn knows_acknowledgements(&self) -> bool {
        true
    }

    fn payload(&self, n: &Notification) -> Option<serde_json::Value> {
        let i = &n.incident;
        let action = match n.transition.as_str() {
            "resolved" => "resolve",
            "acknowledged" => "acknowledge",
            _ => "trigger",
        };
        let mut v = serde_json::json!({ "routing_key": self.routing_key, "event_action": action, "dedup_key": i.key });
        if action == "trigger" {
            v["payload"] = serde_json::json!({
                "summary": n.subject, "source": format!("vigil/{}", i.pipeline), "severity": self.severity,
                "timestamp": crate::time::format_rfc3339(i.updated_at),
                "custom_details": { "incident": i.id, "series": i.series, "score": i.score, "value": i.value, "labels": i.labels },
            });
        }
        Some(v)
    }

    fn describe(&self, n: &Notification) -> String {
        describe_post(self, &self.url, n)
    }

    fn send<'a>(&'a self, n: &'a Notification) -> Sending<'a> {
        Box::pin(post_json(self, &self.client, &self.url, n))
    }
}

#[cfg(test)]
mod tests {
    use super::super::Channel;
    use super::*;
    use crate::expr::Template;

    #[test]
    fn dry_runs_never_print_the_pagerduty_routing_key() {
        let c = Channel {
            kind: Box::new(PagerDuty {
                routing_key: "R0UTING-SECRET".into(),
                severity: "error".into(),
                url: "https://events.pagerduty.com/v2/enqueue".into(),
                client: reqwest::Client::new(),
            }),
            subject: Template::new("{{ incident.status }}").unwrap(),
            body: None,
        };
        let i = crate::respond::Incident {
            id: "i1".into(),
            key: "k".into(),
            pipeline: "p".into(),
            stage: "p.page".into(),
            series: vec!["s".into()],
            labels: Default::default(),
            status: "firing".into(),
            acknowledged: false,
            acknowledged_by: None,
            acknowledged_at: None,
            opened_at: 0,
            updated_at: 0,
            resolved_at: None,
            resolved_by: None,
            score: 1.0,
            value: 1.0,
            silenced: false,
            feedback: None,
            feedback_note: None,
            notifications: 0,
            last_notified_at: None,
            samples: Vec::new(),
        };
        let n = Notification {
            dedupe: "d".into(),
            incident_id: "i1".into(),
            stage: "p.page".into(),
            channel: "pagerduty".into(),
            transition: "firing".into(),
            subject: "firing".into(),
            body: String::new(),
            incident: i,
        };
        let shown = c.describe(&n);
        assert!(!shown.contains("R0UTING-SECRET") && shown.contains("\"routing_key\":\"***\""), "{shown}");
    }
}
