//! Headless Chromium driven over the DevTools protocol, for the tests of pages: a fresh
//! profile per browser, pages opened as targets, JavaScript evaluated in them.

use serde_json::{json, Value};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

/// A running headless Chromium and the DevTools connection to it.
pub struct Browser {
    child: Child,
    profile: PathBuf,
    devtools: WebSocket<TcpStream>,
    next_id: u64,
}

/// A page (a DevTools session attached to one target).
pub struct Page(String);

impl Browser {
    /// Starts Debian's `chromium` headless with a fresh profile (the flags this machine
    /// needs) and connects to its DevTools endpoint.
    pub fn start() -> Browser {
        let profile = std::env::temp_dir().join(format!(
            "rs-chromium-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&profile).unwrap();
        let child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--allow-file-access-from-files",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium is installed (apt-get install chromium; .ci/run does it)");
        // Chromium writes its DevTools port and path here once it listens.
        let port_file = profile.join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let (port, path) = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    break (port.to_string(), path.to_string());
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromium did not start its DevTools"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let stream = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let url = format!("ws://127.0.0.1:{port}{path}");
        let (devtools, _) = tungstenite::client::client(url, stream).expect("DevTools handshake");
        Browser {
            child,
            profile,
            devtools,
            next_id: 1,
        }
    }

    /// Calls a DevTools method (in a page's session, if given) and returns its result.
    pub fn call(&mut self, session: Option<&Page>, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut request = json!({"id": id, "method": method, "params": params});
        if let Some(page) = session {
            request["sessionId"] = json!(page.0);
        }
        self.devtools
            .send(Message::text(request.to_string()))
            .unwrap();
        loop {
            let reply = match self.devtools.read().expect("a DevTools message") {
                Message::Text(t) => serde_json::from_str::<Value>(t.as_str()).unwrap(),
                _ => continue,
            };
            if reply["id"] == json!(id) {
                assert!(reply.get("error").is_none(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    /// Opens `url` in a new page.
    pub fn open(&mut self, url: &str) -> Page {
        let target = self.call(None, "Target.createTarget", json!({"url": url}));
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        Page(attached["sessionId"].as_str().unwrap().to_string())
    }

    /// Evaluates a JavaScript expression in `page` and returns its value.
    pub fn eval(&mut self, page: &Page, expression: &str) -> Value {
        let result = self.call(
            Some(page),
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` in `page` until it is `true` (10 s at most); an exception
    /// (the page still loading) counts as not yet.
    pub fn wait_for(&mut self, page: &Page, expression: &str) {
        let guarded = format!("(() => {{ try {{ return ({expression}) === true; }} catch (e) {{ return false; }} }})()");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.eval(page, &guarded) != json!(true) {
            assert!(Instant::now() < deadline, "never true: {expression}");
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
