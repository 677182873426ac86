//! Coverage-guided fuzz targets for everything in a McallTask that a user writes and mcall
//! parses: the `expect` grammar, `httpValidation` / `outputValidation` (text, regex and JSONPath
//! checks), multi-input JSON, a whole [`mcall_engine::TaskRequest`], `schedule` + `timeZone`,
//! `inputTemplate` + `inputSources`, and the admission webhook's AdmissionReview handling.
//!
//! Each target takes raw bytes, calls the same public functions the controller calls, and
//! panics only when a property fails (a panic inside mcall is a finding too). The bytes are
//! split into fields at NUL bytes ([`Fields`]), so a seed is a readable list of spec values.
//! `cargo xtask fuzz <target>` runs a target under AFL++; `tests/corpus.rs` replays every
//! seed in `fuzz/corpus/<target>/` as a plain test, so the targets cannot rot.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod admission;
mod checks;
mod expect;
mod fields;
mod multi_input;
mod schedule;
mod task;
mod template;

pub use fields::Fields;

/// One fuzz target: a name for the command line and the function AFL++ calls per input.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every target; each has a module `src/<name>.rs` (its first doc line is what `cargo xtask
/// fuzz --list` shows) and a corpus `corpus/<name>/`.
pub const TARGETS: &[Target] = &[
    Target {
        name: "expect",
        run: expect::run,
    },
    Target {
        name: "checks",
        run: checks::run,
    },
    Target {
        name: "multi_input",
        run: multi_input::run,
    },
    Target {
        name: "task",
        run: task::run,
    },
    Target {
        name: "schedule",
        run: schedule::run,
    },
    Target {
        name: "template",
        run: template::run,
    },
    Target {
        name: "admission",
        run: admission::run,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}
