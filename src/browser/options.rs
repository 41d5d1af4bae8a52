//! What a browser is launched with: per-session options.

use std::sync::Arc;

use crate::domain::context::BrowserState;
use crate::domain::launch::{Proxy, Viewport};

/// Per-session launch options. The default is what the warm pool launches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchOptions {
    pub viewport: Viewport,
    pub user_agent: Option<String>,
    pub proxy: Option<Proxy>,
    /// A persistent context's state, put into the profile before the
    /// browser starts (files) and before the launch returns (cookies).
    /// Never in a pooled browser: a state is not the default.
    pub restore: Option<Arc<BrowserState>>,
}

impl Default for LaunchOptions {
    fn default() -> Self {
        Self {
            viewport: Viewport::DEFAULT,
            user_agent: None,
            proxy: None,
            restore: None,
        }
    }
}

impl LaunchOptions {
    /// Whether a browser launched with the defaults (a pooled one) serves.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}
