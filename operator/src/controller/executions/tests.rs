use super::*;

fn key() -> TaskKey {
    TaskKey {
        namespace: "ns".into(),
        name: "t".into(),
    }
}

/// The generation running here, or whose result was written but is not in the cache yet.
fn generation_of(ex: &Executions, uid: &str) -> Option<i64> {
    let runs = ex.runs_here(&key(), uid);
    runs.current.map(|c| c.generation).or(runs.reported)
}

fn last_ran(ex: &Executions, uid: &str) -> Option<Timestamp> {
    ex.runs_here(&key(), uid).last_ran
}

fn scheduled_run_of(ex: &Executions, uid: &str) -> Option<Timestamp> {
    ex.runs_here(&key(), uid).current.and_then(|c| c.scheduled)
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

#[test]
fn a_deletion_cancels_only_the_deleted_tasks_executions() {
    let ex = Executions::default();
    let old = ex.start(key(), "old-uid", 1);
    ex.cancel_deleted(&key(), "new-uid");
    assert!(!old.token.is_cancelled(), "another uid's deletion");
    assert_eq!(ex.tasks(), [(key(), "old-uid".to_owned())]);
    ex.cancel_deleted(&key(), "old-uid");
    assert!(old.token.is_cancelled());
    assert!(ex.is_empty() && ex.tasks().is_empty());
}

#[test]
fn a_reported_run_stays_known_until_the_cache_shows_its_result() {
    let ex = Executions::default();
    let run = ex.start(key(), "uid", 1);
    ex.finish_reported(&key(), &run);
    assert!(ex.is_empty() && ex.tasks().is_empty(), "nothing runs");
    assert_eq!(generation_of(&ex, "uid"), Some(1));
    assert_eq!(generation_of(&ex, "other-uid"), None);
    ex.settle(&key(), "uid", 0);
    assert_eq!(generation_of(&ex, "uid"), Some(1), "an older result");
    ex.settle(&key(), "uid", 1);
    assert_eq!(generation_of(&ex, "uid"), None);

    let run = ex.start(key(), "uid", 2);
    ex.finish_reported(&key(), &run);
    ex.cancel_deleted(&key(), "uid");
    assert_eq!(generation_of(&ex, "uid"), None, "deleted");

    let run = ex.start(key(), "uid", 3);
    ex.finish_reported(&key(), &run);
    let next = ex.start(key(), "uid", 4);
    assert_eq!(generation_of(&ex, "uid"), Some(4), "a new run replaces it");
    ex.finish(&key(), &next);
    assert_eq!(generation_of(&ex, "uid"), None);
}

#[test]
fn every_finished_scheduled_run_counts_as_run_here_and_deleted_tasks_are_forgotten() {
    let ex = Executions::default();
    let old = ex.start_scheduled(key(), "uid", 1, at(10));
    let new = ex.start_scheduled(key(), "uid", 1, at(20));
    ex.confirm_scheduled(&key(), false);
    ex.finish(&key(), &new);
    assert_eq!(last_ran(&ex, "uid"), Some(at(20)));
    ex.finish(&key(), &old);
    assert_eq!(
        last_ran(&ex, "uid"),
        Some(at(20)),
        "an overtaken run finishing later does not move it back"
    );
    let overtaken = ex.start_scheduled(key(), "uid", 1, at(30));
    let current = ex.start_scheduled(key(), "uid", 1, at(40));
    ex.finish(&key(), &overtaken);
    assert_eq!(last_ran(&ex, "uid"), Some(at(30)), "overtaken runs count");
    ex.finish(&key(), &current);

    ex.forget_missing(|_, uid| uid != "uid");
    assert_eq!(last_ran(&ex, "uid"), None);
    assert!(
        ex.inner.lock().unwrap().is_empty(),
        "nothing kept for a gone task"
    );
}

#[test]
fn a_new_generation_replaces_and_cancels_the_old_one() {
    let ex = Executions::default();
    let first = ex.start(key(), "uid", 1);
    assert_eq!(generation_of(&ex, "uid"), Some(1));
    assert_eq!(generation_of(&ex, "other-uid"), None);
    let second = ex.start(key(), "uid", 2);
    assert!(first.token.is_cancelled());
    assert!(!ex.is_current(&key(), &first));
    assert!(ex.is_current(&key(), &second));
    ex.finish(&key(), &first);
    assert_eq!(
        ex.len(),
        1,
        "finishing a replaced execution leaves the new one"
    );
    ex.finish(&key(), &second);
    assert!(ex.is_empty());
}

#[test]
fn a_one_shot_run_of_an_older_generation_is_cancelled_whatever_replaces_it() {
    let ex = Executions::default();
    let old = ex.start(key(), "uid", 1);
    ex.cancel_older_one_shot(&key(), "uid", 1);
    assert!(!old.token.is_cancelled(), "same generation: kept");
    ex.cancel_older_one_shot(&key(), "other-uid", 2);
    assert!(!old.token.is_cancelled(), "another task's uid: kept");
    ex.cancel_older_one_shot(&key(), "uid", 2);
    assert!(old.token.is_cancelled());
    assert!(!ex.is_current(&key(), &old));
    assert_eq!(generation_of(&ex, "uid"), None);
    let scheduled = ex.start_scheduled(key(), "uid", 1, at(0));
    ex.cancel_older_one_shot(&key(), "uid", 2);
    assert!(
        !scheduled.token.is_cancelled(),
        "scheduled runs follow their own policy"
    );
}

#[test]
fn allow_keeps_the_overtaken_run_tracked_until_it_finishes() {
    let ex = Executions::default();
    let old = ex.start_scheduled(key(), "uid", 1, at(0));
    let new = ex.start_scheduled(key(), "uid", 1, at(10));
    ex.confirm_scheduled(&key(), false);
    assert!(!old.token.is_cancelled());
    assert_eq!(ex.len(), 2, "the overtaken run still counts for shutdown");
    assert_eq!(scheduled_run_of(&ex, "uid"), Some(at(10)));
    ex.cancel_deleted(&key(), "uid");
    assert!(
        old.token.is_cancelled() && new.token.is_cancelled(),
        "deletion reaches both"
    );
}

#[test]
fn replace_cancels_only_after_the_claim_and_a_failed_claim_restores_the_old_run() {
    let ex = Executions::default();
    let old = ex.start_scheduled(key(), "uid", 1, at(0));
    let lost = ex.start_scheduled(key(), "uid", 1, at(10));
    assert!(
        !old.token.is_cancelled(),
        "nothing is cancelled before the claim is written"
    );
    ex.forget_unstarted(&key(), &lost);
    assert!(ex.is_current(&key(), &old));
    assert_eq!(ex.len(), 1);
    let won = ex.start_scheduled(key(), "uid", 1, at(10));
    ex.confirm_scheduled(&key(), true);
    assert!(old.token.is_cancelled());
    assert!(ex.is_current(&key(), &won));
    ex.finish(&key(), &old);
    ex.finish(&key(), &won);
    assert!(ex.is_empty());
}

#[test]
fn an_overtaken_run_that_is_aborted_is_forgotten_and_the_current_one_stays() {
    let ex = Executions::default();
    let chained = ex.start_scheduled(key(), "uid", 1, at(10));
    let newer = ex.start_scheduled(key(), "uid", 1, at(20));
    ex.confirm_scheduled(&key(), false);
    ex.forget_unstarted(&key(), &chained);
    assert!(ex.is_current(&key(), &newer));
    assert_eq!(
        ex.len(),
        1,
        "the aborted run no longer holds up a shutdown's drain"
    );
}
