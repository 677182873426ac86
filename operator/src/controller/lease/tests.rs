use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::elect::{Holding, Verdict, judge};
use super::*;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn held_by(holder: Option<&str>, renewed: i64) -> Holding {
    Holding {
        holder: holder.map(str::to_owned),
        renewed: Some(at(renewed)),
        duration: Duration::from_secs(2),
    }
}

#[test]
fn a_free_released_or_expired_lease_is_taken_naming_what_the_previous_holder_may_have_started() {
    let take = |previous_until| Verdict::Take { previous_until };
    let ahead = |secs| at(secs).checked_add(VOUCH_AHEAD).unwrap();
    assert_eq!(
        judge(None, "me", Duration::ZERO, false),
        take(Timestamp::MIN)
    );
    let released = held_by(None, 5);
    assert_eq!(
        judge(Some(&released), "me", Duration::ZERO, false),
        take(at(5)),
        "released: at once, and nothing after the release started"
    );
    let held = held_by(Some("other"), 5);
    assert_eq!(
        judge(Some(&held), "me", Duration::from_secs(2), false),
        take(ahead(5)),
        "unchanged for a whole lease: a holder starts no claimed tick after its last renewTime and a little"
    );
}

#[test]
fn a_lease_is_waited_for_by_this_followers_own_clock_not_the_holders() {
    // The holder's renewTime may be far in the past by this follower's wall clock (skew): only
    // how long this follower has seen it unchanged counts.
    let held = held_by(Some("other"), -3600);
    assert_eq!(
        judge(Some(&held), "me", Duration::from_millis(500), false),
        Verdict::WaitFor(Duration::from_millis(1500))
    );
    assert_eq!(
        judge(Some(&held), "me", Duration::ZERO, false),
        Verdict::WaitFor(Duration::from_secs(2))
    );
}

#[test]
fn without_election_the_holder_is_waited_out_once_then_taken() {
    let renewed_since = held_by(Some("other"), 9);
    assert_eq!(
        judge(Some(&renewed_since), "me", Duration::ZERO, true),
        Verdict::Take {
            previous_until: at(9).checked_add(VOUCH_AHEAD).unwrap()
        }
    );
}

#[test]
fn leading_lasts_the_renew_deadline_after_a_renewal_and_ends_when_revoked() {
    let leading = Leading::new(Duration::from_millis(200));
    assert!(!leading.now(), "not before the Lease is taken");
    leading.renewed(std::time::Instant::now());
    assert!(leading.now());
    leading.renewed(std::time::Instant::now() - Duration::from_millis(300));
    assert!(leading.now(), "an older renewal never moves it back");
    leading.revoke();
    assert!(!leading.now());
    let late = Leading::new(Duration::ZERO);
    late.renewed(std::time::Instant::now());
    assert!(!late.now(), "past the renew deadline");
    assert!(Leading::always().now());
}

#[test]
fn settings_that_could_let_two_replicas_lead_are_refused() {
    let ok = LeaseSettings::new(&crate::config::LeaseConfig::default(), "ns", "me".into());
    assert_eq!(ok.problem(), None);
    let late_deadline = LeaseSettings {
        renew_deadline: Duration::from_secs(2),
        ..ok.clone()
    };
    assert!(
        late_deadline
            .problem()
            .unwrap()
            .contains("shorter than the lease duration")
    );
    let slow_retry = LeaseSettings {
        retry_period: Duration::from_secs(1),
        ..ok.clone()
    };
    assert!(
        slow_retry
            .problem()
            .unwrap()
            .contains("half the renew deadline")
    );
    let fractional = LeaseSettings {
        duration: Duration::from_millis(2500),
        ..ok
    };
    assert!(fractional.problem().is_some());
}
