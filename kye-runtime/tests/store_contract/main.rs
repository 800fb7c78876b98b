//! The store contract: the same cases against every store (`cargo test -p kye-runtime --test
//! store_contract`).
//!
//! Each case is a function taking the store's [`harness::Harness`]: how to make an empty
//! store of that kind, how to look at it with its own tools, and where it legitimately
//! differs from the others (asserted for what it is, never skipped). A store joins the suite
//! with one line at the bottom of this file, `store_contract!(name, harness::function);`.
//!
//! - `layout`: tables and columns (or documents) as docs/store.md says, read back
//! - `writes`: upsert by primary index, secondary-index clashes, child rows, nested records,
//!   item errors that leave nothing behind
//! - `reads`: lookups by any index, filters and limits
//! - `history`: rejects, drift, runs, resume state, one writer and many readers, dead runs
//! - `schema`: schema changes between runs
//! - `hostile`: hostile names and values
//! - `crash`: writers killed mid-batch (child processes)
//! - `lineage`: transformers' lineage with its output, and records' content hashes
//! - `runtime`: the same seen through the runtime, fetching from a loopback API
//!
//! What is specific to one store (SQLite's typed columns, locks and foreign files; the
//! directory store's file names and torn lines) is in `store_specific`.

mod crash;
mod fixtures;
mod harness;
mod history;
mod hostile;
mod layout;
mod lineage;
mod pg;
mod reads;
mod runtime;
mod schema;
mod writes;

/// The contract's cases for one store: `store_contract!(module_name, harness_function)`.
macro_rules! store_contract {
    ($store:ident, $harness:path) => {
        mod $store {
            store_contract!(@cases $harness;
                layout::tables_and_columns_as_documented,
                layout::composite_references,
                layout::parent_columns_named_apart_from_value,
                layout::value_objects_stay_with_their_parent,
                writes::upsert_by_primary_index,
                writes::secondary_index_clash_is_reported_per_item,
                writes::secondary_index_clashes_within_a_batch_and_on_replace,
                writes::items_come_back_whole_and_in_order,
                writes::a_refused_record_leaves_nothing_behind,
                writes::values_that_do_not_fit,
                writes::contradicting_nested_records_in_one_run,
                reads::lookups_by_any_index,
                reads::filters_and_limits,
                reads::fetched_ages_agree_with_a_record_scan,
                reads::a_scan_reads_every_record_as_one_read_does,
                reads::a_scan_matches_one_read_for_every_kind_of_key,
                history::rejects_drift_and_key_outcomes_are_kept,
                history::runs_start_finish_and_interruption,
                history::resume_state,
                history::one_writer_many_readers,
                history::readers_and_later_writes,
                history::dead_runs_are_seen_by_readers,
                history::list_cursors_are_kept_per_list_function,
                schema::new_optional_edges_are_added_in_place,
                schema::making_an_edge_optional_is_accepted,
                schema::incompatible_changes_lose_nothing,
                schema::incompatible_changes_to_empty_tables_are_accepted,
                schema::a_changed_key_of_a_referenced_model,
                hostile::keywords_as_names_injections_as_values,
                hostile::unusual_names_round_trip,
                hostile::nan_like_and_extreme_values,
                hostile::reserved_and_clashing_names,
                crash::survives_sigkill_mid_batch,
                lineage::lineage_is_written_with_its_output_and_replaced_whole,
                lineage::a_refused_output_leaves_no_lineage,
                lineage::content_hashes_follow_the_records,
                lineage::stale_inputs_judge_the_lineage,
                lineage::stale_inputs_judge_models_with_an_edge_called_rowid,
                lineage::stale_inputs_count_each_primary_read_without_a_hash,
            );
            store_contract!(@async_cases $harness;
                runtime::every_cat_keeps_its_own_vitals,
                runtime::contradicting_nested_records_fail_their_key,
                runtime::drift_examples_keep_their_json_type,
                runtime::unknown_fields_of_one_record_are_capped,
                runtime::transformers_recompute_only_what_changed,
            );
        }
    };
    (@cases $harness:path; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let h = $harness();
                if (h.available)() {
                    crate::$module::$case(&h);
                }
            }
        )*
    };
    (@async_cases $harness:path; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let h = $harness();
                if (h.available)() {
                    crate::$module::$case(&h).await;
                }
            }
        )*
    };
}

/// The writer the crash cases kill: run as a child process by `crash::survives_sigkill_mid_batch`
/// (which sets `KYE_CRASH_*`); it writes until killed and never ends on its own.
#[test]
#[ignore = "child process helper"]
fn crash_child() {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: crash_child is run by the crash cases, not on its own")
        })
    };
    let round = var("KYE_CRASH_ROUND").parse().expect("KYE_CRASH_ROUND");
    crash::child(
        &var("KYE_CRASH_STORE"),
        std::path::Path::new(&var("KYE_CRASH_READY")),
        round,
    );
}

store_contract!(sqlite, crate::harness::sqlite);
store_contract!(dir, crate::harness::dir);
store_contract!(postgres, crate::harness::postgres);
