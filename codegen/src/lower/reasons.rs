//! Lowering reasons.yaml: the condition types and the reasons of status conditions and Events,
//! and the list of them in each kind's `status.conditions` description.

use std::collections::BTreeSet;

use super::{Lowerer, REASONS_FILE};
use crate::ir::*;
use crate::{naming, raw};

/// The status field whose description lists a kind's condition types and reasons.
const CONDITIONS_FIELD: &str = "conditions";

impl Lowerer {
    /// Lowers the file and lists each kind's condition types and reasons in its
    /// `status.conditions` description. `kinds` is `None` when a kind file did not lower: kind
    /// names are then not checked, so a broken kind file does not add a misleading error here.
    pub(super) fn lower_reasons(
        &mut self,
        file: &raw::ReasonsFile,
        kinds: Option<&[Kind]>,
    ) -> Reasons {
        for (section, empty, generated) in [
            ("conditions", file.conditions.is_empty(), "ConditionType"),
            ("reasons", file.reasons.is_empty(), "Reason"),
        ] {
            if empty {
                let message = format!(
                    "declare at least one entry: the generated enum {generated} cannot be empty"
                );
                self.error(REASONS_FILE, section, message);
            }
        }
        let conditions: Vec<ConditionTypeDef> = file
            .conditions
            .iter()
            .map(|(name, entry)| {
                let path = format!("conditions.{name}");
                self.check_entry(&path, name, "condition type", &entry.description);
                self.check_kinds(&path, &entry.kinds, kinds);
                ConditionTypeDef {
                    name: name.clone(),
                    kinds: entry.kinds.clone(),
                    description: entry.description.trim().to_owned(),
                }
            })
            .collect();
        let reasons = file
            .reasons
            .iter()
            .map(|(name, entry)| self.lower_reason(name, entry, &conditions, kinds))
            .collect();
        let lowered = Reasons {
            conditions,
            reasons,
        };
        if let Some(kinds) = kinds {
            self.describe_conditions(&lowered, kinds);
        }
        lowered
    }

    fn lower_reason(
        &mut self,
        name: &str,
        entry: &raw::ReasonEntry,
        conditions: &[ConditionTypeDef],
        kinds: Option<&[Kind]>,
    ) -> ReasonDef {
        let path = format!("reasons.{name}");
        self.check_entry(&path, name, "reason", &entry.description);
        self.check_kinds(&path, &entry.kinds, kinds);
        let mut seen = BTreeSet::new();
        for (i, condition) in entry.conditions.iter().enumerate() {
            let at = format!("{path}.conditions[{i}]");
            let Some(declared) = conditions.iter().find(|c| &c.name == condition) else {
                let known: Vec<&str> = conditions.iter().map(|c| c.name.as_str()).collect();
                let message = format!(
                    "{condition:?} is not a condition type of reasons.yaml (declared: {})",
                    known.join(", ")
                );
                self.error(REASONS_FILE, &at, message);
                continue;
            };
            if !seen.insert(condition) {
                self.error(REASONS_FILE, &at, format!("{condition} is listed twice"));
            }
            for kind in entry.kinds.iter().filter(|k| !declared.kinds.contains(k)) {
                let message = format!(
                    "{kind} has no condition {condition} (conditions.{condition}.kinds): add {kind} there, or drop it from this reason's kinds"
                );
                self.error(REASONS_FILE, &format!("{path}.kinds"), message);
            }
        }
        let event = match entry.event.as_deref() {
            None => None,
            Some("Normal") => Some(EventType::Normal),
            Some("Warning") => Some(EventType::Warning),
            Some(other) => {
                let message = format!("{other:?} is not an Event type: Normal or Warning");
                self.error(REASONS_FILE, &format!("{path}.event"), message);
                None
            }
        };
        if entry.conditions.is_empty() && entry.event.is_none() {
            self.error(
                REASONS_FILE,
                &path,
                "the reason appears nowhere: list its `conditions`, set `event`, or both",
            );
        }
        ReasonDef {
            name: name.to_owned(),
            kinds: entry.kinds.clone(),
            conditions: entry.conditions.clone(),
            event,
            description: entry.description.trim().to_owned(),
        }
    }

    /// The name (wire string and Rust variant at once) and the one-line description.
    fn check_entry(&mut self, path: &str, name: &str, what: &str, description: &str) {
        if !naming::is_pascal_case_name(name) {
            let hint = naming::variant_ident(name)
                .filter(|v| naming::is_pascal_case_name(v))
                .map(|v| format!(", e.g. {v}"))
                .unwrap_or_default();
            let message = format!(
                "{what} name {name:?} must be PascalCase ASCII letters and digits (it is both the wire string and the Rust variant){hint}"
            );
            self.error(REASONS_FILE, path, message);
        }
        if description.trim().is_empty() {
            self.error(
                REASONS_FILE,
                &format!("{path}.description"),
                "say in one line what it means",
            );
        } else if description.trim_end().contains('\n') {
            self.error(REASONS_FILE, &format!("{path}.description"), "must be one line: it becomes one item of the list in the CRD description (use `>-` to fold a long line)");
        }
    }

    fn check_kinds(&mut self, path: &str, listed: &[String], kinds: Option<&[Kind]>) {
        let path = format!("{path}.kinds");
        if listed.is_empty() {
            self.error(REASONS_FILE, &path, "list the kinds that use it");
        }
        let mut seen = BTreeSet::new();
        for (i, kind) in listed.iter().enumerate() {
            let at = format!("{path}[{i}]");
            if !seen.insert(kind) {
                self.error(REASONS_FILE, &at, format!("{kind} is listed twice"));
            }
            if let Some(kinds) = kinds
                && !kinds.iter().any(|k| &k.kind == kind)
            {
                let known: Vec<&str> = kinds.iter().map(|k| k.kind.as_str()).collect();
                let message = format!(
                    "{kind:?} is not a kind of spec/kinds (declared: {})",
                    known.join(", ")
                );
                self.error(REASONS_FILE, &at, message);
            }
        }
    }

    /// Appends each kind's condition types and reasons, with their meanings, to the description
    /// of its `status.conditions`, so the CRD (`kubectl explain`) and the Rust docs list them.
    fn describe_conditions(&mut self, reasons: &Reasons, kinds: &[Kind]) {
        for kind in kinds {
            let conditions: Vec<&ConditionTypeDef> = (reasons.conditions.iter())
                .filter(|c| c.kinds.contains(&kind.kind))
                .collect();
            let used: Vec<&ReasonDef> = (reasons.reasons.iter())
                .filter(|r| r.kinds.contains(&kind.kind))
                .collect();
            let first_use = match (conditions.first(), used.first()) {
                (Some(c), _) => format!("conditions.{}.kinds", c.name),
                (None, Some(r)) => format!("reasons.{}.kinds", r.name),
                (None, None) => continue,
            };
            let Some(field) = self.conditions_field(kind) else {
                let message = format!(
                    "{} has condition types or reasons, but its status has no list field `{CONDITIONS_FIELD}` to describe them in (spec/{})",
                    kind.kind, kind.file
                );
                self.error(REASONS_FILE, &first_use, message);
                continue;
            };
            let listed = conditions_doc(&kind.kind, &conditions, &used);
            field.description = Some(match field.description.take() {
                Some(d) => format!("{}\n\n{listed}", d.trim_end()),
                None => listed,
            });
        }
    }

    fn conditions_field(&mut self, kind: &Kind) -> Option<&mut Field> {
        let status = kind.status_type.as_ref()?;
        let Some(TypeDecl {
            def: TypeDef::Object(o),
            ..
        }) = self.types.get_mut(status)
        else {
            return None;
        };
        o.fields
            .iter_mut()
            .find(|f| f.name == CONDITIONS_FIELD && matches!(f.schema, Schema::List(_)))
    }
}

/// The list appended to a kind's `status.conditions` description.
fn conditions_doc(kind: &str, conditions: &[&ConditionTypeDef], reasons: &[&ReasonDef]) -> String {
    let mut out = String::new();
    if !conditions.is_empty() {
        out.push_str("Condition types:");
        for c in conditions {
            out.push_str(&format!("\n- `{}`: {}", c.name, c.description));
        }
    }
    if !reasons.is_empty() {
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        out.push_str(&format!(
            "Reasons, of these conditions and of the Events about a {kind}:"
        ));
        for r in reasons {
            let (name, places) = (&r.name, r.appears_in());
            out.push_str(&format!("\n- `{name}` ({places}): {}", r.description));
        }
    }
    out
}
