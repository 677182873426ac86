//! Observing a task: what the cache, this process's runs, the operator's configuration and its
//! Lease say about it, gathered into what the pure planners decide on. Reads only memory.

use mcall_generated::{Phase, Reason};

use super::context::{Context, Facts};
use super::decide::{self, COMMANDS_NOT_ALLOWED};
use super::dependencies;
use super::prepare::{self, Validation};
use super::scheduled;

/// What a one-shot task's plan needs, beyond its status and this process's runs.
pub fn one_shot<'a>(
    ctx: &Context,
    facts: &'a Facts,
    running_here: Option<i64>,
) -> decide::Observed<'a> {
    let task = facts.task.as_ref();
    let validation = prepare::validate(&ctx.store, task);
    let dependencies = dependencies::phases(&ctx.store, task);
    // Only a dependency that waits can close a cycle; most tasks skip the walk.
    let dependency_cycle = dependencies
        .iter()
        .any(|(_, phase)| *phase == Some(Phase::Pending))
        .then(|| dependencies::cycle(&ctx.store, task))
        .flatten();
    decide::Observed {
        generation: facts.generation,
        status: task.status.as_ref(),
        running_here,
        dependencies,
        dependency_cycle,
        commands_forbidden: commands_forbidden(ctx, facts, &validation),
        all_inputs_in_pods: validation.only_commands
            && crate::executor::runs_in_pods(&ctx.config.executor, task),
        invalid_spec: validation.invalid_spec,
        input_unavailable: validation.input_unavailable,
        now: facts.now,
    }
}

/// What a scheduled task's plan needs.
pub fn scheduled<'a>(ctx: &Context, facts: &'a Facts) -> scheduled::Observed<'a> {
    let task = facts.task.as_ref();
    let validation = prepare::validate(&ctx.store, task);
    let rejection = match (
        &validation.invalid_spec,
        commands_forbidden(ctx, facts, &validation),
    ) {
        (Some(message), _) => Some((Reason::InvalidSpec, message.clone())),
        (None, true) => Some((Reason::CommandsNotAllowed, COMMANDS_NOT_ALLOWED.to_owned())),
        (None, false) => None,
    };
    let runs = ctx.executions.runs_here(&facts.key, &facts.uid);
    scheduled::Observed {
        task,
        generation: facts.generation,
        now: facts.now,
        rejection,
        active: runs.current.and_then(|c| c.scheduled),
        last_ran: runs.last_ran,
        previous_process_until: ctx.liveness.previous_until,
        dependencies: dependencies::phases(&ctx.store, task),
        all_inputs_in_pods: validation.only_commands
            && crate::executor::runs_in_pods(&ctx.config.executor, task),
    }
}

/// Whether the task runs commands in a namespace where they are not allowed.
fn commands_forbidden(ctx: &Context, facts: &Facts, validation: &Validation) -> bool {
    validation.uses_commands && !ctx.config.commands.allows(&facts.key.namespace)
}
