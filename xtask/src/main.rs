//! Project automation. `main` only dispatches: see `cargo xtask help`.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

const HELP: &str = "\
cargo xtask <command>

Commands:
  demo    the voice demo (`cargo run -p voice-demo`): a complete voice conversation with tools, on the bundled
          provider emulators, or the real OpenAI / Deepgram / ElevenLabs services for each key that is set
  integration
          the end-to-end suites (every `tests/e2e_*.rs` of the workspace: each plugin through the real session
          pipeline against the provider emulators, and the voice demo's conversation)
  live    the same providers against the real services: each plugin's live suite when its key is set
          (OPENAI_API_KEY, DEEPGRAM_API_KEY, ELEVENLABS_API_KEY; skipped with a message otherwise), then the
          voice demo with the real services whose keys are set
  ci      format check, clippy (-D warnings, all targets) and the test suite, as CI runs them
  test    the workspace test suite (unit, integration and doc tests); starts a throwaway redis-server
          on a free loopback port for the Redis suites when one is installed and
          AGENTS_TEST_REDIS_URL is unset (under CI=true a Redis that cannot start is an error)
  help    this text
";

fn main() -> ExitCode {
    let cmd = std::env::args().nth(1).unwrap_or_else(|| "help".to_owned());
    let result = match cmd.as_str() {
        "ci" => ci(),
        "demo" => demo(),
        "integration" => integration(),
        "live" => live(),
        "test" => test(),
        "help" | "--help" | "-h" => {
            eprint!("{HELP}");
            Ok(())
        }
        other => Err(anyhow::anyhow!("unknown command `{other}`\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .status()
        .with_context(|| format!("running {cargo}"))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Runs the workspace tests, echoing cargo's output, then prints one closing line summing every suite:
/// `tests: N passed, N failed, N skipped` (ignored tests count as skipped). Fails when a suite failed or when no test ran at all.
fn test() -> Result<()> {
    let args = ["test", "--workspace", "--all-features", "--locked"];
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let redis = test_redis()?;
    eprintln!("xtask: cargo {}", args.join(" "));
    let mut command = Command::new(&cargo);
    if let Some(r) = &redis {
        command.env("AGENTS_TEST_REDIS_URL", &r.url);
    }
    let mut child = command
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {cargo}"))?;
    let stdout = child.stdout.take().context("capturing cargo test output")?;
    let mut totals = Totals::default();
    let mut out = std::io::stdout().lock();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test output")?;
        totals.add(&line);
        writeln!(out, "{line}")?;
    }
    let status = child.wait().context("waiting for cargo test")?;
    writeln!(
        out,
        "tests: {} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    )?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    if totals.passed == 0 {
        bail!("no test ran");
    }
    Ok(())
}

/// A `redis-server` child process on a private loopback port, stopped when dropped.
struct TestRedis {
    child: Child,
    url: String,
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Redis the test suites use: the caller's `AGENTS_TEST_REDIS_URL`, else a throwaway `redis-server` when one is
/// installed, else none (the Redis suites then print SKIP). Under `CI=true` a missing or failing server is an error,
/// so CI never silently skips the Redis suites.
fn test_redis() -> Result<Option<TestRedis>> {
    if let Ok(url) = std::env::var("AGENTS_TEST_REDIS_URL") {
        eprintln!("xtask: Redis suites use AGENTS_TEST_REDIS_URL={url}");
        return Ok(None);
    }
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    match start_redis() {
        Ok(r) => {
            eprintln!(
                "xtask: Redis suites use a throwaway redis-server at {}",
                r.url
            );
            Ok(Some(r))
        }
        Err(e) if in_ci => Err(e.context("CI=true needs redis-server for the Redis suites")),
        Err(e) => {
            eprintln!(
                "xtask: {e:#}; the Redis suites will SKIP (install redis-server to run them)"
            );
            Ok(None)
        }
    }
}

fn start_redis() -> Result<TestRedis> {
    let port = {
        let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
        probe.local_addr().context("reading the free port")?.port()
    };
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting redis-server")?;
    let mut redis = TestRedis {
        child,
        url: format!("redis://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(redis);
        }
        if let Some(status) = redis.child.try_wait().context("watching redis-server")? {
            bail!("redis-server exited at start ({status})");
        }
        if Instant::now() > deadline {
            bail!("redis-server did not listen on port {port} within 10 s");
        }
        #[allow(clippy::disallowed_methods, reason = "xtask is a synchronous program")]
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sums of cargo's `test result:` lines.
#[derive(Default)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Totals {
    /// Adds the counts of a `test result: ok. 3 passed; 0 failed; 1 ignored; ...` line; other lines are ignored.
    fn add(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split([';', '.']) {
            let mut words = part.split_whitespace();
            let (Some(n), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

/// The voice demo, with the caller's environment (the keys that are set select the real providers).
fn demo() -> Result<()> {
    let extra: Vec<String> = std::env::args().skip(2).collect();
    let mut args = vec!["run", "--quiet", "--package", "voice-demo", "--"];
    args.extend(extra.iter().map(String::as_str));
    cargo(&args)
}

/// The workspace root (the parent of this crate's directory).
fn workspace_root() -> Result<std::path::PathBuf> {
    let manifest = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(std::path::Path::to_path_buf)
        .context("xtask has no parent directory")
}

/// The package name declared in `dir/Cargo.toml` (`name = "..."` of `[package]`).
fn package_name(dir: &std::path::Path) -> Result<String> {
    let path = dir.join("Cargo.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    package_name_in(&text).with_context(|| format!("no package name in {}", path.display()))
}

fn package_name_in(manifest: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
            continue;
        }
        if in_package
            && let Some(rest) = line.strip_prefix("name")
            && let Some(value) = rest.trim_start().strip_prefix('=')
        {
            return Some(value.trim().trim_matches('"').to_owned());
        }
    }
    None
}

/// Every end-to-end suite of the workspace: `(package, test target)` for each `tests/e2e_*.rs` of a member under
/// `crates/`, `plugins/` or `examples/`, sorted.
fn e2e_suites(root: &std::path::Path) -> Result<Vec<(String, String)>> {
    let mut suites = Vec::new();
    for group in ["crates", "plugins", "examples"] {
        let Ok(members) = std::fs::read_dir(root.join(group)) else {
            continue;
        };
        for member in members {
            let dir = member.context("listing workspace members")?.path();
            let Ok(tests) = std::fs::read_dir(dir.join("tests")) else {
                continue;
            };
            let mut names = Vec::new();
            for test in tests {
                let name = test.context("listing tests")?.file_name();
                let name = name.to_string_lossy();
                if let Some(stem) = name.strip_suffix(".rs")
                    && stem.starts_with("e2e_")
                {
                    names.push(stem.to_owned());
                }
            }
            if !names.is_empty() {
                let package = package_name(&dir)?;
                suites.extend(names.into_iter().map(|n| (package.clone(), n)));
            }
        }
    }
    suites.sort();
    Ok(suites)
}

/// Runs the end-to-end suites against the emulators (the provider keys are removed from their environment, so a
/// developer's keys never turn them into paid calls).
fn integration() -> Result<()> {
    let suites = e2e_suites(&workspace_root()?)?;
    if suites.is_empty() {
        bail!("no tests/e2e_*.rs suite found");
    }
    let mut args: Vec<String> = vec!["test".into(), "--locked".into(), "--all-features".into()];
    let mut packages: Vec<&str> = suites.iter().map(|(p, _)| p.as_str()).collect();
    packages.dedup();
    for p in packages {
        args.extend(["-p".into(), p.to_owned()]);
    }
    for (_, test) in &suites {
        args.extend(["--test".into(), test.clone()]);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    eprintln!(
        "xtask: {} end-to-end suites: {}",
        suites.len(),
        suites
            .iter()
            .map(|(p, t)| format!("{p}/{t}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    eprintln!("xtask: cargo {}", args.join(" "));
    let mut command = Command::new(&cargo);
    for var in LIVE_KEYS.iter().flat_map(|(_, vars, _)| vars.iter()) {
        command.env_remove(var);
    }
    let status = command
        .args(&args)
        .status()
        .with_context(|| format!("running {cargo}"))?;
    if !status.success() {
        bail!("the end-to-end suites failed ({status})");
    }
    Ok(())
}

/// A provider, the variables that may hold its key, and its live suites (package, test target).
type LiveProvider = (
    &'static str,
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
);

/// The providers `cargo xtask live` knows.
const LIVE_KEYS: &[LiveProvider] = &[
    (
        "OpenAI",
        &["OPENAI_API_KEY"],
        &[
            ("agents-openai", "live"),
            ("agents-openai", "realtime_live"),
        ],
    ),
    (
        "Deepgram",
        &["DEEPGRAM_API_KEY"],
        &[("agents-deepgram", "live")],
    ),
    (
        "ElevenLabs",
        &["ELEVENLABS_API_KEY", "ELEVEN_API_KEY"],
        &[("agents-elevenlabs", "live")],
    ),
];

/// Runs each provider's live suite when its key is set, then the voice demo with the real services whose keys are
/// set. Providers without a key are skipped with a message; with no key at all nothing runs and it says so.
fn live() -> Result<()> {
    let mut ran = 0;
    for (provider, vars, suites) in LIVE_KEYS {
        let set = vars
            .iter()
            .any(|v| std::env::var(v).is_ok_and(|x| !x.trim().is_empty()));
        if !set {
            eprintln!(
                "xtask: skip {provider}: set {} to run its live suites",
                vars.join(" or ")
            );
            continue;
        }
        for (package, test) in *suites {
            cargo(&[
                "test",
                "--locked",
                "-p",
                package,
                "--test",
                test,
                "--",
                "--nocapture",
            ])?;
        }
        ran += 1;
    }
    if ran == 0 {
        eprintln!(
            "xtask: no provider key set: nothing ran live (`cargo xtask integration` runs the same paths on the emulators)"
        );
        return Ok(());
    }
    eprintln!("xtask: the voice demo with the real services whose keys are set");
    demo()
}

fn ci() -> Result<()> {
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--locked",
        "--",
        "-D",
        "warnings",
    ])?;
    test()
}

#[cfg(test)]
mod tests {
    use super::{Totals, e2e_suites, package_name_in, workspace_root};

    #[test]
    fn reads_the_package_name_of_a_manifest() {
        let manifest = "[workspace]\nname = \"no\"\n\n[package]\nversion = \"1\"\nname = \"voice-demo\"\n[dependencies]\nname = \"x\"\n";
        assert_eq!(package_name_in(manifest).as_deref(), Some("voice-demo"));
        assert_eq!(package_name_in("[dependencies]\nname = \"x\"\n"), None);
    }

    #[test]
    fn finds_the_workspace_end_to_end_suites() {
        let suites = e2e_suites(&workspace_root().unwrap()).unwrap();
        assert!(
            suites.contains(&("voice-demo".to_owned(), "e2e_conversation".to_owned())),
            "{suites:?}"
        );
        assert!(
            suites.iter().all(|(_, t)| t.starts_with("e2e_")),
            "{suites:?}"
        );
    }

    #[test]
    fn sums_cargo_test_result_lines() {
        let mut t = Totals::default();
        t.add("test result: ok. 13 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.00s");
        t.add("test result: FAILED. 4 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out");
        t.add("running 3 tests");
        assert_eq!((t.passed, t.failed, t.ignored), (17, 1, 2));
    }
}
