//! Real headless Chromium for the web page tests, driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: JSON messages separated by NUL bytes on fds 3 and 4). It keeps
//! the console's errors and uncaught exceptions, and takes screenshots.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A headless Chromium with one page attached.
pub(crate) struct Browser {
    child: Child,
    to: std::io::PipeWriter,
    from: BufReader<std::io::PipeReader>,
    next: u64,
    session: String,
    /// Console errors and uncaught exceptions seen so far.
    errors: Vec<String>,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub(crate) fn launch() -> Browser {
        let binary = std::env::var("WARDEN_CHROMIUM").unwrap_or_else(|_| {
            ["chromium", "chromium-browser", "google-chrome"]
                .into_iter()
                .find(|b| Command::new(b).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success()))
                .expect("headless Chromium is needed for the web page tests (apt-get install chromium, or set WARDEN_CHROMIUM)")
                .to_string()
        });
        let profile = tempfile::tempdir().unwrap();
        // Chromium reads commands from fd 3 and writes answers to fd 4.
        let (commands_r, commands_w) = std::io::pipe().unwrap();
        let (answers_r, answers_w) = std::io::pipe().unwrap();
        let (cr, aw): (OwnedFd, OwnedFd) = (commands_r.into(), answers_w.into());
        let (cr_fd, aw_fd) = (cr.as_raw_fd(), aw.as_raw_fd());
        let mut cmd = Command::new(binary);
        cmd.args([
            "--headless=new",
            "--remote-debugging-pipe",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: between fork and exec only async-signal-safe calls (dup2) are made.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(cr_fd, 3) < 0 || libc::dup2(aw_fd, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start chromium");
        drop((cr, aw));
        let mut browser = Browser {
            child,
            to: commands_w,
            from: BufReader::new(answers_r),
            next: 0,
            session: String::new(),
            errors: Vec::new(),
            _profile: profile,
        };
        let target = browser.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let attached = browser.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_string();
        let session = browser.session.clone();
        for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
            browser.call(Some(&session), domain, json!({}));
        }
        browser
    }

    /// Sends a command and waits for its answer (skipping events).
    pub(crate) fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let answer = self.try_call(session, method, params);
        assert!(answer.get("error").is_none(), "{method}: {answer}");
        answer["result"].clone()
    }

    /// Like `call`, returning the whole answer, errors included.
    pub(crate) fn try_call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next += 1;
        let mut message = json!({"id": self.next, "method": method, "params": params});
        if let Some(s) = session {
            message["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).unwrap();
        loop {
            let mut buf = Vec::new();
            assert!(
                self.from.read_until(0, &mut buf).unwrap() > 0,
                "chromium closed the pipe"
            );
            buf.pop();
            let answer: Value = serde_json::from_slice(&buf).unwrap();
            if answer["id"] == json!(self.next) {
                return answer;
            }
            self.note(&answer);
        }
    }

    /// Keeps an event that reports an error in the page.
    fn note(&mut self, event: &Value) {
        let p = &event["params"];
        match event["method"].as_str() {
            Some("Runtime.consoleAPICalled") if p["type"] == "error" => {
                self.errors.push(format!("console.error: {}", p["args"]));
            }
            Some("Runtime.exceptionThrown") => {
                self.errors
                    .push(format!("exception: {}", p["exceptionDetails"]));
            }
            Some("Log.entryAdded") if p["entry"]["level"] == "error" => {
                self.errors
                    .push(format!("{}: {}", p["entry"]["source"], p["entry"]["text"]));
            }
            _ => {}
        }
    }

    /// The console errors, failed loads and uncaught exceptions seen so far.
    pub(crate) fn errors(&mut self) -> Vec<String> {
        // A round trip lets events already sent arrive first.
        self.eval("1");
        self.errors.clone()
    }

    /// Writes a PNG of the whole page to `path`.
    pub(crate) fn screenshot(&mut self, path: &std::path::Path) {
        use base64::Engine as _;
        let session = self.session.clone();
        let shot = self.call(
            Some(&session),
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    pub(crate) fn navigate(&mut self, url: &str) {
        let session = self.session.clone();
        self.call(Some(&session), "Page.navigate", json!({"url": url}));
    }

    /// Evaluates JavaScript in the page and returns its value.
    pub(crate) fn eval(&mut self, expression: &str) -> Value {
        let session = self.session.clone();
        let result = self.call(
            Some(&session),
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is truthy in the page (across navigations).
    pub(crate) fn wait_for(&mut self, expression: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let session = self.session.clone();
            let params = json!({"expression": format!("!!({expression})"), "returnByValue": true});
            let answer = self.try_call(Some(&session), "Runtime.evaluate", params);
            if answer["result"]["result"]["value"] == json!(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for `{expression}`; page: {}",
                self.eval("document.body ? document.body.innerText : ''")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
