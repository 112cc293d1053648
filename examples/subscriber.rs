//! An example subscriber: reacts to every credential issued on any
//! platform (`ibl.*.assertion.issued`) with a durable JetStream consumer,
//! so that a restart resumes after the last message it acknowledged.
//!
//! It prints one JSON line per assertion issued and acknowledges the
//! message after that, so a crash in between means the message comes
//! again: the reaction must be idempotent, and it is keyed by the event id
//! (`Nats-Msg-Id`) so that a redelivery or a republished event (the relay
//! restarted from an older position) is recognised and skipped.
//!
//! Usage: NATS_URL=nats://127.0.0.1:4222 cargo run --example subscriber [DURABLE_NAME]

use std::collections::HashSet;

use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy};
use futures_util::StreamExt;
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let durable = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "assertion-notifier".into());
    let js = jetstream::new(async_nats::connect(&url).await?);
    let stream = js.get_stream("IBL_EVENTS").await?;
    let consumer = stream
        .get_or_create_consumer(
            &durable,
            pull::Config {
                durable_name: Some(durable.clone()),
                filter_subject: "ibl.*.assertion.issued".into(),
                ack_policy: AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await?;
    // A real service keeps the ids it reacted to with its own state (in
    // the same transaction as the reaction); in memory is enough here.
    let mut done: HashSet<String> = HashSet::new();
    let mut messages = consumer.messages().await?;
    eprintln!("subscribed as {durable}");
    while let Some(message) = messages.next().await {
        let message = message?;
        let id = message
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        if done.insert(id.clone()) {
            let event: Value = serde_json::from_slice(&message.payload)?;
            let platform = message.subject.split('.').nth(1).unwrap_or_default();
            println!(
                "{}",
                json!({
                    "event_id": id,
                    "platform": platform,
                    "assertion": event["entity_id"],
                    "credential": event["credential_id"],
                    "recipient": event["recipient"]["email"],
                })
            );
        }
        message.ack().await?;
    }
    Ok(())
}
