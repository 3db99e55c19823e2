//! Placeholder until the serve image builder lands.

use std::path::Path;

/// A build context.
pub struct ServeImageContext {
    /// Tar bytes.
    pub tar: Vec<u8>,
}

/// Not yet.
pub fn build_context(_binary: &Path) -> Result<ServeImageContext, String> {
    Err("the serve image builder is not built yet".into())
}
