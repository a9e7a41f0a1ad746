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

/// `PK` prefix of the item recording a fanned-out run's progress (`SCANNER#RUN#{run id}`).
pub const SCAN_RUN_PK_PREFIX: &str = "SCANNER#RUN#";
/// `SK` of a run's progress item.
pub const SCAN_RUN_SK: &str = "SEGMENTS";
/// Attribute (a number set) of the segments of a run that are complete.
pub const SEGMENTS_DONE_ATTR: &str = "segments_done";
/// Attribute holding how many segments the run has.
pub const TOTAL_SEGMENTS_ATTR: &str = "total_segments";

/// The key of the item recording the progress of run `run_id`. Like the horizon item it
/// starts with `SCANNER#` and carries no `status_shard`: never an occurrence, never indexed.
pub fn scan_run_key(run_id: &str) -> super::ScheduleKey {
    super::ScheduleKey {
        pk: format!("{SCAN_RUN_PK_PREFIX}{run_id}"),
        sk: SCAN_RUN_SK.to_owned(),
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
        let run = scan_run_key("full:2026-11-26T00:00:00Z:4");
        assert!(super::super::ScheduleKey::parse(&run.pk, &run.sk).is_err());
        assert!(!run.pk.starts_with("TENANT#"));
    }
}
