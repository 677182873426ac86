//! `mcall-fuzz <target>`: under `cargo afl build` (cfg `fuzzing`) the AFL++ persistent loop of
//! one target; in a plain build, a replayer: `mcall-fuzz <target> <file>…` runs each file through
//! the target once (to reproduce a crash with a debugger or a backtrace), and
//! `mcall-fuzz <target> --slowest <dir>…` times every file of the directories (a fuzzer's
//! queues) and prints the slowest, so the time an input takes is measured without the
//! instrumentation's overhead.
#![deny(rust_2018_idioms)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(target) = args.first().and_then(|name| mcall_fuzz::target(name)) else {
        let names: Vec<&str> = mcall_fuzz::TARGETS.iter().map(|t| t.name).collect();
        eprintln!(
            "usage: mcall-fuzz <target> [file…]; targets: {}",
            names.join(", ")
        );
        return ExitCode::from(2);
    };
    run(target, &args[1..])
}

#[cfg(fuzzing)]
fn run(target: &mcall_fuzz::Target, _files: &[String]) -> ExitCode {
    afl::fuzz!(|data: &[u8]| (target.run)(data));
    ExitCode::SUCCESS
}

#[cfg(not(fuzzing))]
fn run(target: &mcall_fuzz::Target, files: &[String]) -> ExitCode {
    if files.first().is_some_and(|f| f == "--slowest") {
        return slowest(target, &files[1..]);
    }
    for file in files {
        match std::fs::read(file) {
            Ok(data) => (target.run)(&data),
            Err(e) => {
                eprintln!("error: reading {file} failed: {e}");
                return ExitCode::FAILURE;
            }
        }
        println!("{file}: ok");
    }
    ExitCode::SUCCESS
}

/// Times each file of `dirs` through the target; prints `inputs <n>` and, for the five slowest,
/// `slowest <microseconds> <file>` (the best of three runs, so a preempted run does not count).
#[cfg(not(fuzzing))]
fn slowest(target: &mcall_fuzz::Target, dirs: &[String]) -> ExitCode {
    use std::time::Instant;
    let time = |data: &[u8]| {
        let started = Instant::now();
        (target.run)(data);
        started.elapsed()
    };
    let mut timed = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            eprintln!("error: reading {dir} failed");
            return ExitCode::FAILURE;
        };
        for path in entries.flatten().map(|e| e.path()).filter(|p| p.is_file()) {
            if let Ok(data) = std::fs::read(&path) {
                timed.push((time(&data), path, data));
            }
        }
    }
    println!("inputs {}", timed.len());
    timed.sort_by_key(|t| std::cmp::Reverse(t.0));
    for (_, path, data) in timed.iter().take(5) {
        let best = (0..3).map(|_| time(data)).min().unwrap_or_default();
        println!("slowest {} {}", best.as_micros(), path.display());
    }
    ExitCode::SUCCESS
}
