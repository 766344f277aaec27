//! Project automation. `main` only dispatches: see `cargo xtask help`.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

const HELP: &str = "\
cargo xtask <command>

Commands:
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
    use super::Totals;

    #[test]
    fn sums_cargo_test_result_lines() {
        let mut t = Totals::default();
        t.add("test result: ok. 13 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.00s");
        t.add("test result: FAILED. 4 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out");
        t.add("running 3 tests");
        assert_eq!((t.passed, t.failed, t.ignored), (17, 1, 2));
    }
}
