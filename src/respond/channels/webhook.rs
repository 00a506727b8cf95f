//! `webhook`: incidents posted as JSON, signed with HMAC-SHA256 when there is a secret.

use super::{describe_post, http_outcome, no_query, sign, Deliver, Notification, Sending};

/// A receiver of signed JSON.
pub struct Webhook {
    pub url: String,
    /// The HMAC key.
    pub secret: Option<String>,
    pub client: reqwest::Client,
}

impl Deliver for Webhook {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn destination(&self) -> String {
        no_query(&self.url)
    }

    fn knows_acknowledgements(&self) -> bool {
        true
    }

    fn payload(&self, n: &Notification) -> Option<serde_json::Value> {
        let i = &n.incident;
        Some(serde_json::json!({
            "version": "1", "transition": n.transition,
            "status": if n.transition == "acknowledged" { "acknowledged" } else { i.status.as_str() },
            "subject": n.subject, "body": n.body, "incident": i,
            // The same as the X-Vigil-Delivery header: one per incident transition, so a
            // receiver drops a repeat (a send retried after a crash or a takeover).
            "idempotency_key": n.dedupe,
        }))
    }

    fn describe(&self, n: &Notification) -> String {
        describe_post(self, &self.url, n)
    }

    fn send<'a>(&'a self, n: &'a Notification) -> Sending<'a> {
        Box::pin(async move {
            let body = self.payload(n).unwrap_or_default().to_string();
            let mut req = self.client.post(&self.url).header("content-type", "application/json").header("x-vigil-delivery", &n.dedupe);
            if let Some(key) = &self.secret {
                req = req.header("x-vigil-signature", format!("sha256={}", sign(key.as_bytes(), body.as_bytes())));
            }
            http_outcome(req.body(body).send().await).await
        })
    }
}
