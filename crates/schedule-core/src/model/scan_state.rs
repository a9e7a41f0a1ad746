//! The scanner's own state in the schedule table: one small item recording how far ahead
//! a complete daily run has materialized every definition. Definition sync reads it to
//! know which window a same-day change must cover. The key format lives here only.

/// `PK` of the scanner's state item. No occurrence key starts with `SCANNER#`
/// (they start with `TENANT#`), and the item carries no `status_shard`, so it stays out
/// of the sparse index.
pub const SCAN_STATE_PK: &str = "SCANNER#STATE";
/// `SK` of the horizon item.
pub const SCAN_HORIZON_SK: &str = "HORIZON";
/// Attribute holding the end (exclusive) of the window a complete run covered.
pub const COVERED_TO_ATTR: &str = "covered_to";

/// Attribute (on the same item) holding the largest `STATUS_SHARDS` any writer or
/// scheduler run has used: the due query reads every shard up to it, so lowering the
/// setting strands nothing in the shards no longer written. Only ever grows.
pub const MAX_STATUS_SHARDS_ATTR: &str = "max_status_shards";

/// The key of the horizon item.
pub fn scan_horizon_key() -> super::ScheduleKey {
    super::ScheduleKey {
        pk: SCAN_STATE_PK.to_owned(),
        sk: SCAN_HORIZON_SK.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_key_cannot_collide_with_an_occurrence() {
        let key = scan_horizon_key();
        assert!(super::super::ScheduleKey::parse(&key.pk, &key.sk).is_err());
        assert!(!key.pk.starts_with("TENANT#"));
    }
}
