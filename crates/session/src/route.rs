//! Routing an upgrade request to an app endpoint, and the endpoint's origin and
//! subprotocol policy.

/// An app, by its index in the configuration's `apps` (at most 65535 apps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppIndex(pub u16);

impl AppIndex {
    /// The index, for indexing per-app tables.
    #[inline]
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// An endpoint of an app, by its index in that app's `endpoints`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EndpointIndex(pub u16);

/// One endpoint, as the worker routes to it: a port and path served by an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The configured port the request must arrive on.
    pub port: u16,
    /// The exact request path (without query string).
    pub path: String,
    /// The app serving it.
    pub app: AppIndex,
    /// Which of the app's endpoints it is.
    pub endpoint: EndpointIndex,
    /// Exact `Origin` values allowed; `"*"` allows any. Requests without `Origin` (not
    /// from a browser) are always allowed.
    pub allowed_origins: Vec<String>,
    /// Subprotocols the app speaks, in the server's order of preference.
    pub subprotocols: Vec<String>,
}

impl Route {
    /// Whether a request with this `Origin` header (if any) may connect.
    pub fn allows_origin(&self, origin: Option<&str>) -> bool {
        origin.is_none_or(|origin| {
            self.allowed_origins
                .iter()
                .any(|allowed| allowed == "*" || allowed == origin)
        })
    }
}

/// Every route of the server, looked up by port and path.
#[derive(Debug, Clone, Default)]
pub struct Routes(Vec<Route>);

impl Routes {
    /// A table of `routes`.
    pub fn new(routes: Vec<Route>) -> Routes {
        Routes(routes)
    }

    /// The route serving `path` on `port`, if any.
    pub fn find(&self, port: u16, path: &str) -> Option<&Route> {
        self.0.iter().find(|r| r.port == port && r.path == path)
    }

    /// Every route.
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.0.iter()
    }
}
