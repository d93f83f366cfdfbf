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
    /// The request path (without query string): exact, or ending in `/*` to serve
    /// every path under it (the longest such prefix wins; an exact path beats it).
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
    /// The app decides each upgrade request before the 101 (it has an upgrade
    /// callback); otherwise the server accepts every valid one at once.
    pub decides_upgrades: bool,
    /// The app answers plain HTTP requests (it has an HTTP callback); otherwise they
    /// get the server's 400/405/426 answers.
    pub serves_http: bool,
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

    /// The route serving `path` on `port`, if any: the one with exactly that path,
    /// else the one whose `/*` prefix is the longest match.
    pub fn find(&self, port: u16, path: &str) -> Option<&Route> {
        let on_port = || self.0.iter().filter(move |r| r.port == port);
        on_port().find(|r| r.path == path).or_else(|| {
            on_port()
                .filter(|r| {
                    r.path
                        .strip_suffix('*')
                        .is_some_and(|prefix| prefix.ends_with('/') && path.starts_with(prefix))
                })
                .max_by_key(|r| r.path.len())
        })
    }

    /// Marks the routes of `app` with what its callbacks decide (set once its plugin
    /// is loaded).
    pub fn set_app_answers(&mut self, app: AppIndex, decides_upgrades: bool, serves_http: bool) {
        for route in self.0.iter_mut().filter(|r| r.app == app) {
            route.decides_upgrades = decides_upgrades;
            route.serves_http = serves_http;
        }
    }

    /// Every route.
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str, app: u16) -> Route {
        Route {
            port: 80,
            path: path.into(),
            app: AppIndex(app),
            endpoint: EndpointIndex(0),
            allowed_origins: vec![],
            subprotocols: vec![],
            decides_upgrades: false,
            serves_http: false,
        }
    }

    #[test]
    fn exact_paths_win_then_the_longest_prefix() {
        let routes = Routes::new(vec![
            route("/*", 1),
            route("/api/*", 2),
            route("/api/send", 3),
            route("/api/channel/*", 4),
        ]);
        let app = |path| routes.find(80, path).map(|r| r.app.0);
        assert_eq!(app("/api/send"), Some(3));
        assert_eq!(app("/api/info"), Some(2));
        assert_eq!(app("/api/"), Some(2));
        assert_eq!(app("/api"), Some(1));
        assert_eq!(app("/api/channel/subscribe/x"), Some(4));
        assert_eq!(app("/other"), Some(1));
        assert_eq!(routes.find(81, "/api/send").map(|r| r.app.0), None);
        let exact = Routes::new(vec![route("/chat", 1)]);
        assert!(exact.find(80, "/chat/x").is_none());
    }
}
