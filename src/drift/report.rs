//! A monitor's evaluation as one self-contained HTML page: the verdict table
//! and, per column, the reference and current distributions as inline SVG.

use super::DatasetDrift;

/// What the page says besides the numbers.
#[derive(Debug, Clone)]
pub struct ReportContext {
    /// The monitor's name.
    pub monitor: String,
    /// When it was evaluated (RFC 3339).
    pub evaluated_at: String,
    /// What the reference window is, in words.
    pub reference: String,
    /// What the current window is, in words.
    pub current: String,
}

/// Renders the page.
pub fn html(ctx: &ReportContext, drift: &DatasetDrift) -> String {
    let _ = (ctx, drift);
    String::new()
}
