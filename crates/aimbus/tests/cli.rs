//! The `aimbus` binary as a user runs it: exit statuses, tables, JSON, and the messages a
//! bad configuration gets.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

mod common;

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/aimbus.toml");
const SHIPPED_SYSTEMS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/systems.toml");

fn aimbus(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aimbus"))
        .arg("--config")
        .arg(config)
        .args(args)
        .envs(env.iter().copied())
        .env_remove("AIMBUS_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .expect("aimbus runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A config folder with the shipped systems file and the given aimbus.toml text.
fn config_dir(config_text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(SHIPPED_SYSTEMS, dir.path().join("systems.toml")).unwrap();
    let path = dir.path().join("aimbus.toml");
    std::fs::write(&path, config_text).unwrap();
    (dir, path)
}

#[test]
fn systems_list_prints_the_eleven_aim_os_systems_with_their_dependencies() {
    let output = aimbus(SHIPPED.as_ref(), &["systems", "list"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("11 systems"), "{text}");
    let apoe = text.lines().find(|l| l.contains("apoe_001")).unwrap();
    assert!(apoe.contains("AI-Powered Orchestration Engine"));
    assert!(apoe.contains("cmc_001, hhni_001, vif_001"), "{apoe}");
}

#[test]
fn systems_list_json_and_filters() {
    let output = aimbus(SHIPPED.as_ref(), &["systems", "list", "--json"], &[]);
    let systems: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(systems.len(), 11);
    assert!(systems.iter().all(|s| s["interfaces"]["amqp"].is_string()));

    let output = aimbus(
        SHIPPED.as_ref(),
        &["systems", "list", "--json", "--capability", "provenance"],
        &[],
    );
    let systems: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(systems.len(), 1);
    assert_eq!(systems[0]["system_id"], "vif_001");

    let output = aimbus(
        SHIPPED.as_ref(),
        &["systems", "list", "--json", "--type", "mcp"],
        &[],
    );
    let systems: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(systems[0]["system_id"], "mcp_001");
}

#[test]
fn systems_show_and_chain() {
    let output = aimbus(
        SHIPPED.as_ref(),
        &["systems", "show", "cmc_001", "--json"],
        &[],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let shown: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(shown["system"]["name"], "Context Memory Core");
    assert_eq!(shown["dependents"].as_array().unwrap().len(), 10);

    let output = aimbus(
        SHIPPED.as_ref(),
        &["systems", "chain", "dual_prompt_001", "--json"],
        &[],
    );
    let chain: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        chain["chain"],
        serde_json::json!(["cmc_001", "hhni_001", "timeline_001", "dual_prompt_001"])
    );

    let output = aimbus(
        SHIPPED.as_ref(),
        &["systems", "chain", "dual_prompt_001"],
        &[],
    );
    let text = stdout(&output);
    assert!(text.find("cmc_001").unwrap() < text.find("timeline_001").unwrap());

    let output = aimbus(SHIPPED.as_ref(), &["systems", "show", "nope_001"], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("system `nope_001` is not registered"));
}

/// Each bad configuration exits with status 2 and says where, which key, what value and
/// what would be valid.
#[test]
fn a_bad_configuration_exits_2_with_a_precise_message() {
    /// The file's text, the environment, and what the message must say.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: &[Case] = &[
        (
            "[circuit_breaker]\ncircuit_breaker_failure_threshold = 0\n",
            &[],
            &[
                "aimbus.toml",
                "`circuit_breaker.circuit_breaker_failure_threshold`",
                "got 0",
                "from 1 to 10000",
            ],
        ),
        (
            "[load_balancing]\nload_balancing_algorithm = \"random\"\n",
            &[],
            &[
                "aimbus.toml",
                "`load_balancing.load_balancing_algorithm`",
                "\"random\"",
                "round_robin",
            ],
        ),
        (
            "[core]\nmax_concurent_requests = 10\n",
            &[],
            &[
                "aimbus.toml",
                "`core.max_concurent_requests`",
                "unknown field",
                "max_concurrent_requests",
            ],
        ),
        ("[core\n", &[], &["aimbus.toml", "line 1"]),
        (
            "[security]\nrequire_signed_ingress = true\n",
            &[],
            &[
                "`security.require_signed_ingress`",
                "security.signing_keys_file",
            ],
        ),
        (
            "",
            &[("AIMBUS_CORE__REQUEST_TIMEOUT_SECONDS", "forever")],
            &[
                "environment variable AIMBUS_CORE__REQUEST_TIMEOUT_SECONDS",
                "`core.request_timeout_seconds`",
                "\"forever\"",
                "u64",
            ],
        ),
        (
            "[registry]\nsystems_file = \"missing.toml\"\n",
            &[],
            &["missing.toml", "cannot read the systems file"],
        ),
    ];
    for (text, env, fragments) in cases {
        let (_dir, path) = config_dir(text);
        for args in [&["systems", "list"][..], &["serve"][..]] {
            let output = aimbus(&path, args, env);
            let message = stderr(&output);
            assert_eq!(
                output.status.code(),
                Some(2),
                "{text:?} {args:?}: {message}"
            );
            assert!(
                message.starts_with("error: invalid configuration: "),
                "{message}"
            );
            for fragment in *fragments {
                assert!(
                    message.contains(fragment),
                    "{text:?}: `{message}` lacks `{fragment}`"
                );
            }
        }
    }
}

#[test]
fn a_bad_systems_file_exits_2_naming_the_entry() {
    let (dir, path) = config_dir("");
    let systems = std::fs::read_to_string(SHIPPED_SYSTEMS)
        .unwrap()
        .replace("grpc = \"localhost:8004\"", "grpc = \"localhost\"");
    std::fs::write(dir.path().join("systems.toml"), systems).unwrap();
    let output = aimbus(&path, &["systems", "list"], &[]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("systems.toml: `systems[1].interfaces.grpc`"),
        "{message}"
    );
    assert!(
        message.contains("`localhost` is not host:port"),
        "{message}"
    );
}

#[test]
fn a_missing_config_file_exits_2() {
    let output = aimbus(
        "/nonexistent/aimbus.toml".as_ref(),
        &["systems", "list"],
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("/nonexistent/aimbus.toml: cannot read"));
}

#[test]
fn serve_registers_the_default_systems_and_stops_on_sigterm() {
    let mut registered = 0;
    let mut serving = String::new();
    let mut gateway = None;
    // A store of the test's own, empty: the shipped file seeds it.
    let data = tempfile::tempdir().unwrap();
    let (child, mut lines) = common::spawn_until(
        common::aimbus_command()
            .args(["--config", SHIPPED, "serve"])
            .env("AIMBUS_REGISTRY__DATA_DIR", data.path()),
        "aimbus is serving",
        Duration::from_secs(30),
        |line| {
            if line.contains("system registered") {
                registered += 1;
            }
            gateway = gateway.take().or_else(|| common::gateway_address(line));
            serving = line.to_owned();
        },
    );
    // Standard error is a pipe here, so the log is JSON, one event per line.
    let serving: serde_json::Value = serde_json::from_str(&serving).unwrap();
    assert_eq!(serving["fields"]["systems"], 11, "{serving}");
    assert_eq!(registered, 11);
    let gateway = gateway.expect("serve logs where its gateway listens");
    assert!(http_get(&gateway, "/healthz").starts_with("HTTP/1.1 200"));
    common::terminate(child);
    assert!(lines.any(|l| l.unwrap().contains("shutting down")));
}

/// A plain HTTP/1.1 GET, answer read whole (the server closes the connection).
fn http_get(address: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn token_mint_needs_a_usable_secret_and_known_roles() {
    let (_dir, path) = config_dir("");
    let minted = aimbus(
        &path,
        &["token", "mint", "--sub", "cmc_001", "--role", "publisher"],
        &[],
    );
    assert!(minted.status.success(), "{}", stderr(&minted));
    assert_eq!(stdout(&minted).trim().split('.').count(), 3, "a JWT");
    assert!(
        path.with_file_name("jwt.secret").exists(),
        "the secret file was created"
    );
    let short = aimbus(
        &path,
        &["token", "mint", "--sub", "cmc_001", "--role", "publisher"],
        &[("AIMBUS_JWT_SECRET", "short")],
    );
    assert_eq!(short.status.code(), Some(2));
    assert!(stderr(&short).contains("too short"), "{}", stderr(&short));
    let unknown = aimbus(
        &path,
        &["token", "mint", "--sub", "cmc_001", "--role", "root"],
        &[],
    );
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("unknown role `root`"),
        "{}",
        stderr(&unknown)
    );
}
