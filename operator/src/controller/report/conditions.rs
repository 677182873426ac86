//! Standard conditions (`type`, `status`, `reason`, `message`, `lastTransitionTime`,
//! `observedGeneration`), for the status of any kind.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use mcall_generated::{Condition, ConditionStatus};

use super::truncate;

/// The condition every kind carries: True once the object did what it is for.
pub const READY: &str = "Ready";
/// Set on a McallTask while it waits for its dependencies.
pub const DEPENDENCIES_READY: &str = "DependenciesReady";

/// Bytes of a condition's message at most.
const MESSAGE_MAX: usize = 1024;

/// Sets a condition, keeping its transition time when its status did not change; conditions stay
/// sorted by type, so a status built twice is the same bytes.
pub fn set_condition(
    conditions: &mut Option<Vec<Condition>>,
    type_: &str,
    value: ConditionStatus,
    reason: &str,
    message: &str,
    generation: i64,
    now: Timestamp,
) {
    let conditions = conditions.get_or_insert_with(Vec::new);
    let transition = conditions
        .iter()
        .find(|c| c.r#type == type_ && c.status == value)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    conditions.retain(|c| c.r#type != type_);
    conditions.push(Condition {
        r#type: type_.to_owned(),
        status: value,
        observed_generation: Some(generation),
        last_transition_time: transition,
        reason: reason.to_owned(),
        message: truncate(message, MESSAGE_MAX),
    });
    conditions.sort_by(|a, b| a.r#type.cmp(&b.r#type));
}

/// The reason of condition `type_`, if set.
pub fn reason_of<'a>(conditions: Option<&'a [Condition]>, type_: &str) -> Option<&'a str> {
    conditions?
        .iter()
        .find(|c| c.r#type == type_)
        .map(|c| c.reason.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn a_transition_time_moves_only_when_the_status_changes() {
        let mut conditions = None;
        let set = |c: &mut Option<Vec<Condition>>, value, reason, now| {
            set_condition(c, READY, value, reason, "m", 1, now);
        };
        set(&mut conditions, ConditionStatus::False, "Running", at(0));
        set(&mut conditions, ConditionStatus::False, "Failed", at(5));
        let ready = &conditions.as_ref().unwrap()[0];
        assert_eq!(
            (ready.reason.as_str(), &ready.last_transition_time),
            ("Failed", &Time(at(0)))
        );
        set(&mut conditions, ConditionStatus::True, "Succeeded", at(9));
        assert_eq!(
            conditions.as_ref().unwrap()[0].last_transition_time,
            Time(at(9))
        );
        assert_eq!(reason_of(conditions.as_deref(), READY), Some("Succeeded"));
        assert_eq!(reason_of(conditions.as_deref(), DEPENDENCIES_READY), None);
    }

    #[test]
    fn conditions_stay_sorted_by_type_and_unique() {
        let mut conditions = None;
        for type_ in [READY, DEPENDENCIES_READY, READY] {
            set_condition(
                &mut conditions,
                type_,
                ConditionStatus::False,
                "r",
                "m",
                1,
                at(0),
            );
        }
        let types: Vec<&str> = conditions
            .iter()
            .flatten()
            .map(|c| c.r#type.as_str())
            .collect();
        assert_eq!(types, [DEPENDENCIES_READY, READY]);
    }
}
