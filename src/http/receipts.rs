//! `POST /delivery/receipts/{provider}`: SMS providers report what became
//! of a message. Twilio-style providers post a form signed with
//! `X-Twilio-Signature` (HMAC-SHA1 of the callback URL and the sorted
//! parameters, under the auth token); every other provider posts JSON
//! `{"messageId", "status", "at", "error"}` signed with `X-Signature:
//! sha256=<hex HMAC-SHA256 of the raw body>` under its `receipt_secret`.
//! Nothing is read or changed before the signature holds.
use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::error::ApiError;
use crate::{
    config::{SmsProviderSettings, SmsTransportKind},
    service::outbox::{self, Receipt, ReceiptStatus},
    state::Core,
};

pub async fn receive(
    State(core): State<Core>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match read_receipt(&core, &provider, &headers, &body).await {
        Ok(Some(receipt)) => match outbox::apply_receipt(&core, &receipt).await {
            Ok(_) => StatusCode::NO_CONTENT.into_response(),
            Err(error) => ApiError::from(error).into_response(),
        },
        // A status with nothing to record (Twilio's `queued`, `sending`...).
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => error.into_response(),
    }
}

async fn read_receipt(
    core: &Core,
    name: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Option<Receipt>, ApiError> {
    let provider = core
        .settings
        .delivery
        .sms
        .provider(name)
        .ok_or(ApiError::UnknownSmsProvider)?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match provider.transport {
        SmsTransportKind::Twilio => {
            let url = format!(
                "{}/delivery/receipts/{name}",
                core.settings.public_base_url()
            );
            twilio_receipt(&provider, &url, header("x-twilio-signature"), body)
        }
        _ => generic_receipt(&provider, header("x-signature"), body).map(Some),
    }
}

/// Twilio's receipt: verified, then `MessageSid`, `MessageStatus` and the
/// optional `ErrorCode`.
fn twilio_receipt(
    provider: &SmsProviderSettings,
    url: &str,
    signature: Option<&str>,
    body: &[u8],
) -> Result<Option<Receipt>, ApiError> {
    let token = provider
        .auth_token
        .as_ref()
        .ok_or(ApiError::ReceiptSignatureInvalid(
            "this provider has no auth_token to verify receipts with",
        ))?;
    let signature = signature.ok_or(ApiError::ReceiptSignatureInvalid(
        "the X-Twilio-Signature header is missing",
    ))?;
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(|_| {
        ApiError::field(
            "body",
            "invalid_form",
            "must be an application/x-www-form-urlencoded form",
        )
    })?;
    if !twilio_signature_matches(token.expose_secret(), url, &params, signature) {
        return Err(ApiError::ReceiptSignatureInvalid(
            "the X-Twilio-Signature header does not match the URL and parameters",
        ));
    }
    let param = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let sid = param("MessageSid")
        .ok_or_else(|| ApiError::field("MessageSid", "required", "MessageSid is required"))?;
    let status = match param("MessageStatus") {
        Some("sent") => ReceiptStatus::Sent,
        Some("delivered" | "read") => ReceiptStatus::Delivered,
        Some("undelivered") => ReceiptStatus::Undelivered,
        Some("failed" | "canceled") => ReceiptStatus::Failed,
        Some("accepted" | "scheduled" | "queued" | "sending" | "receiving" | "received") => {
            return Ok(None);
        }
        Some(other) => {
            return Err(ApiError::field(
                "MessageStatus",
                "unknown_status",
                format!("MessageStatus {other:?} is not a Twilio message status"),
            ));
        }
        None => {
            return Err(ApiError::field(
                "MessageStatus",
                "required",
                "MessageStatus is required",
            ));
        }
    };
    Ok(Some(Receipt {
        provider: provider.name.clone(),
        provider_message_id: sid.to_owned(),
        status,
        at: None,
        error: param("ErrorCode").map(|code| format!("error {code}")),
    }))
}

/// Twilio's scheme: base64 of HMAC-SHA1 over the URL followed by every
/// parameter, sorted, as name then value.
fn twilio_signature_matches(
    token: &str,
    url: &str,
    params: &[(String, String)],
    signature: &str,
) -> bool {
    let Ok(expected) = base64::engine::general_purpose::STANDARD.decode(signature) else {
        return false;
    };
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()) else {
        return false;
    };
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac.verify_slice(&expected).is_ok()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenericReceipt {
    message_id: Option<String>,
    status: Option<String>,
    at: Option<String>,
    error: Option<String>,
}

fn generic_receipt(
    provider: &SmsProviderSettings,
    signature: Option<&str>,
    body: &[u8],
) -> Result<Receipt, ApiError> {
    let secret = provider
        .receipt_secret
        .as_ref()
        .ok_or(ApiError::ReceiptSignatureInvalid(
            "this provider has no receipt_secret to verify receipts with",
        ))?;
    let signature = signature.ok_or(ApiError::ReceiptSignatureInvalid(
        "the X-Signature header is missing",
    ))?;
    let expected = signature
        .strip_prefix("sha256=")
        .and_then(|hex_digest| hex::decode(hex_digest).ok())
        .ok_or(ApiError::ReceiptSignatureInvalid(
            "the X-Signature header must be sha256=<hex HMAC-SHA256 of the body>",
        ))?;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.expose_secret().as_bytes())
        .map_err(|_| ApiError::ReceiptSignatureInvalid("the receipt_secret cannot key an HMAC"))?;
    mac.update(body);
    if mac.verify_slice(&expected).is_err() {
        return Err(ApiError::ReceiptSignatureInvalid(
            "the X-Signature header does not match the body",
        ));
    }
    let receipt: GenericReceipt =
        serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    let message_id = receipt
        .message_id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::field("messageId", "required", "messageId is required"))?;
    let status = match receipt.status.as_deref() {
        Some("delivered") => ReceiptStatus::Delivered,
        Some("undelivered") => ReceiptStatus::Undelivered,
        Some("failed") => ReceiptStatus::Failed,
        Some("sent") => ReceiptStatus::Sent,
        Some(_) => {
            return Err(ApiError::field(
                "status",
                "unknown_status",
                "status must be delivered, undelivered, failed or sent",
            ));
        }
        None => return Err(ApiError::field("status", "required", "status is required")),
    };
    let at = receipt
        .at
        .map(|at| {
            DateTime::parse_from_rfc3339(&at)
                .map(|at| at.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::field("at", "invalid_time", "at must be an RFC 3339 date-time")
                })
        })
        .transpose()?;
    Ok(Receipt {
        provider: provider.name.clone(),
        provider_message_id: message_id,
        status,
        at,
        error: receipt.error.filter(|e| !e.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn documented_params() -> Vec<(String, String)> {
        // Deliberately not in order: the scheme sorts them.
        [
            ("To", "+18005551212"),
            ("Digits", "1234"),
            ("CallSid", "CA1234567890ABCDE"),
            ("From", "+14158675309"),
            ("Caller", "+14158675309"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// The worked example of Twilio's request-validation documentation.
    #[test]
    fn twilio_signature_matches_the_documented_vector_and_nothing_else() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let signature = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
        assert!(twilio_signature_matches(
            "12345",
            url,
            &documented_params(),
            signature
        ));
        assert!(!twilio_signature_matches(
            "54321",
            url,
            &documented_params(),
            signature
        ));
        assert!(!twilio_signature_matches(
            "12345",
            &format!("{url}&x=1"),
            &documented_params(),
            signature
        ));
        let mut tampered = documented_params();
        tampered[1].1 = "9999".into();
        assert!(!twilio_signature_matches(
            "12345", url, &tampered, signature
        ));
        assert!(!twilio_signature_matches(
            "12345",
            url,
            &documented_params(),
            "not base64 at all"
        ));
    }
}
