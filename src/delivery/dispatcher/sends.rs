//! The sending half of the delivery loop: each claimed message through
//! its channel's transport. The sends touch no database (a webhook's
//! endpoint is read before they start); `Dispatcher::record` writes what
//! came of them.
use entity::states::Channel;
use futures::future::join_all;

use super::{Dispatcher, Finished};
use crate::{
    delivery::{OutgoingMessage, SendError},
    domain::PhoneNumber,
    error::CoreResult,
    service::{
        outbox::{Carrier, ClaimedMessage, SendResult},
        webhooks::{self, WebhookSend},
    },
};

impl Dispatcher {
    /// The sends of claimed messages, not yet started. Each send runs to
    /// its transport's time-out at most, so each lease covers one send.
    /// The sends touch no database: a webhook's endpoint is read here,
    /// before any send starts.
    pub(super) async fn start_sends(
        &self,
        claimed: Vec<ClaimedMessage>,
    ) -> CoreResult<Vec<impl Future<Output = CoreResult<Finished>> + '_>> {
        let targets = join_all(claimed.iter().map(|message| self.webhook_target(message)))
            .await
            .into_iter()
            .collect::<CoreResult<Vec<_>>>()?;
        Ok(claimed
            .into_iter()
            .zip(targets)
            .map(|(message, target)| self.send(message, target))
            .collect())
    }

    /// Where a webhook message goes, read at each attempt: a host that
    /// replaced its endpoint or secret gets pending events at the new one;
    /// one that disabled it gets none (the message dies). `None` for other
    /// channels, and for a webhook that must not go out.
    async fn webhook_target(&self, message: &ClaimedMessage) -> CoreResult<Option<WebhookSend>> {
        if message.channel != Channel::Webhook {
            return Ok(None);
        }
        webhooks::prepare_send(&self.core, message.id).await
    }

    async fn send_webhook(
        &self,
        message: &ClaimedMessage,
        target: Option<WebhookSend>,
    ) -> Result<String, SendError> {
        let Some(transport) = &self.webhook else {
            return Err(SendError::Permanent(
                "webhooks are not configured on this dispatcher".into(),
            ));
        };
        let Some(target) = target else {
            return Err(SendError::Permanent(
                "the host's webhook endpoint or the host is disabled".into(),
            ));
        };
        let timestamp = self.core.clock.now().timestamp();
        transport.send(&target, &message.body, timestamp).await
    }

    /// Sends one claimed message through its channel's transport.
    async fn send(
        &self,
        message: ClaimedMessage,
        target: Option<WebhookSend>,
    ) -> CoreResult<Finished> {
        let outgoing = OutgoingMessage {
            id: message.id,
            recipient: &message.recipient,
            subject: message.subject.as_deref(),
            body: &message.body,
            html_body: message.html_body.as_deref(),
        };
        let channel = message.channel;
        let country = (channel == Channel::Sms)
            .then(|| PhoneNumber::from_stored(message.recipient.clone()).region())
            .flatten();
        let (result, carrier) = match channel {
            Channel::Email => (self.email.send(&outgoing).await, None),
            Channel::Sms => self.send_sms(&message, &outgoing, country.as_deref()).await,
            Channel::Webhook => (self.send_webhook(&message, target).await, None),
        };
        let result = match result {
            Ok(provider_message_id) => SendResult::Sent {
                provider_message_id,
            },
            Err(error) => SendResult::Failed {
                class: error.class(),
                error: error.to_string(),
            },
        };
        Ok(Finished {
            message,
            carrier,
            result,
            country,
        })
    }

    /// Sends an SMS through the provider its route and the breakers pick,
    /// and works out, with the routing settings, where it goes next.
    async fn send_sms(
        &self,
        message: &ClaimedMessage,
        outgoing: &OutgoingMessage<'_>,
        country: Option<&str>,
    ) -> (Result<String, SendError>, Option<Carrier>) {
        let sms = &self.core.settings.delivery.sms;
        let route = sms.route(country);
        if route.is_empty() {
            let error = SendError::Permanent(format!(
                "no SMS provider is configured for {}",
                country.unwrap_or("this number's country")
            ));
            return (Err(error), None);
        }
        let assigned = message
            .provider
            .as_ref()
            .and_then(|p| route.iter().position(|name| name == p))
            .unwrap_or(0);
        let provider = self.sms.choose(&route, assigned).to_owned();
        let result = self.sms.send(&provider, outgoing).await;
        let before = if message.provider.as_deref() == Some(provider.as_str()) {
            message.provider_failures
        } else {
            0
        };
        let failures_here = before + i32::from(matches!(result, Err(SendError::Transient(_))));
        let (failover_to, keep_body) = match &result {
            Ok(_) => (
                None,
                sms.provider(&provider).is_some_and(|p| p.takes_receipts())
                    && sms.next_provider(country, &provider).is_some(),
            ),
            Err(error) => (
                sms.failover(
                    country,
                    &provider,
                    matches!(error, SendError::Permanent(_)),
                    u32::try_from(failures_here).unwrap_or(0),
                ),
                false,
            ),
        };
        let carrier = Carrier {
            provider,
            failures_here,
            failover_to,
            keep_body,
        };
        (result, Some(carrier))
    }
}
