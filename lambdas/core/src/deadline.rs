//! The end of the current invocation: work that cannot finish before it is not started.

use std::time::Duration;

use tokio::time::Instant;

/// When the invocation must have answered (Lambda's deadline), or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    /// No deadline: everything is attempted.
    pub const NONE: Self = Self(None);

    /// A deadline at `instant`.
    pub fn at(instant: Instant) -> Self {
        Self(Some(instant))
    }

    /// A deadline `duration` from now.
    pub fn after(duration: Duration) -> Self {
        Self(Some(Instant::now() + duration))
    }

    /// Whether less than `margin` is left: then no new work should start.
    pub fn is_within(&self, margin: Duration) -> bool {
        self.0
            .is_some_and(|at| at.saturating_duration_since(Instant::now()) < margin)
    }
}
