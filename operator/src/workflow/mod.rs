//! The McallWorkflow controller. A run of a workflow is a set of child McallTasks, one per step,
//! that the McallTask controller executes (one engine, visible with `kubectl get mct -l
//! mcall.tz.io/workflow=<name>`). Data flows one way:
//!
//! - **observe** ([`controller`]): the cached workflow, its children (from the task cache) and
//!   the templates its `taskRef` steps name;
//! - **plan** (pure, unit-tested): [`validate`] (with [`dag`]) refuses what the schema cannot
//!   see; [`plan`] decides the run (with [`schedule`], [`steps`], [`child`] and [`render`]);
//! - **apply** ([`controller`]): the status write (first, when it starts a run), the children to
//!   create and delete, and the Events.

pub mod child;
mod controller;
pub mod dag;
pub mod effects;
#[cfg(test)]
mod fixtures;
pub mod observed;
pub mod plan;
mod render;
mod run;
mod schedule;
pub mod steps;
pub mod validate;
mod written;

pub use controller::{FromTaskWatch, Wakeups, workflow_controller};
