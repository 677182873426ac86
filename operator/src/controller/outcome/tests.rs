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
