//! Running the `aimbus` binary as a long-lived process and reading its log.

use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::{Duration, Instant};

/// An `aimbus` command, with a clean environment for its log, and its gateway on a port
/// of its own (it logs which), so tests running side by side never collide.
pub fn aimbus_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_aimbus"));
    command
        .env_remove("RUST_LOG")
        .env_remove("AIMBUS_JWT_SECRET")
        .env("AIMBUS_GATEWAY__LISTEN", "127.0.0.1:0");
    command
}

/// The address in a `gateway listening address=…` log line.
pub fn gateway_address(line: &str) -> Option<String> {
    if !line.contains("gateway listening") {
        return None;
    }
    // A JSON log line, or a text one.
    if let Ok(event) = serde_json::from_str::<serde_json::Value>(line) {
        return Some(event["fields"]["address"].as_str()?.to_owned());
    }
    let address = line.split_once("address=")?.1;
    Some(address.split_whitespace().next()?.to_owned())
}

/// A child process that is killed when dropped, so a test that fails half-way leaves no
/// `serve` behind (one that would declare its namespace again on the shared broker).
pub struct Reaped(Option<Child>);

impl Reaped {
    /// The child, no longer killed on drop.
    pub fn into_inner(mut self) -> Child {
        self.0.take().expect("held until taken")
    }
}

impl std::ops::Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.0.as_ref().expect("held until taken")
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        self.0.as_mut().expect("held until taken")
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            // Already gone when the test stopped it: both calls then do nothing.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Spawns `command` and reads its log until a line contains `ready`, handing every line
/// to `each` on the way; fails after `patience`.
pub fn spawn_until(
    command: &mut Command,
    ready: &str,
    patience: Duration,
    mut each: impl FnMut(&str),
) -> (Reaped, Lines<BufReader<ChildStderr>>) {
    let mut child = command
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    if let Err(problem) = read_until(&mut lines, ready, patience, &mut each) {
        // Not left running behind a failed test.
        let _ = child.kill();
        let _ = child.wait();
        panic!("{command:?}: {problem}");
    }
    (Reaped(Some(child)), lines)
}

fn read_until(
    lines: &mut Lines<BufReader<ChildStderr>>,
    ready: &str,
    patience: Duration,
    each: &mut impl FnMut(&str),
) -> Result<(), String> {
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline {
        let line = match lines.next() {
            Some(Ok(line)) => line,
            _ => return Err(format!("stopped logging before {ready:?}")),
        };
        each(&line);
        if line.contains(ready) {
            return Ok(());
        }
    }
    Err(format!("never logged {ready:?}"))
}

/// Asks a process to stop as `docker stop` does, and checks it exits cleanly.
pub fn terminate(child: Reaped) {
    let mut child = child.into_inner();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "exits cleanly on SIGTERM: {status:?}");
}
