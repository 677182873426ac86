use std::time::Duration;

use super::*;

#[test]
fn a_refused_result_is_reported_as_a_failure_naming_the_refusal() {
    let original = TaskOutcome {
        verdict: Verdict::Succeeded,
        output: "x".repeat(100),
        error_code: None,
        http_status: Some(200),
        duration: Duration::from_millis(7),
        retries: 2,
        ..cancelled_before_start()
    };
    let refused = refused_outcome(&original, "status.inputResults: Too many: 300");
    assert_eq!(refused.verdict, Verdict::Failed);
    assert_eq!(refused.error_code.as_deref(), Some("ResultRefused"));
    assert!(
        refused
            .error_message
            .as_deref()
            .unwrap()
            .contains("refused this run's result: status.inputResults: Too many")
    );
    assert!(refused.output.is_empty() && refused.inputs.is_empty());
    assert_eq!(
        (refused.http_status, refused.duration, refused.retries),
        (Some(200), Duration::from_millis(7), 2),
        "what the run measured stays"
    );
}

mod reports {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use mcall_generated::{McallTask, McallTaskStatus, Phase};

    use super::*;
    use crate::controller::fixtures::at;
    use crate::controller::runs::{Claim, HistoryLimits, ScheduledRun};

    fn run(scheduled: Timestamp) -> RunKind {
        RunKind::Scheduled(ScheduledRun {
            scheduled,
            tick: Some(scheduled),
            run_now: None,
            next: Some(at(120)),
            cancel_previous: false,
            limits: HistoryLimits {
                successful: 5,
                failed: 5,
            },
            claim: Claim::Now,
        })
    }

    /// A scheduled task whose status records the run of `in_progress` as running.
    fn task(in_progress: Timestamp) -> McallTask {
        let mut task: McallTask = serde_json::from_value(serde_json::json!({
            "apiVersion": "mcall.tz.io/v1", "kind": "McallTask",
            "metadata": {"name": "t", "namespace": "ns", "generation": 1},
            "spec": {"type": "get", "input": "http://127.0.0.1/", "schedule": "* * * * *"}
        }))
        .unwrap();
        task.status = Some(McallTaskStatus {
            phase: Some(Phase::Running),
            observed_generation: Some(1),
            current_run: Some(MicroTime(in_progress)),
            last_schedule_time: Some(MicroTime(in_progress)),
            ..Default::default()
        });
        task
    }

    fn succeeded() -> TaskOutcome {
        TaskOutcome {
            verdict: Verdict::Succeeded,
            http_status: Some(200),
            error_code: None,
            error_message: None,
            ..cancelled_before_start()
        }
    }

    #[test]
    fn an_overtaken_run_the_status_still_shows_in_progress_reports_as_the_current_run() {
        // The run of minute 1 was overtaken here by the run of minute 2, whose claim has not
        // landed: the status still shows minute 1 running.
        let latest = task(at(60));
        let kind = run(at(60));
        assert!(reports_as_current(&latest, &kind, false));
        let status = outcome_status(&latest, 1, &kind, true, &succeeded(), at(61)).unwrap();
        assert_eq!(status.phase, Some(Phase::Succeeded), "not left Running");
        assert_eq!(status.current_run, None);
        let records: Vec<_> = status.history.iter().flatten().collect();
        assert_eq!(records.len(), 1);
        assert_eq!(
            (
                records[0].scheduled_time.0,
                records[0].error_code.as_deref()
            ),
            (at(60), Some("200"))
        );
        assert_eq!(status.claimed_tick, Some(MicroTime(at(120))));
    }

    #[test]
    fn a_run_overtaken_by_a_claimed_newer_run_adds_only_its_record() {
        let latest = task(at(120));
        let kind = run(at(60));
        assert!(!reports_as_current(&latest, &kind, false));
        let current = reports_as_current(&latest, &kind, false);
        let status = outcome_status(&latest, 1, &kind, current, &succeeded(), at(121)).unwrap();
        assert_eq!(
            status.phase,
            Some(Phase::Running),
            "the newer run's status stays"
        );
        assert_eq!(status.current_run, Some(MicroTime(at(120))));
        assert_eq!(status.history.iter().flatten().count(), 1);
        assert!(reports_as_current(&latest, &RunKind::OneShot, true));
        assert!(!reports_as_current(&latest, &RunKind::OneShot, false));
    }
}
