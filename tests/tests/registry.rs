//! The HTTP device validator against a registry served over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use schedule_core::adapters::http_validator::HttpDeviceValidator;
use schedule_core::model::{DeviceId, TenantId, Validation};
use schedule_core::ports::DeviceValidator;
use schedule_core::validation_cache::{CacheSettings, CachedValidator};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn registry(device: &str, response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/tenants/acme/devices/{device}")))
        .respond_with(response)
        .mount(&server)
        .await;
    server
}

fn ids(device: &str) -> (TenantId, DeviceId) {
    (
        TenantId::parse("acme").unwrap(),
        DeviceId::parse(device).unwrap(),
    )
}

/// Only a 404 or an explicit status other than ACTIVE says a device is inactive; every
/// other answer (401, 403, 400, 429, 5xx, a timeout, a body that is not JSON or has no
/// status) means the registry could not say, and is an error: retried, never cached.
#[tokio::test]
async fn only_a_404_or_a_non_active_status_is_invalid_and_other_answers_are_errors() {
    let cases = [
        (
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"status": "ACTIVE"})),
            Some(Validation::Valid),
        ),
        (
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"status": "SUSPENDED"})),
            Some(Validation::Invalid),
        ),
        (ResponseTemplate::new(404), Some(Validation::Invalid)),
        (ResponseTemplate::new(401), None),
        (ResponseTemplate::new(403), None),
        (ResponseTemplate::new(400), None),
        (ResponseTemplate::new(503), None),
        (ResponseTemplate::new(500), None),
        (ResponseTemplate::new(429), None),
        (ResponseTemplate::new(200).set_body_string("<html>"), None),
        (
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"state": "ACTIVE"})),
            None,
        ),
        (
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"status": 1})),
            None,
        ),
        (
            ResponseTemplate::new(200).set_delay(Duration::from_millis(800)),
            None,
        ),
    ];
    for (i, (response, want)) in cases.into_iter().enumerate() {
        let server = registry("dev-1", response).await;
        let validator =
            HttpDeviceValidator::new(&server.uri(), Duration::from_millis(300)).unwrap();
        let cached = CachedValidator::new(validator, CacheSettings::default());
        let (t, d) = ids("dev-1");
        match (cached.validate(&t, &d).await, want) {
            (Ok(got), Some(want)) => assert_eq!(got, want, "case {i}"),
            (Err(e), None) => {
                assert!(e.is_retryable(), "case {i}");
                assert!(e.to_string().contains("acme/dev-1"), "case {i}: {e}");
                assert!(cached.validate(&t, &d).await.is_err(), "case {i}");
                assert_eq!(cached.counts(), (0, 2), "case {i}: an error is not cached");
            }
            (got, want) => panic!("case {i}: got {got:?}, want {want:?}"),
        }
    }
}

#[tokio::test]
async fn an_unreachable_registry_is_a_retryable_error_and_is_not_cached() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let validator = HttpDeviceValidator::new(
        &format!("http://127.0.0.1:{port}"),
        Duration::from_millis(300),
    )
    .unwrap();
    let cached = CachedValidator::new(validator, CacheSettings::default());
    let (t, d) = ids("dev-1");
    assert!(cached.validate(&t, &d).await.is_err());
    assert!(cached.validate(&t, &d).await.is_err());
    assert_eq!(cached.counts(), (0, 2), "both calls went to the registry");
}
