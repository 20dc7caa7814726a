//! driftscope's integration tests, in one binary (as ripgrep's `tests/tests.rs`): one module
//! per area, sharing `common`. `cargo test --test tests MODULE::` runs one area.

mod common;

mod architecture;
mod ascend_backward;
mod ascend_cann;
mod ascend_fusion;
mod ascend_layer_mapping;
mod ascend_layout;
mod ascend_mapping;
mod ascend_msprobe_csv;
mod ascend_msprobe_tasks;
mod ascend_ranks;
mod bombs;
mod cli;
mod cluster;
mod compare_real;
mod control_flow_real;
mod corpus;
mod divergence_real;
mod false_greens;
mod hierarchy;
mod layouts;
mod malicious;
mod model_explorer;
mod nightly;
mod plots;
mod proptest_metrics;
mod pt_reader;
mod replay;
mod replay_ops;
mod structure_real;
mod torch_replay;
mod truncated;
