//! Progress bars on stderr, shown only on a terminal and only for work that takes a moment.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::Duration;

/// A bar of `len` steps; hidden when stderr is not a terminal or the work is small.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    if len < 200 {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr_with_hz(10));
    b.set_style(
        ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} pairs ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    b.set_message(what.to_string());
    // Appear only if the work is still running after a moment.
    b.enable_steady_tick(Duration::from_millis(250));
    b
}
