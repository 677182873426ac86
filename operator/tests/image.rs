//! The images of `cargo xtask image` on a real containerd: the three archives import (and a
//! second import is skipped), containerd reads back their configs, and they run with runc — the
//! operator's `mcall` (its glibc from the image) runs a `cmd` task through the image's /bin/sh on
//! a read-only root, the shell image runs busybox applets as 65532, pause waits until SIGTERM.
//!
//! Here, not in mcall-tests, because it packages the `mcall` binary cargo builds for this
//! package's tests (`CARGO_BIN_EXE_mcall`). Needs root, containerd, ctr and runc, and the pause
//! binary (`MCALL_PAUSE_BIN`, or `pause` in the `cargo xtask tools` directory).

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mcall_tests::image::{ImageArchive, Imported, TestContainerd, write_project_images};
use serde_json::Value;

const MCALL: &str = env!("CARGO_BIN_EXE_mcall");
const RUN_TIMEOUT: Duration = Duration::from_secs(20);

fn pause_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MCALL_PAUSE_BIN") {
        return path.into();
    }
    mcall_tests::tools_bin_dir()
        .expect("the tools directory (or set MCALL_PAUSE_BIN)")
        .join("pause")
}

/// Waits for `command` at most RUN_TIMEOUT, killing it then.
fn output_within(command: &mut Command) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ctr starts");
    let deadline = Instant::now() + RUN_TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{command:?} did not finish within {RUN_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// `ctr run --rm … <options> <reference> <id> <args>`: stdout, asserting success.
fn run(
    containerd: &TestContainerd,
    options: &[&str],
    image: &ImageArchive,
    args: &[&str],
) -> String {
    let id = format!(
        "mcall-image-test-{}-{}",
        std::process::id(),
        image.id.short()
    );
    let mut command = containerd.ctr_run();
    command
        .args(options)
        .arg(image.reference.to_string())
        .arg(&id)
        .args(args);
    let out = output_within(&mut command);
    assert!(
        out.status.success(),
        "{command:?}: {}\n{}\ncontainerd log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        containerd.log_tail(20)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The image config containerd holds for `image` (read back by its digest).
fn stored_config(containerd: &TestContainerd, image: &ImageArchive) -> Value {
    let out = output_within(
        containerd
            .ctr()
            .args(["content", "get", &image.id.to_string()]),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn images_import_into_containerd_and_run() {
    let out = tempfile::tempdir().unwrap();
    let archives = write_project_images(MCALL.as_ref(), &pause_binary(), out.path()).unwrap();
    let [operator, shell, pause] = &archives[..] else {
        panic!("three images: {archives:?}");
    };
    let containerd = TestContainerd::start().unwrap();
    let client = containerd.client();
    for archive in &archives {
        assert_eq!(client.ensure(archive).unwrap(), Imported::Imported);
        assert!(client.has_image(archive).unwrap(), "{}", archive.reference);
        assert_eq!(client.ensure(archive).unwrap(), Imported::AlreadyPresent);
    }
    let listing = output_within(containerd.ctr().args(["images", "check"]));
    let listing = String::from_utf8_lossy(&listing.stdout);
    for archive in &archives {
        let line = listing
            .lines()
            .find(|l| l.starts_with(&format!("{} ", archive.reference)))
            .unwrap_or_else(|| panic!("{} not in\n{listing}", archive.reference));
        assert!(
            line.contains("complete") && line.trim_end().ends_with("true"),
            "{line}"
        );
    }
    let config = stored_config(&containerd, operator);
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(config["config"]["Entrypoint"][0], "/usr/local/bin/mcall");
    assert_eq!(
        stored_config(&containerd, pause)["config"]["User"],
        "65535:65535"
    );

    operator_runs_a_cmd_task(&containerd, operator);
    let stdout = run(
        &containerd,
        &[],
        shell,
        &["/bin/sh", "-c", "echo ok; id -u; ls /bin/wget"],
    );
    assert_eq!(stdout, "ok\n65532\n/bin/wget\n");
    pause_waits_until_sigterm(&containerd, pause);
}

/// As the chart runs it: read-only root, the image's user; the task's command goes through the
/// image's /bin/sh (busybox) and `echo`'s output is matched.
fn operator_runs_a_cmd_task(containerd: &TestContainerd, operator: &ImageArchive) {
    let version = run(
        containerd,
        &["--read-only"],
        operator,
        &["/usr/local/bin/mcall", "--version"],
    );
    assert!(version.starts_with("mcall "), "{version}");

    let tasks = tempfile::tempdir().unwrap();
    let task = r#"{"apiVersion": "mcall.tz.io/v1", "kind": "McallTask", "metadata": {"name": "in-image"},
        "spec": {"type": "cmd", "input": "echo from-the-image | tr a-z A-Z", "expect": "FROM-THE-IMAGE"}}"#;
    std::fs::write(tasks.path().join("task.yaml"), task).unwrap();
    let mount = format!(
        "type=bind,src={},dst=/tasks,options=rbind:ro",
        tasks.path().display()
    );
    let stdout = run(
        containerd,
        &["--read-only", "--mount", &mount],
        operator,
        &["/usr/local/bin/mcall", "run", "-f", "/tasks/task.yaml"],
    );
    assert!(stdout.contains("Succeeded"), "{stdout}");
}

fn pause_waits_until_sigterm(containerd: &TestContainerd, pause: &ImageArchive) {
    let id = format!("mcall-image-test-{}-pause", std::process::id());
    let mut running = containerd
        .ctr_run()
        .arg(pause.reference.to_string())
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        let tasks = output_within(containerd.ctr().args(["tasks", "ls"]));
        let tasks = String::from_utf8_lossy(&tasks.stdout).into_owned();
        if tasks
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("RUNNING"))
        {
            break;
        }
        assert!(running.try_wait().unwrap().is_none(), "pause exited early");
        assert!(Instant::now() < deadline, "pause is not running:\n{tasks}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let kill = output_within(
        containerd
            .ctr()
            .args(["tasks", "kill", "--signal", "SIGTERM", &id]),
    );
    assert!(
        kill.status.success(),
        "{}",
        String::from_utf8_lossy(&kill.stderr)
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = running.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < RUN_TIMEOUT, "pause ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "pause exited with {status}");
}
