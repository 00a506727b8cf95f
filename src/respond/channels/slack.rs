//! `slack`: a Slack incoming webhook (its URL is a credential: never shown).

use super::{post_json, Deliver, Notification, Sending};

/// A Slack incoming webhook.
pub struct Slack {
    pub url: String,
    pub client: reqwest::Client,
}

impl Deliver for Slack {
    fn name(&self) -> &'static str {
        "slack"
    }

    fn destination(&self) -> String {
        "slack".into()
    }

    fn knows_acknowledgements(&self) -> bool {
        true
    }

    fn payload(&self, n: &Notification) -> Option<serde_json::Value> {
        Some(serde_json::json!({
            "text": n.subject,
            "blocks": [
                { "type": "section", "text": { "type": "mrkdwn", "text": format!("*{}*", n.subject) } },
                { "type": "section", "text": { "type": "mrkdwn", "text": format!("```{}```", n.body) } },
            ],
        }))
    }

    fn describe(&self, n: &Notification) -> String {
        format!("slack: {}", n.subject)
    }

    fn send<'a>(&'a self, n: &'a Notification) -> Sending<'a> {
        Box::pin(post_json(self, &self.client, &self.url, n))
    }
}
