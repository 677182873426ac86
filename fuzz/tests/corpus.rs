//! Every seed in `fuzz/corpus/<target>/` through its target, as a plain test: the targets keep
//! compiling and their properties keep holding on the corpus without AFL++ (CI runs this).

use std::path::PathBuf;

fn replay(name: &str) {
    let target = mcall_fuzz::target(name).expect("a target of that name");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name);
    let mut seeds: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "{} has no seeds", dir.display());
    for seed in seeds {
        let data = std::fs::read(&seed).expect("a readable seed");
        // A panic names the seed: `cargo run -p mcall-fuzz -- <target> <seed>` reproduces it.
        println!("{}", seed.display());
        (target.run)(&data);
    }
}

#[test]
fn every_target_has_a_corpus_and_a_replay_test() {
    let replayed = [
        "admission",
        "checks",
        "expect",
        "multi_input",
        "schedule",
        "task",
        "template",
    ];
    let mut names: Vec<&str> = mcall_fuzz::TARGETS.iter().map(|t| t.name).collect();
    names.sort();
    assert_eq!(names, replayed);
    // `cargo xtask fuzz --list` lists the corpus directories.
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut dirs: Vec<String> = std::fs::read_dir(corpus)
        .expect("fuzz/corpus")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    dirs.sort();
    assert_eq!(dirs, replayed);
}

#[test]
fn expect_corpus_replays() {
    replay("expect");
}

#[test]
fn checks_corpus_replays() {
    replay("checks");
}

#[test]
fn multi_input_corpus_replays() {
    replay("multi_input");
}

#[test]
fn task_corpus_replays() {
    replay("task");
}

#[test]
fn schedule_corpus_replays() {
    replay("schedule");
}

#[test]
fn template_corpus_replays() {
    replay("template");
}

#[test]
fn admission_corpus_replays() {
    replay("admission");
}
