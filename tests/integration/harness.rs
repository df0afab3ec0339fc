//! The integration suite's world: the worker built and served by `wrangler dev`, a local
//! destination server that records what it receives and fails on request, and helpers to sign
//! and send webhooks.

use edgehook_core::headers::{HeaderList, Headers};
use edgehook_core::providers::{Provider, Unsigned};
use edgehook_core::secret::SigningKey;
use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A unique suffix for event ids, so tests never collide with each other or earlier runs.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}_{nanos:x}_{}", N.fetch_add(1, Ordering::Relaxed))
}

/// A port that is free now, chosen below Linux's ephemeral range (32768 and up) so that the
/// sockets wrangler and workerd open on port 0 cannot take it before our server binds it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = (std::process::id() as u16 % 1000) * 10;
    loop {
        let port = 20_000 + (seed + NEXT.fetch_add(1, Ordering::Relaxed)) % 12_000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Builds the worker bundle into `out_dir` (relative to the repository), with extra cargo args.
pub fn build_worker(out_dir: &str, cargo_args: &[&str]) {
    let started = Instant::now();
    let status = Command::new(root().join("scripts/build"))
        .args(["-d", out_dir])
        .args(cargo_args)
        .current_dir(root())
        .stdout(Stdio::null())
        .status()
        .expect("scripts/build runs");
    assert!(status.success(), "building the worker into {out_dir} failed");
    eprintln!("built {out_dir} in {:.1}s", started.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------------
// HTTP client

/// A response as the tests see it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Asserts the exact status and JSON body.
    #[track_caller]
    pub fn expect(&self, status: u16, body: serde_json::Value) {
        assert_eq!((self.status, self.json()), (status, body), "raw body: {}", self.body);
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build()
}

/// The reply, or the error of a request that got none.
fn finish(result: Result<ureq::Response, ureq::Error>) -> Result<Reply, Box<ureq::Error>> {
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(Box::new(e)),
    };
    let status = response.status();
    let headers = response
        .headers_names()
        .into_iter()
        .filter_map(|n| response.header(&n).map(|v| (n.clone(), v.to_owned())))
        .collect();
    let mut body = String::new();
    response.into_reader().read_to_string(&mut body).unwrap();
    Ok(Reply { status, body, headers })
}

pub fn request(method: &str, url: &str, headers: &HeaderList, body: &[u8]) -> Reply {
    let send = || {
        let mut req = agent().request(method, url);
        for (k, v) in &headers.0 {
            req = req.set(k, v);
        }
        finish(if method == "GET" { req.call() } else { req.send_bytes(body) })
    };
    // `wrangler dev` answers 503 itself when its proxy loses the connection to workerd, which
    // happens now and then on a loaded 2-core machine (a 25 MB upload beside everything else);
    // answering early, it can also reset a connection whose upload is still going. It retries
    // GETs by itself but not POSTs; a webhook provider would retry the POST, so do so.
    let mut tries = 0;
    loop {
        tries += 1;
        let lost = match send() {
            Ok(reply) if !is_dev_proxy_failure(reply.status, &reply.body) => return reply,
            Ok(reply) => format!("{} {}", reply.status, reply.body.lines().next().unwrap_or("")),
            Err(e) if e.kind() == ureq::ErrorKind::Io && tries < 4 => e.to_string(),
            Err(e) => panic!("request failed: {url}: {e}"),
        };
        assert!(tries < 4, "{method} {url}: lost by wrangler's proxy {tries} times: {lost}");
        eprintln!("{method} {url}: wrangler's proxy lost the request ({lost}); sending it again");
        thread::sleep(Duration::from_millis(500));
    }
}

/// The value of one `edgehook_events_total` series in Prometheus text, if present.
pub fn series(text: &str, labels: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(&format!("edgehook_events_total{{{labels}}} "))?.parse().ok())
}

/// How `wrangler dev`'s own proxy (not edgehook) begins its 503 answer when a request to
/// workerd failed.
pub const DEV_PROXY_LOST: &str = "Your worker restarted mid-request";

/// The answer of `wrangler dev`'s own proxy (not of edgehook) when a request to workerd failed.
pub fn is_dev_proxy_failure(status: u16, body: &str) -> bool {
    status == 503 && body.starts_with(DEV_PROXY_LOST)
}

// ---------------------------------------------------------------------------------------------
// The worker under `wrangler dev`

/// How a worker instance gets its configuration: any mix of the three forms users have.
#[derive(Default)]
pub struct ConfigForm {
    /// A `.dev.vars` file beside the config (dotenv; `SOURCES` as a JSON string).
    pub dev_vars: Vec<(String, String)>,
    /// Raw TOML for `[vars]` in `wrangler.toml` (`SOURCES` as tables).
    pub toml: Option<String>,
    /// `--var NAME:VALUE` on the command line.
    pub flags: Vec<(String, String)>,
}

/// Configuration variables as owned pairs, for [`ConfigForm`].
pub fn vars<'a>(pairs: impl IntoIterator<Item = (&'a str, String)>) -> Vec<(String, String)> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// A process started in its own process group, with its output in a file, and stopped with
/// its whole group (wrangler runs workerd as a child) when dropped.
pub struct Group {
    child: Option<Child>,
}

impl Group {
    pub fn spawn(mut command: Command, log: &Path) -> Group {
        let out = fs::File::create(log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CI", "1")
            // Each instance its own dev registry: wrangler reloads every session that shares a
            // registry when another one starts, failing the requests in flight.
            .env("WRANGLER_REGISTRY_PATH", log.with_extension("registry"))
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {command:?}: {e}"));
        Group { child: Some(child) }
    }

    /// The process group: `wrangler` and every process it started (workerd, esbuild).
    pub fn group_id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        self.child.as_mut().is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        // Through libc: procps-ng 4.0.2's `kill -TERM -<pgid>` signals every process the user
        // owns instead of the group.
        let group = -(child.id() as i32);
        // SAFETY: kill(2) has no memory effects; a negative pid names the process group that
        // `process_group(0)` created for this child alone.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        // SAFETY: as above.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = child.wait();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.stop();
    }
}

pub struct Worker {
    pub name: &'static str,
    pub base: String,
    process: Group,
    pub dir: PathBuf,
    pub log: PathBuf,
    /// `wrangler dev`'s arguments, to start it again the same way.
    args: Vec<String>,
}

impl Worker {
    /// The process group of its `wrangler dev` (see [`Group::group_id`]).
    pub fn group_id(&self) -> Option<u32> {
        self.process.group_id()
    }

    /// Starts `wrangler dev` serving `build_dir` on a free port with a fresh `--persist-to`.
    pub fn start(name: &'static str, build_dir: &str, config: ConfigForm) -> Worker {
        let dir = std::env::temp_dir().join(unique(&format!("edgehook-it-{name}")));
        fs::create_dir_all(&dir).unwrap();
        let main = root().join(build_dir).join("index.js");
        let mut toml = fs::read_to_string(root().join("wrangler.toml"))
            .unwrap()
            .replace("main = \"build/index.js\"", &format!("main = {:?}", main.display().to_string()));
        let mut args: Vec<String> = Vec::new();
        if !config.dev_vars.is_empty() {
            let text: String = config.dev_vars.iter().map(|(k, v)| format!("{k}='{v}'\n")).collect();
            fs::write(dir.join(".dev.vars"), text).unwrap();
        }
        if let Some(vars) = &config.toml {
            toml.push_str(&format!("\n[vars]\n{vars}\n"));
        }
        for (k, v) in &config.flags {
            args.push("--var".into());
            args.push(format!("{k}:{v}"));
        }
        fs::write(dir.join("wrangler.toml"), toml).unwrap();
        let port = free_port();
        let log = dir.join("wrangler.log");
        let mut all: Vec<String> =
            vec!["dev".into(), "--config".into(), dir.join("wrangler.toml").display().to_string()];
        all.extend(["--ip", "127.0.0.1", "--port"].map(String::from));
        all.push(port.to_string());
        all.push("--inspector-port".into());
        all.push(free_port().to_string());
        all.push("--persist-to".into());
        all.push(dir.join("state").display().to_string());
        all.extend(["--show-interactive-dev-session=false", "--log-level", "log"].map(String::from));
        // Lets tests run the cron trigger on demand (GET /__scheduled).
        all.push("--test-scheduled".into());
        all.extend(args);
        let process = Group::spawn(Worker::command(&all, &dir), &log);
        Worker { name, base: format!("http://127.0.0.1:{port}"), process, dir, log, args: all }
    }

    fn command(args: &[String], dir: &Path) -> Command {
        let mut command = Command::new(root().join("node_modules/.bin/wrangler"));
        command.args(args).current_dir(dir);
        command
    }

    /// Stops `wrangler dev` and starts it again the same way: same port, same `--persist-to`.
    /// Its log goes on in a new file.
    pub fn restart(&mut self, timeout: Duration) {
        self.process.stop();
        self.log = self.dir.join(format!("wrangler-{}.log", unique("restarted")));
        self.process = Group::spawn(Worker::command(&self.args, &self.dir), &self.log);
        self.wait_ready(timeout);
    }

    /// Waits until the worker answers HTTP.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.process.exited() {
                panic!("wrangler for {} exited before it was ready; log:\n{}", self.name, self.logs());
            }
            let probe = ureq::AgentBuilder::new().timeout(Duration::from_secs(2)).build().get(&self.url("/")).call();
            if matches!(probe, Ok(_) | Err(ureq::Error::Status(..))) {
                return;
            }
            thread::sleep(Duration::from_millis(250));
        }
        panic!("worker {} not ready after {timeout:?}; log:\n{}", self.name, self.logs());
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn post(&self, path: &str, headers: &HeaderList, body: &[u8]) -> Reply {
        request("POST", &self.url(path), headers, body)
    }

    pub fn get(&self, path: &str, headers: &HeaderList) -> Reply {
        request("GET", &self.url(path), headers, b"")
    }

    /// Runs the cron trigger once, as the every-minute schedule would.
    #[track_caller]
    pub fn scheduled(&self) {
        let reply = self.get("/__scheduled?cron=*+*+*+*+*", &HeaderList::new());
        assert_eq!(reply.status, 200, "scheduled run failed: {}", reply.body);
    }

    /// An admin API call with the suite's token.
    pub fn admin(&self, method: &str, path: &str, body: &[u8]) -> Reply {
        let headers = HeaderList::from([("authorization", format!("Bearer {}", crate::ADMIN_TOKEN).as_str())]);
        request(method, &self.url(path), &headers, body)
    }

    /// `GET` an admin path that must answer 200 with JSON.
    #[track_caller]
    pub fn admin_json(&self, path: &str) -> serde_json::Value {
        let reply = self.admin("GET", path, b"");
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
        reply.json()
    }

    /// Everything the worker logged so far.
    pub fn logs(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        self.process.stop();
    }
}

use std::os::unix::process::CommandExt;

// ---------------------------------------------------------------------------------------------
// The destination server

/// One request the destination received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderList,
    pub body: Vec<u8>,
    pub at: Instant,
    /// The status it was answered with; `None` when it was held (`Action::Hang`), so the worker
    /// gave up on it before it was answered.
    pub answer: Option<u16>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name)
    }

    pub fn attempt(&self) -> u32 {
        self.header("x-edgehook-attempt").and_then(|a| a.parse().ok()).unwrap_or(0)
    }
}

/// What the destination does with the next request to a path.
#[derive(Debug, Clone)]
pub enum Action {
    Status(u16),
    StatusWithHeader(u16, &'static str, String),
    /// Holds the request this long, then answers 200 (by then the worker has given up).
    Hang(Duration),
}

#[derive(Default)]
struct DestinationState {
    received: Vec<Received>,
    plans: HashMap<String, VecDeque<Action>>,
    always: HashMap<String, u16>,
    hanging: HashMap<String, Duration>,
}

/// A local HTTP server standing in for users' endpoints and the alert webhook.
#[derive(Clone)]
pub struct Destination {
    pub base: String,
    state: Arc<Mutex<DestinationState>>,
}

impl Destination {
    pub fn start() -> Destination {
        Destination::start_on(0)
    }

    /// A destination on a given port (0: any free one).
    ///
    /// A thread per connection, so that a hanging answer holds up nothing else. (`tiny_http`
    /// served this before; its thread pool can leave a new connection queued until an idle
    /// thread's 5-second timeout, which delayed a delivery by exactly that much now and then.)
    pub fn start_on(port: u16) -> Destination {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state: Arc<Mutex<DestinationState>> = Arc::default();
        let shared = state.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                thread::spawn(move || serve_connection(stream, &state));
            }
        });
        Destination { base, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Queues actions for the next requests to `path`; after them, requests get 200.
    pub fn plan(&self, path: &str, actions: Vec<Action>) {
        self.state.lock().unwrap().plans.entry(path.to_owned()).or_default().extend(actions);
    }

    /// Drops what is left of `path`'s plan.
    pub fn clear_plan(&self, path: &str) {
        self.state.lock().unwrap().plans.remove(path);
    }

    /// Makes every request to `path` get `status` until changed.
    pub fn always(&self, path: &str, status: u16) {
        self.state.lock().unwrap().always.insert(path.to_owned(), status);
    }

    /// Makes every request to `path` hang for that long (then answer 200), until set to `None`.
    pub fn hang(&self, path: &str, hanging: Option<Duration>) {
        let mut s = self.state.lock().unwrap();
        match hanging {
            Some(d) => s.hanging.insert(path.to_owned(), d),
            None => s.hanging.remove(path),
        };
    }

    /// Requests to `path` so far that match `filter`.
    pub fn received(&self, path: &str, filter: impl Fn(&Received) -> bool) -> Vec<Received> {
        let s = self.state.lock().unwrap();
        s.received.iter().filter(|r| r.path == path && filter(r)).cloned().collect()
    }

    /// Deliveries of event `id` to `path` so far.
    pub fn deliveries(&self, path: &str, id: &str) -> Vec<Received> {
        self.received(path, |r| r.header("webhook-id").as_deref() == Some(id))
    }

    /// Waits until `count` requests to `path` match `filter`, and returns them.
    #[track_caller]
    pub fn wait_for(
        &self,
        path: &str,
        count: usize,
        timeout: Duration,
        filter: impl Fn(&Received) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received(path, &filter);
            if got.len() >= count {
                return got;
            }
            if Instant::now() > deadline {
                panic!("waited {timeout:?} for {count} request(s) to {path}, got {}", got.len());
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for `count` deliveries of event `id` to `path`.
    #[track_caller]
    pub fn wait_deliveries(&self, path: &str, id: &str, count: usize, timeout: Duration) -> Vec<Received> {
        self.wait_for(path, count, timeout, |r| r.header("webhook-id").as_deref() == Some(id))
    }
}

/// Answers the requests of one keep-alive connection until the client closes it.
fn serve_connection(stream: TcpStream, state: &Mutex<DestinationState>) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut writer = stream;
    while let Some((path, headers, body)) = read_request(&mut reader) {
        let close = headers.get("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let action = {
            let mut s = state.lock().unwrap();
            let planned = s.plans.get_mut(&path).and_then(|q| q.pop_front());
            let action = match planned {
                Some(action) => action,
                None if s.hanging.contains_key(&path) => Action::Hang(s.hanging[&path]),
                None => Action::Status(s.always.get(&path).copied().unwrap_or(200)),
            };
            let answer = match action {
                Action::Status(code) | Action::StatusWithHeader(code, ..) => Some(code),
                Action::Hang(_) => None,
            };
            s.received.push(Received { path, headers, body, at: Instant::now(), answer });
            action
        };
        let (code, extra, text) = match action {
            Action::Status(code) => (code, String::new(), ""),
            Action::StatusWithHeader(code, name, value) => (code, format!("{name}: {value}\r\n"), ""),
            Action::Hang(d) => {
                thread::sleep(d);
                (200, String::new(), "late")
            }
        };
        let head = format!("HTTP/1.1 {code} Answer\r\ncontent-length: {}\r\n{extra}\r\n", text.len());
        if writer.write_all(head.as_bytes()).and_then(|()| writer.write_all(text.as_bytes())).is_err() || close {
            return;
        }
    }
}

/// Reads one HTTP/1.1 request: its target, headers and body (by `content-length` or chunked).
/// `None` when the connection is closed or the request cannot be read.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(String, HeaderList, Vec<u8>)> {
    let mut line = String::new();
    let mut next_line = |reader: &mut BufReader<TcpStream>| -> Option<String> {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end_matches(['\r', '\n']).to_owned()),
        }
    };
    let request_line = next_line(reader)?;
    let path = request_line.split(' ').nth(1)?.to_owned();
    let mut headers = HeaderList::new();
    loop {
        let header = next_line(reader)?;
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push(name.trim(), value.trim());
    }
    let mut body = Vec::new();
    if headers.get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            let size = usize::from_str_radix(next_line(reader)?.split(';').next()?.trim(), 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            body.extend_from_slice(&chunk[..size]);
            if size == 0 {
                break;
            }
        }
    } else {
        let length = headers.get("content-length").map_or(Some(0), |l| l.parse().ok())?;
        body.resize(length, 0);
        reader.read_exact(&mut body).ok()?;
    }
    Some((path, headers, body))
}

// ---------------------------------------------------------------------------------------------
// Signing

/// Signature headers `provider` would send for `body`, with `secret` as configured.
pub fn signed(provider: Provider, secret: &str, id: &str, timestamp: i64, body: &[u8]) -> HeaderList {
    let key = SigningKey::parse(secret, provider.secret_encoding()).expect("test secrets are valid");
    let unsigned = Unsigned { method: "POST", url: "", body, id, timestamp };
    let mut headers = provider.sign(&key, unsigned, None).headers;
    headers.push("content-type", "application/json");
    headers
}

/// A Stripe event body with this id and type.
pub fn stripe_body(id: &str, event_type: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}","object":"event","type":"{event_type}","data":{{"object":{{"id":"in_1"}}}}}}"#)
        .into_bytes()
}

/// New event ids of `source` whose idempotency records live in the same shard as `id`'s (for
/// tests that need several events in one shard).
pub fn ids_in_shard_of(source: &str, id: &str) -> impl Iterator<Item = String> {
    use edgehook_core::{idempotency::shard_of, ingest::idempotency_key};
    let (source, shard) = (source.to_owned(), shard_of(&idempotency_key(source, id)));
    std::iter::repeat_with(|| unique("evt")).filter(move |other| shard_of(&idempotency_key(&source, other)) == shard)
}

/// How long the suite waits for something the worker does in the background (a delivery, a
/// record, a count) on a loaded machine.
pub const WAIT: Duration = Duration::from_secs(60);

/// Waits until the captured event `source/id` has `status` (admin API), and returns it.
#[track_caller]
pub fn wait_status(worker: &Worker, source: &str, id: &str, status: &str) -> serde_json::Value {
    let mut event = serde_json::Value::Null;
    wait_until(WAIT, &format!("{source}/{id} to be {status}"), || {
        let reply = worker.admin("GET", &format!("/admin/events/{source}/{id}"), b"");
        event = if reply.status == 200 { reply.json() } else { serde_json::Value::Null };
        event["status"] == status
    });
    event
}

pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// Paths under the repository, for messages.
pub fn show(path: &Path) -> String {
    path.display().to_string()
}
