//! `cargo xtask fuzz <target> --time N`: one target of `fuzz/` under AFL++ (cargo-afl) for N
//! seconds, then its executions, rate, crashes and slowest input, recorded in bench/results/
//! and BENCHMARKS.md. Fails when AFL++ saved a crash or a hang.
//!
//! cargo-afl and the AFL++ it builds live in `~/.cache/mcall/fuzz-tools`, keyed by the
//! cargo-afl version (and, inside, by rustc's): installed on first use, reused after. Building
//! AFL++ needs `make` and a C compiler, not LLVM (its LLVM plugins are not built: Rust
//! instruments with its own LLVM).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};

/// Kept equal to the workspace's `afl` dependency: the runtime must match the tool.
const CARGO_AFL_VERSION: &str = "0.18.2";
/// An input slower than this (one execution, in ms) is a hang for AFL++ and fails the run.
/// The goal is 100 ms; the margin keeps a loaded 2-core machine from reporting false hangs,
/// and the slowest execution is reported either way.
const HANG_MS: u64 = 1000;

pub struct Options<'a> {
    pub target: Option<&'a str>,
    pub seconds: u64,
    pub executions: Option<u64>,
    /// Go on from the last run's queue and counts (`fuzz/out/<target>`) instead of the seeds.
    pub resume: bool,
    /// AFL++ instances at once: `default` (the main one, `-M`) and secondaries `s1`, `s2`, …
    pub jobs: u32,
    /// Record what `fuzz/out/<target>` holds, without building or fuzzing.
    pub record_only: bool,
    pub list: bool,
}

pub fn run(root: &Path, options: &Options<'_>) -> Result<()> {
    let targets = list_targets(root)?;
    if options.list {
        for (name, about) in &targets {
            println!("{name:<12} {about}");
        }
        return Ok(());
    }
    let Some(target) = options.target else {
        bail!("name a target (cargo xtask fuzz --list shows them)");
    };
    ensure!(
        targets.contains_key(target),
        "no fuzz target {target:?}; cargo xtask fuzz --list shows them"
    );
    let out = root.join("fuzz/out").join(target);
    if options.record_only {
        let saved = save_findings(root, target, &out)?;
        record(root, target, &out, 0)?;
        return report_findings(root, target, &saved);
    }
    let tools = Tools::ensure()?;
    let binary = tools.build(root)?;
    let resume = options.resume && !instance_stats(&out)?.is_empty();
    if out.exists() && !resume {
        std::fs::remove_dir_all(&out).with_context(|| format!("removing {}", out.display()))?;
    }
    // AFL++ creates its output directory but not the parents.
    std::fs::create_dir_all(root.join("fuzz/out")).context("creating fuzz/out")?;
    let started = Instant::now();
    let fuzzed = tools.fuzz(root, target, &binary, &out, options, resume);
    // Whatever the instances found is kept even when one of them failed.
    let saved = save_findings(root, target, &out)?;
    fuzzed?;
    record(root, target, &out, started.elapsed().as_secs())?;
    report_findings(root, target, &saved)
}

/// The run's record from the instances' stats in `out`; `wall`: how long this process fuzzed
/// (used only when AFL++ has no run time of its own).
fn record(root: &Path, target: &str, out: &Path, wall: u64) -> Result<()> {
    let instances = instance_stats(out)?;
    ensure!(
        !instances.is_empty(),
        "{} holds no run of {target}",
        out.display()
    );
    let slowest = replay_slowest(root, target, out, &instances)?;
    let report = Report::new(target, &instances, wall, slowest)?;
    report.record(root)?;
    println!("{}", report.summary());
    Ok(())
}

/// Fails naming the findings, if any.
fn report_findings(root: &Path, target: &str, saved: &[PathBuf]) -> Result<()> {
    ensure!(
        saved.is_empty(),
        "{target}: {} crash(es) or hang(s), copied to {}; reproduce with `cargo run -p mcall-fuzz -- {target} <file>`",
        saved.len(),
        root.join("fuzz/crashes").join(target).display()
    );
    Ok(())
}

/// The targets: one corpus directory each (the fuzz crate's tests hold the two lists equal),
/// described by the first line of their module's doc comment (`fuzz/src/<target>.rs`).
fn list_targets(root: &Path) -> Result<BTreeMap<String, String>> {
    let corpus = root.join("fuzz/corpus");
    let mut targets = BTreeMap::new();
    for entry in
        std::fs::read_dir(&corpus).with_context(|| format!("reading {}", corpus.display()))?
    {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let module = root.join("fuzz/src").join(format!("{name}.rs"));
        let about = std::fs::read_to_string(&module)
            .unwrap_or_default()
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("//!"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        targets.insert(name, about);
    }
    Ok(targets)
}

// === Tools: cargo-afl and AFL++ ===

struct Tools {
    cargo_afl: PathBuf,
    /// XDG_DATA_HOME for cargo-afl: where it keeps the AFL++ it built.
    data: PathBuf,
    target_dir: PathBuf,
}

impl Tools {
    fn ensure() -> Result<Tools> {
        let home = std::env::var_os("HOME").context("HOME is not set")?;
        let base = PathBuf::from(home).join(".cache/mcall/fuzz-tools");
        let root = base.join(format!("cargo-afl-{CARGO_AFL_VERSION}"));
        let tools = Tools {
            cargo_afl: root.join("bin/cargo-afl"),
            data: base.join(format!("afl-data-{CARGO_AFL_VERSION}")),
            target_dir: base.join("target"),
        };
        if !tools.cargo_afl.exists() {
            println!(
                "[fuzz] installing cargo-afl {CARGO_AFL_VERSION} into {}",
                root.display()
            );
            let root_arg = root.display().to_string();
            crate::run_command(
                Path::new("."),
                "cargo",
                &[
                    "install",
                    "cargo-afl",
                    "--locked",
                    "--version",
                    CARGO_AFL_VERSION,
                    "--root",
                    &root_arg,
                ],
            )?;
        }
        if !tools.afl_built()? {
            println!("[fuzz] building AFL++ (make and a C compiler; a few minutes)");
            let status = tools
                .command()
                .args(["afl", "config", "--build"])
                .status()
                .context("running `cargo afl config --build`")?;
            ensure!(
                status.success(),
                "`cargo afl config --build` failed ({status}); it needs make and a C compiler \
                 (apt-get install make gcc)"
            );
        }
        Ok(tools)
    }

    /// Whether AFL++ is built for this rustc: cargo-afl keeps it under
    /// `afl.rs/rustc-<version>-<commit>/afl.rs-<version>/`.
    fn afl_built(&self) -> Result<bool> {
        let rustc = Command::new("rustc")
            .arg("--version")
            .output()
            .context("running rustc --version")?;
        let version = String::from_utf8_lossy(&rustc.stdout)
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let prefix = format!("rustc-{version}-");
        let Ok(entries) = std::fs::read_dir(self.data.join("afl.rs")) else {
            return Ok(false);
        };
        Ok(entries.flatten().any(|e| {
            e.file_name().to_string_lossy().starts_with(&prefix)
                && e.path()
                    .join(format!("afl.rs-{CARGO_AFL_VERSION}/afl/bin/afl-fuzz"))
                    .exists()
        }))
    }

    /// `cargo-afl` with its data directory; called as `cargo-afl afl …`, as cargo would.
    fn command(&self) -> Command {
        let mut command = Command::new(&self.cargo_afl);
        command.env("XDG_DATA_HOME", &self.data);
        // cargo-afl finds cargo through $CARGO, which only cargo's own children have.
        if std::env::var_os("CARGO").is_none() {
            command.env("CARGO", "cargo");
        }
        command
    }

    /// The instrumented build of `mcall-fuzz` (the workspace's `fuzz` profile); returns the
    /// binary. It has a target directory of its own beside the tools: instrumented artifacts
    /// would otherwise replace the plain ones of every dependency in the usual one.
    fn build(&self, root: &Path) -> Result<PathBuf> {
        let status = self
            .command()
            .args(["afl", "build", "--profile", "fuzz", "-p", "mcall-fuzz"])
            .env("CARGO_TARGET_DIR", &self.target_dir)
            .current_dir(root)
            .status()
            .context("running `cargo afl build`")?;
        ensure!(status.success(), "`cargo afl build` failed ({status})");
        Ok(self.target_dir.join("fuzz/mcall-fuzz"))
    }

    /// AFL++ on `target` for `options.seconds`, or until `options.executions` in all (a resumed
    /// run counts its predecessors' too: AFL++ restores them from its stats), in
    /// `options.jobs` instances: `default` leads (`-M`), the others follow (`-S s<n>`); each
    /// runs until its share of the executions still to make.
    fn fuzz(
        &self,
        root: &Path,
        target: &str,
        binary: &Path,
        out: &Path,
        options: &Options<'_>,
        resume: bool,
    ) -> Result<()> {
        let done = match resume {
            true => instance_stats(out)?,
            false => Vec::new(),
        };
        let remaining = options.executions.map(|total| {
            let so_far: u64 = done.iter().map(|s| s.executions).sum();
            total
                .saturating_sub(so_far)
                .div_ceil(u64::from(options.jobs))
        });
        let mut instances = Instances::default();
        for job in 0..options.jobs {
            let name = match job {
                0 => "default".to_owned(),
                n => format!("s{n}"),
            };
            // An instance that ran before resumes from its own queue; a new one from the seeds.
            let earlier = done.iter().find(|s| s.name == name);
            let input = match earlier {
                Some(_) => PathBuf::from("-"),
                None => root.join("fuzz/corpus").join(target),
            };
            let mut command = self.command();
            command
                .args(["afl", "fuzz", "-i"])
                .arg(&input)
                .arg("-o")
                .arg(out);
            // A single instance runs as before (no -M: it trims and picks its seeds as AFL++
            // does by default); several share their finds through the main one.
            if options.jobs > 1 {
                command.args([if job == 0 { "-M" } else { "-S" }, &name]);
            }
            command.args(["-V", &options.seconds.to_string()]);
            if let Some(remaining) = remaining {
                let own = earlier.map_or(0, |s| s.executions);
                command.args(["-E", &(own + remaining).to_string()]);
            }
            command
                .args(["-t", &HANG_MS.to_string(), "--"])
                .arg(binary)
                .arg(target)
                .current_dir(root)
                // Plain status lines instead of the curses screen; no CPU pinning on a shared
                // machine; the host's core_pattern and CPU governor are not ours to change.
                .env("AFL_NO_UI", "1")
                .env("AFL_NO_AFFINITY", "1")
                .env("AFL_SKIP_CPUFREQ", "1")
                .env("AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES", "1");
            if job > 0 {
                // The main instance's lines on the console; the others' in a file each.
                std::fs::create_dir_all(out)?;
                let log = std::fs::File::create(out.join(format!("{name}.log")))?;
                command.stdout(log.try_clone()?).stderr(log);
            }
            instances.spawn(name, command)?;
        }
        instances.wait()
    }
}

/// The AFL++ instances of a run, each in a process group of its own (cargo-afl runs afl-fuzz
/// as its child): when one fails, or this process cannot go on, the others are interrupted
/// rather than left fuzzing.
#[derive(Default)]
struct Instances {
    running: Vec<(String, std::process::Child)>,
}

impl Instances {
    fn spawn(&mut self, name: String, mut command: Command) -> Result<()> {
        use std::os::unix::process::CommandExt as _;
        let child = command
            .process_group(0)
            .spawn()
            .context("running `cargo afl fuzz`")?;
        self.running.push((name, child));
        Ok(())
    }

    /// Until every instance has ended; the first failure interrupts the others.
    fn wait(mut self) -> Result<()> {
        let (mut failed, mut interrupted) = (Vec::new(), false);
        while !self.running.is_empty() {
            let mut still = Vec::new();
            for (name, mut child) in std::mem::take(&mut self.running) {
                match child.try_wait().context("waiting for `cargo afl fuzz`")? {
                    Some(status) if !status.success() => failed.push(format!("{name}: {status}")),
                    Some(_) => {}
                    None => still.push((name, child)),
                }
            }
            self.running = still;
            if !failed.is_empty() && !interrupted {
                self.interrupt();
                interrupted = true;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        ensure!(
            failed.is_empty(),
            "`cargo afl fuzz` failed ({})",
            failed.join(", ")
        );
        Ok(())
    }

    /// SIGINT to each running instance's group: AFL++ writes its stats and stops.
    fn interrupt(&self) {
        for (_, child) in &self.running {
            let _ = Command::new("kill")
                .args(["-INT", "--", &format!("-{}", child.id())])
                .status();
        }
    }
}

impl Drop for Instances {
    fn drop(&mut self) {
        self.interrupt();
        for (_, child) in &mut self.running {
            let _ = child.wait();
        }
    }
}

// === Results ===

/// One AFL++ instance's `fuzzer_stats`.
struct InstanceStats {
    name: String,
    executions: u64,
    stats: BTreeMap<String, String>,
}

/// The stats of every instance that ran in `out` (`default`, `s1`, …), `default` first.
fn instance_stats(out: &Path) -> Result<Vec<InstanceStats>> {
    let mut instances = Vec::new();
    let Ok(entries) = std::fs::read_dir(out) else {
        return Ok(instances);
    };
    for entry in entries.flatten() {
        let path = entry.path().join("fuzzer_stats");
        if !path.exists() {
            continue;
        }
        let stats = read_stats(&path)?;
        let executions = stats
            .get("execs_done")
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{}: no execs_done", path.display()))?;
        instances.push(InstanceStats {
            name: entry.file_name().to_string_lossy().into_owned(),
            executions,
            stats,
        });
    }
    instances.sort_by_key(|i| (i.name != "default", i.name.clone()));
    Ok(instances)
}

fn read_stats(path: &Path) -> Result<BTreeMap<String, String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect())
}

/// Copies what AFL++ saved as crashes and hangs to `fuzz/crashes/<target>/` (gitignored), where
/// the next run does not delete them; returns the files copied.
fn save_findings(root: &Path, target: &str, out: &Path) -> Result<Vec<PathBuf>> {
    let keep = root.join("fuzz/crashes").join(target);
    let mut saved = Vec::new();
    let instances = instance_stats(out)?;
    let dirs = instances.iter().flat_map(|i| {
        ["crashes", "hangs"].map(|kind| (kind, i.name.as_str(), out.join(&i.name).join(kind)))
    });
    for (kind, instance, dir) in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            // AFL++ puts a README beside the findings.
            if name.to_string_lossy().starts_with("README") {
                continue;
            }
            std::fs::create_dir_all(&keep)?;
            let to = keep.join(format!("{kind}-{instance}-{}", name.to_string_lossy()));
            std::fs::copy(entry.path(), &to)
                .with_context(|| format!("copying {}", entry.path().display()))?;
            saved.push(to);
        }
    }
    Ok(saved)
}

/// The slowest input of the instances' queues, timed by a plain release build of the targets
/// (`mcall-fuzz <target> --slowest`): AFL++'s own `slowest_exec_ms` stays 0 even when its
/// calibration shows inputs of half a second, and its instrumented build is several times
/// slower than the code users run.
struct Slowest {
    inputs: u64,
    micros: u64,
    file: String,
}

fn replay_slowest(
    root: &Path,
    target: &str,
    out: &Path,
    instances: &[InstanceStats],
) -> Result<Slowest> {
    crate::run_command(
        root,
        "cargo",
        &["build", "--release", "--quiet", "-p", "mcall-fuzz"],
    )?;
    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    // Relative to the root: the record names the slowest file without this machine's paths.
    let out = out.strip_prefix(root).unwrap_or(out);
    let queues = instances.iter().map(|i| out.join(&i.name).join("queue"));
    let output = Command::new(target_dir.join("release/mcall-fuzz"))
        .current_dir(root)
        .arg(target)
        .arg("--slowest")
        .args(queues)
        .output()
        .context("running mcall-fuzz --slowest")?;
    let text = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "mcall-fuzz --slowest failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let field = |line: &str, n: usize| line.split_whitespace().nth(n).map(str::to_owned);
    let inputs = text.lines().find(|l| l.starts_with("inputs "));
    let slowest = text
        .lines()
        .filter(|l| l.starts_with("slowest "))
        .filter_map(|l| Some((field(l, 1)?.parse::<u64>().ok()?, field(l, 2)?)))
        .max_by_key(|(micros, _)| *micros);
    let (micros, file) = slowest.unwrap_or_default();
    Ok(Slowest {
        inputs: inputs.and_then(|l| field(l, 1)?.parse().ok()).unwrap_or(0),
        micros,
        file,
    })
}

struct Report {
    target: String,
    /// AFL++ instances counted (`--jobs`, now or in an earlier run resumed).
    jobs: usize,
    executions: u64,
    seconds: u64,
    crashes: u64,
    hangs: u64,
    slowest: Slowest,
    corpus: u64,
    coverage: String,
}

impl Report {
    /// All instances together: executions, crashes and hangs summed, the run time of the
    /// longest; the corpus and coverage of the main one; the slowest input replayed.
    fn new(
        target: &str,
        instances: &[InstanceStats],
        wall: u64,
        slowest: Slowest,
    ) -> Result<Report> {
        let main = instances.first().context("AFL++ left no fuzzer_stats")?;
        let number = |stats: &BTreeMap<String, String>, key: &str| -> Result<u64> {
            stats
                .get(key)
                .with_context(|| format!("fuzzer_stats has no {key}"))?
                .parse()
                .with_context(|| format!("fuzzer_stats: {key} is not a number"))
        };
        let (mut crashes, mut hangs, mut seconds) = (0, 0, 0);
        for instance in instances {
            crashes += number(&instance.stats, "saved_crashes")?;
            hangs += number(&instance.stats, "saved_hangs")?;
            // AFL++'s run_time excludes its start-up (calibrating the seeds).
            seconds = seconds.max(number(&instance.stats, "run_time").unwrap_or(wall));
        }
        Ok(Report {
            target: target.to_owned(),
            jobs: instances.len(),
            executions: instances.iter().map(|i| i.executions).sum(),
            seconds: seconds.max(1),
            crashes,
            hangs,
            slowest,
            corpus: number(&main.stats, "corpus_count")?,
            coverage: main.stats.get("bitmap_cvg").cloned().unwrap_or_default(),
        })
    }

    fn rate(&self) -> u64 {
        self.executions / self.seconds
    }

    fn summary(&self) -> String {
        let projected = (10_000_000 / self.rate().max(1)) / 60;
        format!(
            "{}: {} executions in {} s by {} instance(s) ({} exec/s; 10 M would take ~{projected} \
             min), {} crashes, {} hangs (> {HANG_MS} ms), slowest input {:.1} ms of {} replayed \
             ({}), corpus {} inputs, edge coverage {}",
            self.target,
            self.executions,
            self.seconds,
            self.jobs,
            self.rate(),
            self.crashes,
            self.hangs,
            self.slowest_ms(),
            self.slowest.inputs,
            self.slowest.file,
            self.corpus,
            self.coverage
        )
    }

    fn slowest_ms(&self) -> f64 {
        self.slowest.micros as f64 / 1000.0
    }

    /// `bench/results/fuzz-<target>.json` and the target's row in BENCHMARKS.md.
    fn record(&self, root: &Path) -> Result<()> {
        let json = format!(
            "{{\n  \"benchmark\": \"fuzz\",\n  \"target\": \"{}\",\n  \"fuzzer\": \"cargo-afl {CARGO_AFL_VERSION} (AFL++)\",\n  \"seconds\": {},\n  \"instances\": {},\n  \"executions\": {},\n  \"exec_per_s\": {},\n  \"crashes\": {},\n  \"hangs\": {},\n  \"slowest_input_ms\": {:.1},\n  \"slowest_input\": {:?},\n  \"inputs_replayed\": {},\n  \"corpus_count\": {},\n  \"edge_coverage\": \"{}\"\n}}\n",
            self.target,
            self.seconds,
            self.jobs,
            self.executions,
            self.rate(),
            self.crashes,
            self.hangs,
            self.slowest_ms(),
            self.slowest.file,
            self.slowest.inputs,
            self.corpus,
            self.coverage
        );
        let dir = root.join("bench/results");
        std::fs::create_dir_all(&dir).context("creating bench/results")?;
        let file = dir.join(format!("fuzz-{}.json", self.target));
        std::fs::write(&file, json).with_context(|| format!("writing {}", file.display()))?;
        let instances = match self.jobs {
            1 => String::new(),
            n => format!(", {n} instances"),
        };
        let row = format!(
            "| fuzz {} ({} s, cargo-afl{instances}) | {} exec/s | slowest input {:.1} ms (release replay of {} queue inputs) | {} executions, {} crashes, {} hangs; goal ≥ 10 M executions, 0 crashes, no input > 100 ms |",
            self.target,
            self.seconds,
            self.rate(),
            self.slowest_ms(),
            self.slowest.inputs,
            self.executions,
            self.crashes,
            self.hangs
        );
        crate::bench::update_table(root, &format!("fuzz {}", self.target), &row)
    }
}
