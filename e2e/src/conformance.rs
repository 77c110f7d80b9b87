//! The official Durable Streams conformance suite (`@durable-streams/server-conformance-tests`,
//! pinned in e2e/durable-streams) run against live servers, and its results read back.
//!
//! The suite is a vitest file, so it runs as Node's `npx vitest run conformance.test.mjs` in
//! e2e/durable-streams with vitest's JSON reporter; this module starts it with the environment
//! that file reads (`DS_BASE_URLS`, `DS_TOKEN`, `DS_LONG_POLL_MS`), bounds it, and turns the
//! report into per-group counts a test can assert on and print.
//!
//! Some groups test optional parts of the protocol (forks, idempotent producers, the reserved
//! subscription APIs, see [`OPTIONAL_GROUPS`]): a server may leave them out, so tests report
//! them apart from the rest instead of requiring them.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::temp::TempDir;

/// Bound on one run of the whole suite. Against the reference server it takes about 25 s here
/// (with a 1 s long-poll timeout); a server that answers nothing makes every test wait out its
/// own vitest timeout, which this still bounds.
pub const SUITE_TIMEOUT: Duration = Duration::from_secs(600);

/// The server long-poll timeout the suite is told about unless a test says otherwise (the
/// suite waits at most this plus 1 s for a long-poll to end).
pub const DEFAULT_LONG_POLL: Duration = Duration::from_secs(1);

/// Substrings of group paths testing optional features: forks (`Fork - Creation` and the
/// other `Fork - …` groups), idempotent producers (`Idempotent Producer Operations`, `Stream
/// Closure > Idempotent Producers with Stream Closure`) and the webhook and pull-wake
/// subscriptions (`Reserved subscription APIs`, skipped unless the suite is told the server
/// has them). These are the suite's own `describe()` names in version 0.3.6.
pub const OPTIONAL_GROUPS: [&str; 3] =
    ["Fork", "Idempotent Producer", "Reserved subscription APIs"];

/// What `npm ci` must have installed for the suite to run, with how to install it.
const INSTALL: &str =
    "run scripts/test-prerequisites, or by hand: (cd e2e/durable-streams && npm ci)";

/// e2e/durable-streams, where the suite, its test file and the reference server live.
pub fn suite_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("durable-streams")
}

/// [`suite_dir`], once its node modules are checked: a missing install fails with the command
/// that fixes it rather than with a Node stack trace.
fn installed_suite_dir() -> anyhow::Result<PathBuf> {
    let dir = suite_dir();
    for module in [
        "@durable-streams/server-conformance-tests",
        "@durable-streams/server",
        "vitest",
    ] {
        if !dir.join("node_modules").join(module).exists() {
            bail!("e2e/durable-streams/node_modules/{module} is missing; {INSTALL}");
        }
    }
    Ok(dir)
}

/// Whether the group `path` (titles joined by ` > `) tests an optional feature.
pub fn is_optional(path: &str) -> bool {
    OPTIONAL_GROUPS.iter().any(|name| path.contains(name))
}

/// One run of the suite: where, with which token and timings.
#[derive(Clone, Debug)]
pub struct Suite {
    base_urls: Vec<String>,
    token: Option<String>,
    long_poll: Duration,
    test_name_pattern: Option<String>,
    timeout: Duration,
}

impl Suite {
    /// The suite against `base_urls` (`http://host:port`, one per node; streams are at
    /// `<base>/v1/stream/<name>`). With several, its requests go to each node in turn.
    pub fn new<S: Into<String>>(base_urls: impl IntoIterator<Item = S>) -> Self {
        Self {
            base_urls: base_urls.into_iter().map(Into::into).collect(),
            token: None,
            long_poll: DEFAULT_LONG_POLL,
            test_name_pattern: None,
            timeout: SUITE_TIMEOUT,
        }
    }

    /// Sends `Authorization: Bearer <token>` with every request.
    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    /// The server's long-poll timeout (it must match the server's setting: the suite fails a
    /// long-poll that outlasts it by a second).
    pub fn long_poll(mut self, timeout: Duration) -> Self {
        self.long_poll = timeout;
        self
    }

    /// Runs only the tests whose full name matches the regular expression `pattern` (vitest's
    /// `-t`, e.g. `"Read Operations|SSE Mode"`); the others are reported skipped.
    pub fn only(mut self, pattern: &str) -> Self {
        self.test_name_pattern = Some(pattern.to_owned());
        self
    }

    /// Bounds the run (default [`SUITE_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs `npx vitest run conformance.test.mjs --reporter=json` in e2e/durable-streams and
    /// reads its report. Failed tests are the report's business, not an error: this fails only
    /// when the suite cannot run, runs past its bound (it is killed, with every process it
    /// started), or leaves no report.
    pub async fn run(&self) -> anyhow::Result<Report> {
        if self.base_urls.is_empty() {
            bail!("the conformance suite needs at least one base URL");
        }
        let dir = installed_suite_dir()?;
        let work = TempDir::new("ds-conformance");
        let report_path = work.path().join("vitest.json");

        let mut command = Command::new("npx");
        command
            .current_dir(&dir)
            // `--no`: never download vitest from the registry when the install is missing.
            .args([
                "--no",
                "vitest",
                "run",
                "conformance.test.mjs",
                "--reporter=json",
            ])
            .arg(format!("--outputFile={}", report_path.display()));
        if let Some(pattern) = &self.test_name_pattern {
            command.args(["-t", pattern]);
        }
        command
            .env("DS_BASE_URLS", self.base_urls.join(","))
            .env("DS_LONG_POLL_MS", self.long_poll.as_millis().to_string())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // npx starts vitest, which starts worker processes: all of them share this new
            // process group, so a run that overstays is killed whole (see GroupKill).
            .process_group(0)
            .kill_on_drop(true);
        match &self.token {
            Some(token) => command.env("DS_TOKEN", token),
            None => command.env_remove("DS_TOKEN"),
        };

        let child = command
            .spawn()
            .context("cannot start npx (Node.js 20 or later and npm are needed)")?;
        let mut group = GroupKill(child.id());
        let output = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(output) => output.context("waiting for vitest")?,
            Err(_) => bail!(
                "the conformance suite ran past {:?} against {:?} and was killed",
                self.timeout,
                self.base_urls
            ),
        };
        // It has ended: its process group id may name some other group from now on.
        group.0 = None;

        let text = std::fs::read_to_string(&report_path).with_context(|| {
            format!(
                "vitest left no report ({}); its output:\n{}",
                output.status,
                describe(&output)
            )
        })?;
        Report::parse(&text).with_context(|| {
            format!(
                "cannot read vitest's report ({}); its output:\n{}",
                output.status,
                describe(&output)
            )
        })
    }
}

/// Kills a process group when dropped, unless it has been disarmed (`.0 = None`): the run
/// timed out, or the test awaiting it was itself dropped. `kill_on_drop` alone would end npx
/// but leave vitest and its workers behind.
struct GroupKill(Option<u32>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Output of a finished process, for error messages.
fn describe(output: &std::process::Output) -> String {
    format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// What happened to one test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Passed,
    Failed,
    /// Skipped, pending, todo or disabled: not run.
    Skipped,
}

/// One test's outcome.
#[derive(Clone, Debug)]
pub struct TestOutcome {
    /// Its group path: the titles of the `describe()`s around it, joined by ` > `.
    pub group: String,
    /// Its own title.
    pub title: String,
    pub status: Status,
    /// Why it failed (vitest's failure messages, assertion and stack).
    pub failure_messages: Vec<String>,
}

impl TestOutcome {
    /// Whether it tests an optional feature ([`is_optional`] of its group).
    pub fn optional(&self) -> bool {
        is_optional(&self.group)
    }
}

/// Passed, failed and skipped tests of a group or a whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl Counts {
    fn add(&mut self, status: Status) {
        match status {
            Status::Passed => self.passed += 1,
            Status::Failed => self.failed += 1,
            Status::Skipped => self.skipped += 1,
        }
    }

    /// Every test counted.
    pub fn total(&self) -> usize {
        self.passed + self.failed + self.skipped
    }
}

/// One group's counts.
#[derive(Clone, Debug)]
pub struct GroupCounts {
    /// Its path (see [`TestOutcome::group`]).
    pub name: String,
    /// Whether it tests an optional feature.
    pub optional: bool,
    pub counts: Counts,
}

/// A run of the suite, read from vitest's JSON report.
#[derive(Clone, Debug)]
pub struct Report {
    /// Every test, in the report's order.
    pub outcomes: Vec<TestOutcome>,
}

/// The parts of vitest's JSON report (Jest's format) read here.
#[derive(Deserialize)]
struct VitestReport {
    #[serde(rename = "testResults")]
    test_results: Vec<VitestFile>,
}

#[derive(Deserialize)]
struct VitestFile {
    #[serde(default)]
    name: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    message: String,
    #[serde(rename = "assertionResults", default)]
    assertion_results: Vec<VitestTest>,
}

#[derive(Deserialize)]
struct VitestTest {
    #[serde(rename = "ancestorTitles", default)]
    ancestor_titles: Vec<String>,
    title: String,
    status: String,
    #[serde(rename = "failureMessages", default)]
    failure_messages: Vec<String>,
}

impl Report {
    /// Reads vitest's JSON report (`--reporter=json`). Group paths leave out the outermost
    /// title when every test shares it (a file wrapping the whole suite in one `describe()`),
    /// since it would only repeat on every line. A test file that failed before running
    /// anything (a syntax error, a missing `DS_BASE_URLS`) is an error, and so is a report
    /// without tests.
    pub fn parse(json: &str) -> anyhow::Result<Self> {
        let report: VitestReport =
            serde_json::from_str(json).context("vitest's report is not the JSON expected")?;
        let mut tests = Vec::new();
        for file in report.test_results {
            if file.assertion_results.is_empty() && file.status == "failed" {
                bail!(
                    "{} failed before running tests: {}",
                    file.name,
                    file.message
                );
            }
            tests.extend(file.assertion_results);
        }
        if tests.is_empty() {
            bail!("vitest's report has no tests");
        }
        let shared_outer = tests
            .first()
            .and_then(|t| t.ancestor_titles.first())
            .filter(|outer| {
                tests.iter().all(|t| {
                    t.ancestor_titles.len() > 1 && t.ancestor_titles.first() == Some(outer)
                })
            });
        let skip = usize::from(shared_outer.is_some());
        let outcomes = tests
            .iter()
            .map(|test| TestOutcome {
                group: match test.ancestor_titles[skip..].join(" > ") {
                    path if path.is_empty() => "(top level)".to_owned(),
                    path => path,
                },
                title: test.title.clone(),
                status: match test.status.as_str() {
                    "passed" => Status::Passed,
                    "skipped" | "pending" | "todo" | "disabled" => Status::Skipped,
                    // "failed", and anything newer this does not know: never a pass.
                    _ => Status::Failed,
                },
                failure_messages: test.failure_messages.clone(),
            })
            .collect();
        Ok(Self { outcomes })
    }

    /// Counts per group, in the order the suite runs them.
    pub fn groups(&self) -> Vec<GroupCounts> {
        let mut groups: Vec<GroupCounts> = Vec::new();
        for outcome in &self.outcomes {
            let index = match groups.iter().position(|g| g.name == outcome.group) {
                Some(index) => index,
                None => {
                    groups.push(GroupCounts {
                        name: outcome.group.clone(),
                        optional: outcome.optional(),
                        counts: Counts::default(),
                    });
                    groups.len() - 1
                }
            };
            groups[index].counts.add(outcome.status);
        }
        groups
    }

    /// Counts over every test.
    pub fn totals(&self) -> Counts {
        self.count(|_| true)
    }

    /// Counts over the tests of the protocol's required parts (not [`is_optional`]).
    pub fn required(&self) -> Counts {
        self.count(|outcome| !outcome.optional())
    }

    /// Counts over the tests of optional features.
    pub fn optional(&self) -> Counts {
        self.count(TestOutcome::optional)
    }

    fn count(&self, which: impl Fn(&TestOutcome) -> bool) -> Counts {
        let mut counts = Counts::default();
        for outcome in self.outcomes.iter().filter(|o| which(o)) {
            counts.add(outcome.status);
        }
        counts
    }

    /// The tests of required parts that did not pass (failed, or skipped: a skipped required
    /// test proves nothing).
    pub fn required_not_passed(&self) -> Vec<&TestOutcome> {
        self.outcomes
            .iter()
            .filter(|o| !o.optional() && o.status != Status::Passed)
            .collect()
    }

    /// Like [`Self::assert_required_passed`], and also every test of the optional groups
    /// whose path contains one of `built` (optional features this server has built).
    pub fn assert_passed_with(&self, built: &[&str]) {
        self.assert_required_passed();
        let failed: Vec<&TestOutcome> = self
            .outcomes
            .iter()
            .filter(|test| built.iter().any(|name| test.group.contains(name)))
            .filter(|test| test.status != Status::Passed)
            .collect();
        for test in &failed {
            eprintln!(
                "not passed ({:?}): {} > {}: {}",
                test.status,
                test.group,
                test.title,
                test.failure_messages
                    .first()
                    .and_then(|message| message.lines().next())
                    .unwrap_or_default()
            );
        }
        assert!(
            failed.is_empty(),
            "{} tests of built optional features ({built:?}) did not pass",
            failed.len()
        );
    }

    /// Prints the table and panics unless every test of the protocol's required parts passed
    /// (optional groups are in the table, not in the verdict). A report with no required test
    /// at all fails too: it would prove nothing.
    pub fn assert_required_passed(&self) {
        self.print_table();
        let required = self.required();
        let not_passed = self.required_not_passed();
        assert!(
            not_passed.is_empty() && required.passed > 0,
            "{} of {} required conformance tests did not pass (the table above lists them)",
            not_passed.len(),
            required.total()
        );
    }

    /// A table of the groups with their passed, failed and skipped counts (optional groups
    /// marked), the totals for required and optional groups, then each required test that did
    /// not pass with the first line of why.
    pub fn table(&self) -> String {
        let groups = self.groups();
        let rows: Vec<(String, Counts)> = groups
            .iter()
            .map(|group| {
                let name = if group.optional {
                    format!("{} (optional)", group.name)
                } else {
                    group.name.clone()
                };
                (name, group.counts)
            })
            .chain([
                ("required, in all".to_owned(), self.required()),
                ("optional, in all".to_owned(), self.optional()),
            ])
            .collect();
        let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
        let mut text = format!(
            "{:<width$}  {:>6}  {:>6}  {:>7}\n",
            "group", "passed", "failed", "skipped"
        );
        for (name, counts) in rows {
            let _ = writeln!(
                text,
                "{name:<width$}  {:>6}  {:>6}  {:>7}",
                counts.passed, counts.failed, counts.skipped
            );
        }
        for outcome in self.required_not_passed() {
            let why = outcome
                .failure_messages
                .first()
                .and_then(|message| message.lines().next())
                .unwrap_or("(skipped)");
            let _ = write!(
                text,
                "\nnot passed: {} > {}\n  {why}",
                outcome.group, outcome.title
            );
        }
        text
    }

    /// Prints [`Report::table`] on stderr (the test runner shows it with the test's output).
    pub fn print_table(&self) {
        eprintln!("{}", self.table());
    }
}

/// The reference Durable Streams server (`@durable-streams/server`, run by
/// e2e/durable-streams/ref-server.mjs): the suite's own server, which checks the harness
/// rather than Oort. Killed when dropped.
pub struct ReferenceServer {
    _child: Child,
    url: String,
}

impl ReferenceServer {
    /// Starts it on a free port of 127.0.0.1 with `long_poll` as its long-poll timeout, and
    /// waits (within `timeout`) for the base URL it prints.
    pub async fn start(long_poll: Duration, timeout: Duration) -> anyhow::Result<Self> {
        let dir = installed_suite_dir()?;
        let mut child = Command::new("node")
            .current_dir(&dir)
            .arg("ref-server.mjs")
            .env("DS_LONG_POLL_MS", long_poll.as_millis().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start node (Node.js 20 or later is needed)")?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout from ref-server.mjs"))?;
        let mut lines = BufReader::new(stdout).lines();
        let url = match tokio::time::timeout(timeout, lines.next_line()).await {
            Ok(Ok(Some(line))) => line.trim().to_owned(),
            Ok(Ok(None)) => bail!("ref-server.mjs exited without printing its URL"),
            Ok(Err(err)) => bail!("reading ref-server.mjs's output: {err}"),
            Err(_) => bail!("ref-server.mjs printed no URL within {timeout:?}"),
        };
        if !url.starts_with("http://") {
            bail!("ref-server.mjs printed {url:?}, not a base URL");
        }
        Ok(Self { _child: child, url })
    }

    /// Its base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

#[cfg(test)]
mod tests {
    use super::{Counts, Report, Status, is_optional};

    fn test(ancestors: &[&str], title: &str, status: &str) -> serde_json::Value {
        serde_json::json!({
            "ancestorTitles": ancestors,
            "title": title,
            "status": status,
            "failureMessages": if status == "failed" { vec!["AssertionError: expected 200\n    at x"] } else { vec![] },
        })
    }

    fn report(tests: Vec<serde_json::Value>) -> String {
        serde_json::json!({
            "testResults": [{ "name": "conformance.test.mjs", "status": "failed", "message": "", "assertionResults": tests }]
        })
        .to_string()
    }

    #[test]
    fn counts_per_group_and_sets_optional_groups_apart() {
        let report = Report::parse(&report(vec![
            test(&["Read Operations"], "reads", "passed"),
            test(&["Read Operations"], "reads more", "failed"),
            test(&["Stream Closure", "Close Operations"], "closes", "passed"),
            test(
                &["Stream Closure", "Idempotent Producers with Stream Closure"],
                "p",
                "passed",
            ),
            test(&["Fork - Creation"], "forks", "failed"),
            test(&["Reserved subscription APIs"], "webhooks", "skipped"),
        ]))
        .unwrap();
        let groups: Vec<(String, bool, Counts)> = report
            .groups()
            .into_iter()
            .map(|g| (g.name, g.optional, g.counts))
            .collect();
        let counts = |passed, failed, skipped| Counts {
            passed,
            failed,
            skipped,
        };
        assert_eq!(
            groups,
            [
                ("Read Operations".to_owned(), false, counts(1, 1, 0)),
                (
                    "Stream Closure > Close Operations".to_owned(),
                    false,
                    counts(1, 0, 0)
                ),
                (
                    "Stream Closure > Idempotent Producers with Stream Closure".to_owned(),
                    true,
                    counts(1, 0, 0)
                ),
                ("Fork - Creation".to_owned(), true, counts(0, 1, 0)),
                (
                    "Reserved subscription APIs".to_owned(),
                    true,
                    counts(0, 0, 1)
                ),
            ]
        );
        assert_eq!(report.required(), counts(2, 1, 0));
        assert_eq!(report.optional(), counts(1, 1, 1));
        assert_eq!(report.totals().total(), 6);
        let not_passed = report.required_not_passed();
        assert_eq!(not_passed.len(), 1);
        assert_eq!(not_passed[0].title, "reads more");
        assert_eq!(not_passed[0].status, Status::Failed);
        let table = report.table();
        assert!(table.contains("Fork - Creation (optional)"), "{table}");
        assert!(
            table.contains(
                "not passed: Read Operations > reads more\n  AssertionError: expected 200"
            ),
            "{table}"
        );
    }

    #[test]
    fn drops_an_outer_title_every_test_shares() {
        let report = Report::parse(&report(vec![
            test(&["suite", "Read Operations"], "reads", "passed"),
            test(&["suite", "SSE Mode", "closure"], "streams", "pending"),
        ]))
        .unwrap();
        let groups: Vec<String> = report.groups().into_iter().map(|g| g.name).collect();
        assert_eq!(groups, ["Read Operations", "SSE Mode > closure"]);
        assert_eq!(report.outcomes[1].status, Status::Skipped);
    }

    #[test]
    fn a_file_that_ran_nothing_is_an_error() {
        let json = serde_json::json!({
            "testResults": [{ "name": "conformance.test.mjs", "status": "failed",
                              "message": "DS_BASE_URLS is not set", "assertionResults": [] }]
        });
        let err = Report::parse(&json.to_string()).unwrap_err();
        assert!(err.to_string().contains("DS_BASE_URLS is not set"), "{err}");
        assert!(Report::parse(r#"{"testResults": []}"#).is_err());
        assert!(Report::parse("not json").is_err());
    }

    #[test]
    fn optional_groups_are_the_suites_names() {
        assert!(is_optional("Fork - TTL and Expiry"));
        assert!(is_optional("Idempotent Producer Operations"));
        assert!(!is_optional("SSE Mode"));
        assert!(!is_optional("Stream Closure > SSE with Stream Closure"));
    }
}
