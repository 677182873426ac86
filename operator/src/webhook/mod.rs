//! The validating admission webhook: McallTasks and McallWorkflows that the controllers could
//! never run are refused at `kubectl apply`, with the field and the problem, instead of ending
//! as `phase: Failed` afterwards. It calls the controllers' own checks ([`validate`]), so
//! admission and controllers cannot disagree; the controllers keep checking, for objects
//! admitted while the webhook was down.
//!
//! - [`validate`]: the checks (pure);
//! - [`review`]: an AdmissionReview in, one out (pure);
//! - [`dependencies`]: the tasks a McallTask's dependencies lead to, read for the cycle check;
//! - [`serve`]: the HTTPS server every replica runs (its certificate reloaded when its files
//!   change, see [`crate::https`]).

pub mod dependencies;
pub mod review;
pub mod serve;
pub mod settings;
pub mod validate;

pub use crate::https::ReloadingCert;
pub use serve::{TASK_PATH, WORKFLOW_PATH, serve};
pub use settings::Settings;
