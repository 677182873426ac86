//! `mcall-fuzz <target>`: under `cargo afl build` (cfg `fuzzing`) the AFL++ persistent loop of
//! one target; in a plain build, a replayer: `mcall-fuzz <target> <file>…` runs each file through
//! the target once (to reproduce a crash with a debugger or a backtrace).
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
