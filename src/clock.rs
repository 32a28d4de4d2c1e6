//! Wall-clock time, as the metrics and the clean-up record it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 should the clock be set before it).
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// Whole seconds since the Unix epoch.
pub fn unix_now_secs() -> u64 {
    unix_now() as u64
}
