//! `generated/src/reasons.rs`: the condition types and the reasons of reasons.yaml as Rust enums.
//! Each variant's doc comment is its meaning, where it appears and which kinds use it; the
//! `WireName` derive gives `as_str`, `Display`, `FromStr` and `ALL`, as for the spec's enums.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};

use super::render::{docs, notice};
use crate::ir::*;

/// The module (and file) of the enums, re-exported from the crate root.
pub(super) const MODULE: &str = "reasons";

pub(super) fn module(ir: &Ir) -> TokenStream {
    let notice = notice();
    let condition_type = condition_type_enum(&ir.reasons.conditions);
    let reason = reason_enum(&ir.reasons.reasons);
    quote! {
        #notice
        #![doc = ""]
        #![doc = " The condition types and the reasons of status conditions and Events, declared once in"]
        #![doc = " `spec/reasons.yaml`: the status, the CRD description and the tests use these names."]
        #![cfg_attr(rustfmt, rustfmt::skip)]
        #condition_type
        #reason
    }
}

fn kinds_line(kinds: &[String]) -> String {
    let kinds: Vec<String> = kinds.iter().map(|k| format!("`{k}`")).collect();
    format!("Kinds: {}.", kinds.join(", "))
}

fn condition_type_enum(conditions: &[ConditionTypeDef]) -> TokenStream {
    let idents: Vec<Ident> = conditions
        .iter()
        .map(|c| format_ident!("{}", c.name))
        .collect();
    let variants = conditions.iter().zip(&idents).map(|(c, ident)| {
        let doc = docs(Some(&format!(
            "{}\n\n{}",
            c.description,
            kinds_line(&c.kinds)
        )));
        quote! { #doc #ident }
    });
    let descriptions = conditions.iter().map(|c| &c.description);
    quote! {
        /// The `type` of a status condition.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, mcall_macros::WireName)]
        pub enum ConditionType { #(#variants,)* }

        impl ConditionType {
            /// What the condition says, in one line (as its doc comment).
            pub const fn description(&self) -> &'static str {
                match self { #(ConditionType::#idents => #descriptions,)* }
            }
        }
    }
}

fn reason_enum(reasons: &[ReasonDef]) -> TokenStream {
    let idents: Vec<Ident> = reasons
        .iter()
        .map(|r| format_ident!("{}", r.name))
        .collect();
    let variants = reasons.iter().zip(&idents).map(|(r, ident)| {
        let doc = docs(Some(&format!("{}\n\n{}", r.description, where_line(r))));
        quote! { #doc #ident }
    });
    let descriptions = reasons.iter().map(|r| &r.description);
    let conditions = reasons.iter().map(|r| {
        let types = r.conditions.iter().map(|c| format_ident!("{}", c));
        quote! { &[#(ConditionType::#types),*] }
    });
    let events = matching(reasons, &idents, |r| r.event.is_some());
    let warnings = matching(reasons, &idents, |r| r.event == Some(EventType::Warning));
    quote! {
        /// The `reason` of a status condition or of an Event: machine-readable, PascalCase, and the
        /// same string on the wire.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, mcall_macros::WireName)]
        pub enum Reason { #(#variants,)* }

        impl Reason {
            /// What the reason means, in one line (as its doc comment).
            pub const fn description(&self) -> &'static str {
                match self { #(Reason::#idents => #descriptions,)* }
            }

            /// The condition types whose `reason` this can be; none for a reason only Events carry.
            pub const fn conditions(&self) -> &'static [ConditionType] {
                match self { #(Reason::#idents => #conditions,)* }
            }

            /// Whether Events carry this reason.
            pub const fn is_event(&self) -> bool {
                #events
            }

            /// Whether the Events with this reason are of type Warning (false for Normal ones, and
            /// for a reason no Event carries).
            pub const fn is_warning(&self) -> bool {
                #warnings
            }
        }
    }
}

/// `Conditions: `Ready`. Events: Warning. Kinds: `McallTask`.`
fn where_line(r: &ReasonDef) -> String {
    let mut parts = Vec::new();
    if !r.conditions.is_empty() {
        let names: Vec<String> = r.conditions.iter().map(|c| format!("`{c}`")).collect();
        let label = if names.len() == 1 {
            "Condition"
        } else {
            "Conditions"
        };
        parts.push(format!("{label}: {}.", names.join(", ")));
    }
    if let Some(event) = r.event {
        parts.push(format!("Events: {}.", event.as_str()));
    }
    parts.push(kinds_line(&r.kinds));
    parts.join(" ")
}

/// `matches!(self, Reason::A | Reason::B)` for the reasons `select` picks, or `false` for none.
fn matching(
    reasons: &[ReasonDef],
    idents: &[Ident],
    select: impl Fn(&ReasonDef) -> bool,
) -> TokenStream {
    let picked: Vec<&Ident> = reasons
        .iter()
        .zip(idents)
        .filter(|(r, _)| select(r))
        .map(|(_, ident)| ident)
        .collect();
    if picked.is_empty() {
        quote! { false }
    } else {
        quote! { matches!(self, #(Reason::#picked)|*) }
    }
}
