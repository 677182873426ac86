//! The Pod executor on the local node: commands in pods of their own, with the task's image,
//! resources and ServiceAccount; the same semantics as in the operator's process; and a run
//! that survives the operator process that started it. Needs root.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::cluster::{
    eventually, eventually_or, gate, kubectl, kubectl_apply, task_status, wait_phase,
};
use common::release::{
    DEV, SERIAL, cluster, install, pod_task, release_pods, shell_image, uninstall,
};
use mcall_tests::ControlPlane;
use mcall_tests::node::NODE_IP;

#[test]
fn commands_run_in_pods_of_their_own_with_the_same_semantics() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (plane, image) = cluster();
    let shell = shell_image(plane);
    let _installed = install(plane, &DEV, image, &[]);
    let ns = "mcall-pod-exec";
    kubectl(plane, &["create", "namespace", ns]);
    kubectl_apply(
        plane,
        ns,
        &pod_task("echo", shell, "echo hello from $(hostname)", 30),
    );
    kubectl_apply(
        plane,
        ns,
        &pod_task("exit3", shell, "echo failing; exit 3", 30),
    );
    kubectl_apply(plane, ns, &pod_task("slow", shell, "sleep 60", 3));
    kubectl_apply(
        plane,
        ns,
        &pod_task("no-image", "mcall.local/missing:1", "true", 30),
    );
    // A memory limit the command exceeds (busybox dd holds a 64 MiB block in memory).
    let oom = pod_task(
        "oom",
        shell,
        "dd if=/dev/zero of=/dev/null bs=64M count=1",
        30,
    ) + "  resources:\n    limits: {memory: 16Mi}\n";
    kubectl_apply(plane, ns, &oom);
    // A Secret's value reaches the command by reference and is masked in the status.
    kubectl(
        plane,
        &[
            "-n",
            ns,
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=token=s3cr3t-value",
        ],
    );
    let secret = pod_task("secret", shell, "echo token=$TOKEN", 30)
        + "  environmentFrom:\n    - name: TOKEN\n      secretKeyRef: {name: creds, key: token}\n";
    kubectl_apply(plane, ns, &secret);
    // More CPU than any node has: never scheduled, its own reason at the deadline.
    let greedy =
        pod_task("greedy", shell, "true", 4) + "  resources:\n    requests: {cpu: \"1000\"}\n";
    kubectl_apply(plane, ns, &greedy);
    // Each attempt runs in a pod of its own, and the failed ones stay for `kubectl logs`.
    let retried = pod_task("retried", shell, "echo attempt; exit 1", 30) + "  retryCount: 1\n";
    kubectl_apply(plane, ns, &retried);

    // Its output comes from the pod (named after the task), and a success leaves no pod.
    let echo = wait_phase(plane, ns, "echo");
    assert_eq!(echo["phase"], "Succeeded", "{echo}");
    let output = echo["result"]["output"].as_str().unwrap_or_default();
    assert!(output.contains("hello from echo-"), "{echo}");
    // The exit code is the error code, the output still judged and reported.
    let exit3 = wait_phase(plane, ns, "exit3");
    assert_eq!(exit3["phase"], "Failed", "{exit3}");
    assert_eq!(exit3["result"]["errorCode"], "3", "{exit3}");
    assert!(
        exit3["result"]["output"]
            .as_str()
            .unwrap_or_default()
            .contains("failing")
    );
    // The timeout ends the pod, not only the wait for it.
    let slow = wait_phase(plane, ns, "slow");
    assert_eq!(slow["result"]["errorCode"], "Timeout", "{slow}");
    // A missing image is its own reason, not a timeout.
    let missing = wait_phase(plane, ns, "no-image");
    assert_eq!(
        missing["result"]["errorCode"], "ImagePullFailed",
        "{missing}"
    );

    let oom = wait_phase(plane, ns, "oom");
    assert_eq!(oom["result"]["errorCode"], "OOMKilled", "{oom}");
    let secret = wait_phase(plane, ns, "secret");
    assert_eq!(secret["phase"], "Succeeded", "{secret}");
    let shown = secret["result"]["output"].as_str().unwrap_or_default();
    assert!(
        shown.contains("token=***") && !shown.contains("s3cr3t"),
        "{secret}"
    );

    let greedy = wait_phase(plane, ns, "greedy");
    assert_eq!(greedy["result"]["errorCode"], "Unschedulable", "{greedy}");
    let retried = wait_phase(plane, ns, "retried");
    assert_eq!(retried["phase"], "Failed", "{retried}");
    assert_eq!(retried["result"]["errorCode"], "1", "{retried}");

    let pods = |selector: &str| {
        kubectl(
            plane,
            &["-n", ns, "get", "pods", "-l", selector, "-o", "name"],
        )
    };
    eventually("the succeeded pod to go", Duration::from_secs(30), || {
        (pods("mcall.tz.io/task=echo").is_empty()).then_some(())
    });
    // The timed-out command is stopped; its pod stays, ended, as a failed one.
    let slow_phase = eventually("the timed-out pod to end", Duration::from_secs(30), || {
        let phase = kubectl(
            plane,
            &[
                "-n",
                ns,
                "get",
                "pods",
                "-l",
                "mcall.tz.io/task=slow",
                "-o",
                "jsonpath={.items[*].status.phase}",
            ],
        );
        (phase == "Failed").then_some(phase)
    });
    assert_eq!(slow_phase, "Failed");
    // A failed command's pod stays for `kubectl logs`, until its task is deleted.
    assert!(!pods("mcall.tz.io/task=exit3").is_empty());
    let attempts = pods("mcall.tz.io/task=retried");
    assert_eq!(
        attempts.lines().count(),
        2,
        "one pod per attempt: {attempts}"
    );
    assert!(
        pods("mcall.tz.io/task=greedy").is_empty(),
        "an unscheduled pod goes"
    );

    // Deleting a task whose command runs ends its pod (the process is gone, not orphaned).
    kubectl_apply(plane, ns, &pod_task("long", shell, "sleep 300", 600));
    eventually("the long command's pod", Duration::from_secs(60), || {
        (!pods("mcall.tz.io/task=long").is_empty()).then_some(())
    });
    kubectl(
        plane,
        &["-n", ns, "delete", "mcalltask", "long", "--wait=false"],
    );
    eventually(
        "the deleted task's pod to go",
        Duration::from_secs(60),
        || pods("mcall.tz.io/task=long").is_empty().then_some(()),
    );

    // Changing a running task's spec ends the old run's pod; the new generation runs anew.
    kubectl_apply(plane, ns, &pod_task("changed", shell, "sleep 300", 600));
    let first = eventually(
        "the first generation's pod",
        Duration::from_secs(60),
        || {
            let pod = pods("mcall.tz.io/task=changed");
            (!pod.is_empty()).then_some(pod)
        },
    );
    kubectl_apply(plane, ns, &pod_task("changed", shell, "echo second", 600));
    let second = eventually(
        "the second generation's result",
        Duration::from_secs(60),
        || {
            let status = task_status(plane, ns, "changed");
            (status["observedGeneration"] == 2 && status["phase"] == "Succeeded").then_some(status)
        },
    );
    assert!(
        second["result"]["output"]
            .as_str()
            .unwrap_or_default()
            .contains("second"),
        "{second}"
    );
    eventually(
        "the first generation's pod to go",
        Duration::from_secs(60),
        || (!pods("mcall.tz.io/task=changed").contains(&first)).then_some(()),
    );

    // A workflow step runs in a pod too (the step's executor, carried into its child task).
    let workflow = format!(
        "apiVersion: mcall.tz.io/v1\nkind: McallWorkflow\nmetadata:\n  name: wf\nspec:\n  tasks:\n    - name: step\n      type: cmd\n      input: hostname\n      executor: {{type: Pod, image: {shell}}}\n"
    );
    kubectl_apply(plane, ns, &workflow);
    let phase = eventually("the workflow to end", Duration::from_secs(60), || {
        let phase = kubectl(
            plane,
            &[
                "-n",
                ns,
                "get",
                "mcallworkflow",
                "wf",
                "-o",
                "jsonpath={.status.phase}",
            ],
        );
        matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase)
    });
    assert_eq!(phase, "Succeeded");
    let child = kubectl(
        plane,
        &[
            "-n",
            ns,
            "get",
            "mcalltasks",
            "-l",
            "mcall.tz.io/workflow=wf",
            "-o",
            "jsonpath={.items[0].status.result.output}",
        ],
    );
    assert!(child.trim().starts_with("wf-"), "the step ran on {child:?}");
    uninstall(plane, &DEV);
    kubectl(plane, &["delete", "namespace", ns, "--wait=false"]);
    kubectl(
        plane,
        &["delete", "namespace", DEV.namespace, "--wait=false"],
    );
}

/// The running pods of `task`, once there are `count`, each with the marker its command
/// printed first; returns once the task is recorded `Running` too. (A run stopped before that
/// is not adopted but started afresh by the next operator, which finds and follows its pods
/// all the same: the Event is `Started`, not `Adopted`.)
fn running_with_markers(plane: &ControlPlane, ns: &str, task: &str, count: usize) -> Vec<String> {
    let pods = eventually(
        &format!("{count} pod(s) of {task} to run"),
        Duration::from_secs(60),
        || {
            let selector = format!("mcall.tz.io/task={task}");
            let pods = get_jsonpath(
                plane,
                ns,
                &[
                    "pods",
                    "-l",
                    &selector,
                    "--field-selector=status.phase=Running",
                ],
                "{.items[*].metadata.name}",
            );
            let pods: Vec<String> = pods.split_whitespace().map(str::to_owned).collect();
            (pods.len() == count).then_some(pods)
        },
    );
    let markers = pods
        .iter()
        .map(|pod| {
            eventually("the command's marker", Duration::from_secs(30), || {
                let log = kubectl(plane, &["-n", ns, "logs", pod]);
                log.lines()
                    .find(|l| l.starts_with("marker-"))
                    .map(str::to_owned)
            })
        })
        .collect::<Vec<String>>();
    eventually(
        &format!("{task} recorded Running"),
        Duration::from_secs(30),
        || (task_status(plane, ns, task)["phase"] == "Running").then_some(()),
    );
    markers
}

/// Ends the only operator pod: gracefully (it hands its runs over) or by force (it does not
/// get to: its successor waits for the Lease to lapse).
fn end_the_operator(plane: &ControlPlane, force: bool) {
    let operators = release_pods(plane, &DEV);
    assert_eq!(operators.len(), 1, "{operators:?}");
    let mut args = vec!["-n", DEV.namespace, "delete", "pod", &operators[0]];
    match force {
        true => args.extend(["--grace-period=0", "--force"]),
        false => args.push("--wait=true"),
    }
    kubectl(plane, &args);
}

/// Waits for an Event of `reason` about `task` (Events are published apart from the status);
/// panics with the task's status, its Events and the operator's log if none comes.
fn await_event(plane: &ControlPlane, ns: &str, task: &str, reason: &str) {
    let about = format!("--field-selector=involvedObject.name={task}");
    let reasons = || get_jsonpath(plane, ns, &["events", &about], "{.items[*].reason}");
    // From the operator's deletion: its successor starts (a new pod) and takes the Lease first.
    let seen = eventually_or(
        &format!("a {reason} Event of {task}"),
        Duration::from_secs(90),
        || {
            reasons()
                .split_whitespace()
                .any(|r| r == reason)
                .then_some(())
        },
    );
    if seen.is_none() {
        let selector = format!("app.kubernetes.io/instance={}", DEV.release);
        let log = kubectl(
            plane,
            &["-n", DEV.namespace, "logs", "-l", &selector, "--tail=200"],
        );
        panic!(
            "no {reason} Event of {task}: Events {}, status {}\noperator log:\n{log}",
            reasons(),
            task_status(plane, ns, task)
        );
    }
}

/// `kubectl get <what> -o jsonpath=<path>` in `ns`.
fn get_jsonpath(plane: &ControlPlane, ns: &str, what: &[&str], path: &str) -> String {
    let output = format!("jsonpath={path}");
    let mut args = vec!["-n", ns, "get"];
    args.extend_from_slice(what);
    args.extend(["-o", output.as_str()]);
    kubectl(plane, &args)
}

/// The operator stops while commands run in their pods: a one-shot task's and a scheduled
/// run's (graceful stop), then a multi-input task's two (the operator pod deleted by force).
/// The pods run on; the next operator process adopts them (an `Adopted` Event), follows them to
/// their results (the same processes: their markers), records them, and removes the pods;
/// nothing runs twice. The commands wait on a gate the test opens only once the successor has
/// adopted them: a command that ended before its operator stopped would be recorded by that
/// operator, and prove nothing.
#[test]
fn restarted_operators_adopt_running_pods() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (plane, image) = cluster();
    let shell = shell_image(plane);
    let _installed = install(plane, &DEV, image, &[]);
    let ns = "mcall-pod-adopt";
    kubectl(plane, &["create", "namespace", ns]);
    let (port, open) = gate();
    let command = format!(
        "echo marker-$RANDOM$RANDOM; until wget -q -O /dev/null http://{NODE_IP}:{port}/; do sleep 1; done; echo done"
    );
    kubectl_apply(plane, ns, &pod_task("adopted", shell, &command, 120));
    // A scheduled task that ticks yearly, run now by its annotation.
    let scheduled = format!(
        "{}  schedule: '0 0 1 1 *'\n",
        pod_task("ticking", shell, &command, 120)
    )
    .replace(
        "metadata:\n  name: ticking\n",
        "metadata:\n  name: ticking\n  annotations: {mcall.tz.io/run-now: first}\n",
    );
    kubectl_apply(plane, ns, &scheduled);
    let one_shot = running_with_markers(plane, ns, "adopted", 1);
    let ticked = running_with_markers(plane, ns, "ticking", 1);
    end_the_operator(plane, false);
    for task in ["adopted", "ticking"] {
        await_event(plane, ns, task, "Adopted");
    }
    open.store(true, Ordering::SeqCst);

    let status = wait_phase(plane, ns, "adopted");
    assert_eq!(status["phase"], "Succeeded", "{status}");
    let output = status["result"]["output"].as_str().unwrap_or_default();
    assert!(
        output.contains(&one_shot[0]) && output.contains("done"),
        "the result is the first process's: {one_shot:?} in {status}"
    );
    let history = eventually(
        "the scheduled run's record",
        Duration::from_secs(60),
        || {
            let status = task_status(plane, ns, "ticking");
            let history = status["history"].as_array().cloned().unwrap_or_default();
            (!history.is_empty() && status["phase"] != "Running").then_some((status, history))
        },
    );
    let (status, history) = history;
    assert_eq!(history.len(), 1, "one run, not re-run: {status}");
    assert_eq!(history[0]["phase"], "Succeeded", "{status}");
    assert!(
        status.to_string().contains(&ticked[0]),
        "the scheduled result is the first process's: {ticked:?} in {status}"
    );

    // Two inputs at once; the operator gets no chance to hand them over.
    let fanned = format!(
        "apiVersion: mcall.tz.io/v1\nkind: McallTask\nmetadata:\n  name: fanned\nspec:\n  type: cmd\n  executionMode: parallel\n  timeout: 120\n  input: '[{{\"name\": \"a\", \"input\": \"{command}\"}}, {{\"name\": \"b\", \"input\": \"{command}\"}}]'\n  executor:\n    type: Pod\n    image: {shell}\n"
    );
    open.store(false, Ordering::SeqCst);
    kubectl_apply(plane, ns, &fanned);
    let markers = running_with_markers(plane, ns, "fanned", 2);
    end_the_operator(plane, true);
    await_event(plane, ns, "fanned", "Adopted");
    open.store(true, Ordering::SeqCst);
    let status = wait_phase(plane, ns, "fanned");
    assert_eq!(status["phase"], "Succeeded", "{status}");
    for marker in &markers {
        assert!(
            status.to_string().contains(marker),
            "each input's result is the first process's: {marker} in {status}"
        );
    }

    // Still one record of the scheduled run, after another failover.
    let history = task_status(plane, ns, "ticking")["history"].clone();
    assert_eq!(history.as_array().map(Vec::len), Some(1), "{history}");
    eventually("the adopted pods to go", Duration::from_secs(30), || {
        let left = kubectl(plane, &["-n", ns, "get", "pods", "-o", "name"]);
        left.is_empty().then_some(())
    });
    uninstall(plane, &DEV);
    kubectl(plane, &["delete", "namespace", ns, "--wait=false"]);
}

/// A command in a pod runs as its task's ServiceAccount, not as the operator: its token reaches
/// the API server (which answers `/version` to any authenticated account), and RBAC refuses
/// it the Secrets of the operator's namespace. (The probe is `mcall run` of a `get` task, from
/// the operator image: the shell image has no TLS client.)
#[test]
fn a_commands_service_account_cannot_read_the_operators_secrets() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (plane, image) = cluster();
    let _installed = install(plane, &DEV, image, &[]);
    let ns = "mcall-pod-rbac";
    kubectl(plane, &["create", "namespace", ns]);
    kubectl(plane, &["-n", ns, "create", "serviceaccount", "runner"]);
    let script = format!(
        r#"read -r TOKEN < /var/run/secrets/kubernetes.io/serviceaccount/token
export SSL_CERT_FILE=/var/run/secrets/kubernetes.io/serviceaccount/ca.crt
for path in /version /api/v1/namespaces/{}/secrets; do
/usr/local/bin/mcall run -f /dev/stdin <<EOF
apiVersion: mcall.tz.io/v1
kind: McallTask
metadata: {{name: probe}}
spec:
  type: get
  input: https://kubernetes.default.svc$path
  headers: {{Authorization: "Bearer $TOKEN"}}
EOF
echo "$path exit=$?"
done"#,
        DEV.namespace
    );
    let operator_image = format!("{}:{}", image.0, image.1);
    let task = pod_task("probe", &operator_image, &script, 60)
        + "    serviceAccountName: runner\n    automountServiceAccountToken: true\n";
    kubectl_apply(plane, ns, &task);
    let status = wait_phase(plane, ns, "probe");
    assert_eq!(status["phase"], "Succeeded", "{status}");
    let output = status["result"]["output"].as_str().unwrap_or_default();
    assert!(
        output.contains("/version exit=0"),
        "authenticated: {output}"
    );
    let secrets = format!("/api/v1/namespaces/{}/secrets exit=1", DEV.namespace);
    assert!(
        output.contains(&secrets) && output.contains("403"),
        "forbidden: {output}"
    );
    uninstall(plane, &DEV);
    kubectl(plane, &["delete", "namespace", ns, "--wait=false"]);
}
