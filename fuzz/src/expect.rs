//! `expect`: the grammar in `mcall_engine::expect`, then matching an output and a status.
//!
//! Fields: expression, output, status.

use mcall_engine::{Captured, Subject, parse_expectation};

use crate::Fields;

pub(crate) fn run(data: &[u8]) {
    let f = Fields::new(data);
    let source = f.text(0);
    // Parsed twice (each parse compiles its regex): determinism is the property, and a
    // rejection is compared from the same two parses rather than parsed again.
    let (expectation, again) = match (parse_expectation(source), parse_expectation(source)) {
        (Ok(expectation), Ok(again)) => (expectation, again),
        (Err(error), Err(again)) => {
            assert_eq!(error, again, "a rejection is deterministic");
            return;
        }
        (first, second) => panic!(
            "parsing is not deterministic: {:?} then {:?}",
            first.err(),
            second.err()
        ),
    };
    assert_eq!(expectation.source(), again.source());
    let output = Captured::of(f.text(1).as_bytes(), 64 * 1024);
    let status = f.text(2).trim().parse::<i64>().ok();
    for is_http in [false, true] {
        let subject = Subject {
            text: &output.text,
            lines: output.lines,
            status,
            is_http,
        };
        assert_eq!(
            expectation.matches(&subject),
            again.matches(&subject),
            "matching is deterministic"
        );
    }
}
