//! The contract suite: every case on the in-memory twin and on the emulator.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use integration_tests::backends::{Emulator, Memory};
use integration_tests::contract;

macro_rules! contract_cases {
    ($($case:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    contract::$case(&Memory::default()).await;
                }
            )*
        }

        mod emulator {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if let Some(backend) = Emulator::from_env().await {
                        contract::$case(&backend).await;
                    }
                }
            )*
        }
    };
}

contract_cases!(
    item_round_trips,
    conditional_create_twice,
    transition_races_have_one_winner,
    failed_attempts_are_counted,
    sparse_index_follows_status,
    due_query_pages,
    due_query_spans_shards_and_midnight,
    send_batch_with_delays_is_never_early,
    redrive_to_dlq_after_max_receives,
    definitions_put_get_scan,
    definitions_get_many,
    leases_exclude_others_until_released,
    action_sink_sends_triggers_and_fifo_dedups,
    action_sink_send_batch_answers_each_entry,
    materialize_and_cancel_follow_the_version,
    scan_horizon_only_moves_forward,
    recorded_status_shards_only_grow_and_are_all_queried,
    sweeps_of_stuck_queued_items_are_conditional,
    operator_reads_a_tenants_day_and_deletes_definitions,
    tenant_modes_round_trip_and_stay_out_of_the_scan,
    large_payloads_are_stored_once_beside_small_occurrences,
    existing_reads_which_occurrences_are_stored,
    scan_run_segments_count_once,
    queued_before_the_send_and_put_back_when_refused,
);
