//! Device validation over HTTP: `GET {base}/tenants/{tenant}/devices/{device}`.
//! 200 with `"status":"ACTIVE"` → VALID; 404, or 200 with an explicit other status
//! (`"SUSPENDED"`) → INVALID. Everything else means the registry could not say, and is an
//! error (retried by the caller, never cached): a timeout or transport error, 429, any 5xx,
//! and also 400/401/403 and other answers — a misconfigured URL or credential must not read
//! as "every device is inactive" — and a 200 whose body is not JSON or carries no status.

use std::time::Duration;

use crate::error::ValidationError;
use crate::model::{DeviceId, TenantId, Validation};
use crate::ports::DeviceValidator;

#[derive(Debug, Clone)]
pub struct HttpDeviceValidator {
    client: reqwest::Client,
    base: String,
}

impl HttpDeviceValidator {
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?;
        Ok(Self {
            client,
            base: base_url.trim_end_matches('/').to_owned(),
        })
    }
}

impl DeviceValidator for HttpDeviceValidator {
    async fn validate(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
    ) -> Result<Validation, ValidationError> {
        // Ids are limited to [A-Za-z0-9_.:-], all safe in a URL path segment.
        let url = format!("{}/tenants/{tenant}/devices/{device}", self.base);
        let fail = |reason: String| ValidationError {
            tenant: tenant.to_string(),
            device: device.to_string(),
            reason,
        };
        let resp = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(Validation::Invalid);
        }
        if !status.is_success() {
            return Err(fail(format!("HTTP {status} from {url}")));
        }
        let body = resp.bytes().await.map_err(|e| fail(e.to_string()))?;
        let json: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| fail(format!("unreadable body from {url}: {e}")))?;
        match json.get("status").and_then(|s| s.as_str()) {
            Some("ACTIVE") => Ok(Validation::Valid),
            Some(_) => Ok(Validation::Invalid),
            None => Err(fail(format!(
                "body from {url} has no string field \"status\": {}",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ))),
        }
    }
}

/// Every device is valid: for local runs without a registry.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl DeviceValidator for AllowAll {
    async fn validate(
        &self,
        _tenant: &TenantId,
        _device: &DeviceId,
    ) -> Result<Validation, ValidationError> {
        Ok(Validation::Valid)
    }
}

/// The validator a deployment configures: the registry, or allow-all when no URL is set.
#[derive(Debug, Clone)]
pub enum RegistryValidator {
    Http(HttpDeviceValidator),
    AllowAll(AllowAll),
}

impl RegistryValidator {
    pub fn from_config(
        config: &crate::config::ValidationConfig,
    ) -> Result<Self, crate::error::ConfigError> {
        Ok(match &config.registry_url {
            Some(url) => {
                RegistryValidator::Http(HttpDeviceValidator::new(url, config.timeout).map_err(
                    |e| crate::error::ConfigError::Invalid {
                        name: "DEVICE_REGISTRY_URL",
                        value: url.clone(),
                        reason: format!("no HTTP client for it: {e}"),
                    },
                )?)
            }
            None => RegistryValidator::AllowAll(AllowAll),
        })
    }
}

impl DeviceValidator for RegistryValidator {
    async fn validate(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
    ) -> Result<Validation, ValidationError> {
        match self {
            RegistryValidator::Http(v) => v.validate(tenant, device).await,
            RegistryValidator::AllowAll(v) => v.validate(tenant, device).await,
        }
    }
}
