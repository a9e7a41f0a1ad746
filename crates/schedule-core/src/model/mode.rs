//! Per-tenant rollout modes, stored as one settings row per tenant in the definitions
//! table (`PK = TENANT#{tenant}`, `SK = SETTINGS#mode`) so an operator changes them
//! without a deploy. Definition rows are `SK = STEP#…`; readers of definitions skip
//! every `SETTINGS#` row (neither a definition nor an invalid one).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ids::TenantId;

/// What the new flow does for one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantMode {
    /// Nothing: no occurrence is materialized by the scanner or definition sync.
    Off,
    /// The flow runs to the end, but at the due time the executor records the trigger it
    /// would have sent (on the item and, if configured, on a shadow queue) and sends
    /// nothing to the action trigger queue.
    Shadow,
    /// Triggers go to the action trigger queue.
    Active,
}

impl TenantMode {
    pub const ALL: [TenantMode; 3] = [TenantMode::Off, TenantMode::Shadow, TenantMode::Active];

    pub fn as_str(self) -> &'static str {
        match self {
            TenantMode::Off => "off",
            TenantMode::Shadow => "shadow",
            TenantMode::Active => "active",
        }
    }

    /// Whether occurrences are materialized for the tenant.
    pub fn materializes(self) -> bool {
        self != TenantMode::Off
    }
}

impl fmt::Display for TenantMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tenant mode {value:?}: expected off, shadow or active")]
pub struct ModeParseError {
    pub value: String,
}

impl FromStr for TenantMode {
    type Err = ModeParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(TenantMode::Off),
            "shadow" => Ok(TenantMode::Shadow),
            "active" => Ok(TenantMode::Active),
            _ => Err(ModeParseError {
                value: s.to_owned(),
            }),
        }
    }
}

/// The `SK` prefix of settings rows in the definitions table.
pub const SETTINGS_SK_PREFIX: &str = "SETTINGS#";
/// The `SK` of a tenant's mode row.
pub const MODE_SK: &str = "SETTINGS#mode";
/// The attribute holding the mode on that row.
pub const MODE_ATTR: &str = "mode";

/// The key of a tenant's mode row in the definitions table.
pub fn mode_key(tenant: &TenantId) -> (String, String) {
    (format!("TENANT#{tenant}"), MODE_SK.to_owned())
}

/// Whether a definitions-table row with this `SK` is a settings row, not a definition.
pub fn is_settings_row(sk: &str) -> bool {
    sk.starts_with(SETTINGS_SK_PREFIX)
}

/// One tenant's stored mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSetting {
    pub tenant_id: TenantId,
    pub mode: TenantMode,
    /// When it was last set (RFC 3339), if recorded.
    pub updated_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_and_reject_others() {
        for m in TenantMode::ALL {
            assert_eq!(m.as_str().parse::<TenantMode>(), Ok(m));
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{m}\""));
        }
        let err = "Active".parse::<TenantMode>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid tenant mode \"Active\": expected off, shadow or active"
        );
        assert!(!TenantMode::Off.materializes() && TenantMode::Shadow.materializes());
    }

    #[test]
    fn the_mode_row_is_a_settings_row_and_no_step_is() {
        let t = TenantId::parse("acme").unwrap();
        let (pk, sk) = mode_key(&t);
        assert_eq!((pk.as_str(), sk.as_str()), ("TENANT#acme", "SETTINGS#mode"));
        assert!(is_settings_row(&sk));
        assert!(!is_settings_row("STEP#SETTINGS#mode"));
    }
}
