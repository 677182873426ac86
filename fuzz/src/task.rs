//! A whole TaskRequest through `TaskPlan::compile`, with secret values to redact.
//!
//! As the controller and `mcall run` build it from a spec. Fields: flags (type, executionMode, failFast, followRedirects), input, expect,
//! headers (`name: value` lines), body, environment (`NAME=value` lines), secret values (one a
//! line), timeout seconds, retryCount.
//!
//! Properties: compile is deterministic, and a rejection never shows a secret value (the
//! message is redacted).

use std::time::Duration;

use mcall_engine::{ExecutionMode, TaskKind, TaskPlan, TaskRequest};

use crate::Fields;

const KINDS: [TaskKind; 3] = [TaskKind::Cmd, TaskKind::Get, TaskKind::Post];

pub(crate) fn run(data: &[u8]) {
    let f = Fields::new(data);
    let request = request(&f);
    let secrets = request.redact.clone();
    match (
        TaskPlan::compile(request.clone()),
        TaskPlan::compile(request),
    ) {
        (Ok(plan), Ok(again)) => {
            assert_eq!(plan.inputs().len(), again.inputs().len());
            assert_eq!(plan.timeout(), again.timeout());
        }
        (Err(e), Err(again)) => {
            assert_eq!(
                e.to_string(),
                again.to_string(),
                "a rejection is deterministic"
            );
            for secret in secrets.iter().filter(|s| masked_whole(s)) {
                assert!(
                    !e.message.contains(secret.as_str()),
                    "secret {secret:?} shown in {e}"
                );
            }
        }
        (a, b) => panic!("compile is not deterministic: {a:?} vs {b:?}"),
    }
}

/// Secrets the property can hold for: the mask `***` itself could form one that contains `*`.
fn masked_whole(secret: &str) -> bool {
    !secret.is_empty() && !secret.contains('*')
}

fn request(f: &Fields) -> TaskRequest {
    let kind = KINDS[f.choice(0, 0, KINDS.len())];
    let mut request = TaskRequest::new(kind, f.text(1));
    request.expect = f.owned(2);
    request.http.headers = f.pairs(3, ':').into_iter().collect();
    request.http.body = f.owned(4);
    request.environment = f.pairs(5, '=').into_iter().collect();
    request.redact = f.text(6).lines().map(str::to_owned).collect();
    if let Ok(seconds) = f.text(7).trim().parse::<u64>() {
        request.timeout = Duration::from_secs(seconds);
    }
    request.retry_count = f.text(8).trim().parse().unwrap_or(0);
    request.execution_mode = match f.choice(0, 1, 2) {
        0 => ExecutionMode::Sequential,
        _ => ExecutionMode::Parallel,
    };
    request.fail_fast = f.choice(0, 2, 2) == 1;
    request.http.follow_redirects = f.choice(0, 3, 2) == 0;
    request
}
