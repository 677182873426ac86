//! Standard conditions (`type`, `status`, `reason`, `message`, `lastTransitionTime`,
//! `observedGeneration`), for the status of any kind.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use mcall_generated::{Condition, ConditionStatus, ConditionType, Reason};

use super::truncate;

/// True once the object did what it is for (`spec/reasons.yaml` declares which kinds set it).
pub const READY: ConditionType = ConditionType::Ready;
/// Set on a McallTask while it waits for its dependencies.
pub const DEPENDENCIES_READY: ConditionType = ConditionType::DependenciesReady;

/// Bytes of a condition's message at most.
const MESSAGE_MAX: usize = 1024;

/// Sets a condition, keeping its transition time when its status did not change; conditions stay
/// sorted by type, so a status built twice is the same bytes.
pub fn set_condition(
    conditions: &mut Option<Vec<Condition>>,
    type_: ConditionType,
    value: ConditionStatus,
    reason: Reason,
    message: &str,
    generation: i64,
    now: Timestamp,
) {
    debug_assert!(
        reason.conditions().contains(&type_),
        "{reason} is not a reason of {type_}"
    );
    let (type_, reason) = (type_.as_str(), reason.as_str());
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

/// The reason of condition `type_`, if set to a reason this version knows.
pub fn reason_of(conditions: Option<&[Condition]>, type_: ConditionType) -> Option<Reason> {
    conditions?
        .iter()
        .find(|c| c.r#type == type_.as_str())
        .and_then(|c| c.reason.parse().ok())
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
        let set = |c: &mut Option<Vec<Condition>>, value, reason, generation, now| {
            set_condition(c, READY, value, reason, "m", generation, now);
        };
        set(
            &mut conditions,
            ConditionStatus::False,
            Reason::Running,
            1,
            at(0),
        );
        set(
            &mut conditions,
            ConditionStatus::False,
            Reason::Failed,
            1,
            at(5),
        );
        let ready = &conditions.as_ref().unwrap()[0];
        assert_eq!(
            (ready.reason.as_str(), &ready.last_transition_time),
            ("Failed", &Time(at(0)))
        );
        set(
            &mut conditions,
            ConditionStatus::True,
            Reason::Succeeded,
            2,
            at(9),
        );
        let ready = &conditions.as_ref().unwrap()[0];
        assert_eq!(
            (&ready.last_transition_time, ready.observed_generation),
            (&Time(at(9)), Some(2))
        );
        assert_eq!(
            reason_of(conditions.as_deref(), READY),
            Some(Reason::Succeeded)
        );
        assert_eq!(
            reason_of(conditions.as_deref(), ConditionType::DependenciesReady),
            None
        );
    }

    #[test]
    fn conditions_stay_sorted_by_type_and_unique() {
        let mut conditions = None;
        let waiting = Reason::WaitingForDependencies;
        for type_ in [READY, ConditionType::DependenciesReady, READY] {
            set_condition(
                &mut conditions,
                type_,
                ConditionStatus::False,
                waiting,
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
        assert_eq!(types, ["DependenciesReady", "Ready"]);
    }
}
