//! Running part of a bench in a child process of its own (this same bench binary, with
//! arguments saying which part), for what must not share the parent's process: a
//! process-wide subscriber, or a load client that must not share the servers' runtime.

/// Runs this bench again with `args` and reads back the value it prints on the one line
/// starting `<prefix> `, as JSON.
pub fn run<T: serde::de::DeserializeOwned>(args: &[&str], prefix: &str) -> T {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the child run {args:?} failed: {output:?}"
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix(prefix)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {prefix} line in {stdout}"));
    serde_json::from_str(line).unwrap()
}

/// Prints `value` on the line [`run`] reads back.
pub fn report<T: serde::Serialize>(prefix: &str, value: &T) {
    println!("{prefix} {}", serde_json::to_string(value).unwrap());
}
