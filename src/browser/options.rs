//! What a browser is launched with: per-session options, and the
//! viewport, a fact of headless Chromium's windows as much as a request.

/// Every page's `innerWidth` × `innerHeight`, not the window's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewport {
    pub width: u32,
    pub height: u32,
}

impl Viewport {
    pub const DEFAULT: Viewport = Viewport {
        width: 1280,
        height: 720,
    };
    /// Headless Chromium makes no window narrower than 500 px: a smaller
    /// width would be silently widened, so it is refused instead.
    pub const MIN: Viewport = Viewport {
        width: 500,
        height: 1,
    };
    /// 8K: anything larger is a typo, and costs the browser real memory.
    pub const MAX: Viewport = Viewport {
        width: 7680,
        height: 4320,
    };
}

/// Per-session launch options. The default is what the warm pool launches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchOptions {
    pub viewport: Viewport,
    pub user_agent: Option<String>,
    pub proxy_url: Option<String>,
}

impl Default for LaunchOptions {
    fn default() -> Self {
        Self {
            viewport: Viewport::DEFAULT,
            user_agent: None,
            proxy_url: None,
        }
    }
}

impl LaunchOptions {
    /// Whether a browser launched with the defaults (a pooled one) serves.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}
