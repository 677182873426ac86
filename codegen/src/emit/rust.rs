//! Rust types for `generated/`: kube-derive custom resources, serde and schemars attributes, the
//! spec's descriptions as doc comments. Tokens from `quote!`, formatted with prettyplease.

use std::path::PathBuf;
use std::str::FromStr;

use heck::ToSnakeCase;
use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote};
use serde_json::Value;

use super::reasons;
use super::render::{docs, notice, render};
use super::schema::rule_json;
use crate::GeneratedFiles;
use crate::ir::*;
use crate::naming;

const SHARED_MODULE: &str = "types";

pub fn emit(ir: &Ir) -> GeneratedFiles {
    let mut files = GeneratedFiles::new();
    files.insert("generated/src/lib.rs".into(), render(lib_rs(ir)));
    let shared = module(ir, &Module::Shared, "Types shared by several kinds.");
    files.insert(
        format!("generated/src/{SHARED_MODULE}.rs").into(),
        render(shared),
    );
    files.insert(
        format!("generated/src/{}.rs", reasons::MODULE).into(),
        render(reasons::module(ir)),
    );
    for kind in &ir.kinds {
        let doc = format!(
            "The `{}` custom resource ({}/{}).",
            kind.kind, ir.group, kind.version
        );
        let tokens = module(ir, &Module::Kind(kind.module.clone()), &doc);
        files.insert(
            PathBuf::from(format!("generated/src/{}.rs", kind.module)),
            render(tokens),
        );
    }
    files
}

fn lib_rs(ir: &Ir) -> TokenStream {
    let notice = notice();
    let fingerprint = &ir.fingerprint;
    let group = &ir.group;
    let shared = format_ident!("{}", SHARED_MODULE);
    let reasons = format_ident!("{}", reasons::MODULE);
    let modules: Vec<Ident> = ir
        .kinds
        .iter()
        .map(|k| format_ident!("{}", k.module))
        .collect();
    quote! {
        #notice
        #![doc = ""]
        #![doc = " The mcall API: Rust types generated from `spec/`, with kube-derive custom resources."]
        // prettyplease formats these files; rustfmt would rewrite that layout, and then
        // `cargo fmt --check` and `cargo xtask generate --check` could never both pass.
        #![cfg_attr(rustfmt, rustfmt::skip)]
        #![forbid(unsafe_code)]
        #![deny(rust_2018_idioms)]
        #![allow(
            clippy::duplicated_attributes,
            reason = "each kube printcolumn(...) repeats the keys name, type_ and json_path"
        )]

        // Fails compilation when spec/ changed after this crate was generated.
        mcall_macros::spec_guard!(fingerprint = #fingerprint, dir = "../spec");

        /// The API group of every kind.
        pub const API_GROUP: &str = #group;
        /// Digest of the spec files this crate was generated from.
        pub const SPEC_FINGERPRINT: &str = #fingerprint;

        pub mod #shared;
        pub mod #reasons;
        #(pub mod #modules;)*

        pub use #shared::*;
        pub use #reasons::*;
        #(pub use #modules::*;)*
    }
}

/// One module file: the types declared in `target`.
fn module(ir: &Ir, target: &Module, doc: &str) -> TokenStream {
    let notice = notice();
    let doc = format!(" {doc}");
    let mut items = Vec::new();
    let mut uses = Uses::default();
    // A kind's spec and status come first; the types they use follow alphabetically.
    let is_root = |name: &String| {
        ir.kinds
            .iter()
            .any(|k| &k.spec_type == name || k.status_type.as_ref() == Some(name))
    };
    let (roots, rest): (Vec<_>, Vec<_>) = ir
        .types
        .iter()
        .filter(|(_, d)| &d.module == target)
        .partition(|(name, _)| is_root(name));
    for (_, decl) in roots.into_iter().chain(rest) {
        match &decl.def {
            TypeDef::Enum(e) => items.push(enum_item(e)),
            TypeDef::Object(o) => {
                let kind = ir.kinds.iter().find(|k| k.spec_type == o.name);
                items.push(struct_item(ir, o, kind, &mut uses));
            }
        }
    }
    let mut imports = vec![
        quote! { use schemars::JsonSchema; },
        quote! { use serde::{Deserialize, Serialize}; },
    ];
    if uses.btree_map {
        imports.push(quote! { use std::collections::BTreeMap; });
    }
    match (uses.time, uses.micro_time) {
        (true, true) => imports.push(
            quote! { use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time}; },
        ),
        (true, false) => {
            imports.push(quote! { use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time; })
        }
        (false, true) => {
            imports.push(quote! { use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime; })
        }
        (false, false) => {}
    }
    if uses.custom_resource {
        imports.push(quote! { use kube::CustomResource; });
    }
    if *target != Module::Shared && uses.shared {
        let shared = format_ident!("{}", SHARED_MODULE);
        imports.push(quote! { #[allow(unused_imports)] use crate::#shared::*; });
    }
    for module in &uses.kind_modules {
        if Module::Kind(module.clone()) != *target {
            let module = format_ident!("{}", module);
            imports.push(quote! { use crate::#module::*; });
        }
    }
    quote! {
        #notice
        #![doc = ""]
        #![doc = #doc]
        #![cfg_attr(rustfmt, rustfmt::skip)]
        #(#imports)*
        #(#items)*
    }
}

#[derive(Default)]
struct Uses {
    btree_map: bool,
    time: bool,
    micro_time: bool,
    custom_resource: bool,
    shared: bool,
    /// Kind modules whose types this module uses (its own among them); included fields bring
    /// another kind's types.
    kind_modules: std::collections::BTreeSet<String>,
}

fn enum_item(e: &EnumType) -> TokenStream {
    let name = format_ident!("{}", e.name);
    let doc = docs(e.description.as_deref());
    let variants = e.variants.iter().map(|v| {
        let ident = format_ident!("{}", v.ident);
        let wire = &v.wire;
        quote! { #[serde(rename = #wire)] #ident }
    });
    quote! {
        #doc
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema, mcall_macros::WireName)]
        pub enum #name { #(#variants,)* }
    }
}

fn struct_item(ir: &Ir, o: &ObjectType, kind: Option<&Kind>, uses: &mut Uses) -> TokenStream {
    let name = format_ident!("{}", o.name);
    let doc = docs(o.description.as_deref());
    let mut fields = Vec::new();
    let mut default_fns = Vec::new();
    let mut default_values = Vec::new();
    for f in &o.fields {
        let item = struct_field(ir, o, f, uses);
        fields.push(item.field);
        default_fns.extend(item.default_fn);
        default_values.extend(item.default_value);
    }
    let struct_rules = if o.rules.is_empty() {
        quote!()
    } else {
        let rules = json_tokens(&Value::Array(o.rules.iter().map(rule_json).collect()));
        quote! { #[schemars(extend("x-kubernetes-validations" = #rules))] }
    };
    let kube_attr = kind.map(|k| {
        uses.custom_resource = true;
        kube_attr(ir, k)
    });
    let derive_cr = kind.map(|_| quote! { CustomResource, });
    let has_required = o.fields.iter().any(|f| f.required);
    // `#[derive(Default)]` when every field's default is the type's own; a hand-written impl
    // that calls the default functions otherwise.
    let derivable = o
        .fields
        .iter()
        .all(|f| !f.required && matches!(f.default, None | Some(Value::Bool(false))));
    let derive_default = derivable.then(|| quote! { Default, });
    let default_impl = (!has_required && !derivable).then(|| {
        quote! {
            impl Default for #name {
                fn default() -> Self {
                    Self { #(#default_values,)* }
                }
            }
        }
    });
    quote! {
        #doc
        #[derive(#derive_cr Clone, Debug, #derive_default PartialEq, Serialize, Deserialize, JsonSchema)]
        #kube_attr
        #[serde(rename_all = "camelCase")]
        #struct_rules
        pub struct #name { #(#fields,)* }
        #default_impl
        #(#default_fns)*
    }
}

/// One field of a struct, with what its defaults need.
struct FieldItem {
    /// The field with its docs and serde and schemars attributes.
    field: TokenStream,
    /// The function serde calls for a default that is not the type's own.
    default_fn: Option<TokenStream>,
    /// The field's initialiser in a hand-written `Default` impl.
    default_value: Option<TokenStream>,
}

fn struct_field(ir: &Ir, o: &ObjectType, f: &Field, uses: &mut Uses) -> FieldItem {
    let ident = Ident::new_raw_or_plain(&f.ident);
    let field_doc = docs(f.documentation().as_deref());
    let ty = rust_type(ir, &f.schema, uses);
    let optional = !f.required && f.default.is_none();
    let ty = if optional {
        quote! { Option<#ty> }
    } else {
        ty
    };
    let mut serde_args = Vec::new();
    if naming::serde_camel_case(&f.ident) != f.name {
        let wire = &f.name;
        serde_args.push(quote! { rename = #wire });
    }
    let mut default_fn = None;
    let default_value = match &f.default {
        Some(Value::Bool(false)) => {
            serde_args.push(quote! { default });
            Some(quote! { #ident: false })
        }
        Some(value) => {
            let fn_name = format!(
                "default_{}_{}",
                o.name.to_snake_case(),
                f.ident.trim_start_matches("r#")
            );
            let fn_ident = format_ident!("{}", fn_name);
            let expr = default_expr(ir, &f.schema, value);
            default_fn = Some(quote! { fn #fn_ident() -> #ty { #expr } });
            serde_args.push(quote! { default = #fn_name });
            Some(quote! { #ident: #fn_ident() })
        }
        None if optional => {
            serde_args.push(quote! { default, skip_serializing_if = "Option::is_none" });
            Some(quote! { #ident: None })
        }
        None => None,
    };
    let serde_attr = if serde_args.is_empty() {
        quote!()
    } else {
        quote! { #[serde(#(#serde_args),*)] }
    };
    let schemars_attr = schemars_attr(&f.schema, &f.rules);
    FieldItem {
        field: quote! { #field_doc #serde_attr #schemars_attr pub #ident: #ty },
        default_fn,
        default_value,
    }
}

fn kube_attr(ir: &Ir, k: &Kind) -> TokenStream {
    let group = &ir.group;
    let version = &k.version;
    let kind = &k.kind;
    let plural = &k.plural;
    let singular = &k.singular;
    let scope = k.namespaced.then(|| quote! { namespaced, });
    let status = k.status_type.as_ref().map(|s| quote! { status = #s, });
    let doc = k.description.as_ref().map(|d| quote! { doc = #d, });
    let short = k.short_names.iter().map(|s| quote! { shortname = #s, });
    let categories = k.categories.iter().map(|c| quote! { category = #c, });
    let columns = k.printer_columns.iter().map(|c| {
        let (name, ty, path) = (&c.name, &c.ty, &c.json_path);
        let description = c.description.as_ref().map(|d| quote! { , description = #d });
        let priority = c.priority.map(|p| {
            let p = p.to_string();
            quote! { , priority = #p }
        });
        let format = c.format.as_ref().map(|f| quote! { , format = #f });
        quote! { printcolumn(name = #name, type_ = #ty, json_path = #path #description #priority #format), }
    });
    quote! {
        #[kube(
            group = #group, version = #version, kind = #kind, plural = #plural, singular = #singular,
            #scope #status #doc #(#short)* #(#categories)* #(#columns)*
            derive = "PartialEq",
        )]
    }
}

fn rust_type(ir: &Ir, schema: &Schema, uses: &mut Uses) -> TokenStream {
    match schema {
        Schema::String(_) => quote! { String },
        Schema::Integer {
            format: IntFormat::Int32,
            ..
        } => quote! { i32 },
        Schema::Integer {
            format: IntFormat::Int64,
            ..
        } => quote! { i64 },
        Schema::Number { .. } => quote! { f64 },
        Schema::Boolean => quote! { bool },
        Schema::DateTime => {
            uses.time = true;
            quote! { Time }
        }
        Schema::MicroTime => {
            uses.micro_time = true;
            quote! { MicroTime }
        }
        Schema::Json => quote! { serde_json::Value },
        Schema::Named(name) => {
            match ir.types.get(name).map(|d| &d.module) {
                Some(Module::Shared) => uses.shared = true,
                Some(Module::Kind(module)) => {
                    uses.kind_modules.insert(module.clone());
                }
                _ => {}
            }
            let ident = format_ident!("{}", name);
            quote! { #ident }
        }
        Schema::List(list) => {
            let item = rust_type(ir, &list.items, uses);
            quote! { Vec<#item> }
        }
        Schema::Map { values, .. } => {
            uses.btree_map = true;
            let value = rust_type(ir, values, uses);
            quote! { BTreeMap<String, #value> }
        }
    }
}

/// The body of a `default_*` function. Lowering only admits scalar, enum and empty collection defaults.
fn default_expr(ir: &Ir, schema: &Schema, value: &Value) -> TokenStream {
    match (schema, value) {
        (Schema::String(_), Value::String(s)) => quote! { #s.to_owned() },
        (Schema::Integer { .. }, Value::Number(n)) => {
            TokenStream::from_str(&n.to_string()).expect("a number is a literal")
        }
        (Schema::Number { .. }, Value::Number(n)) => {
            let f = n.as_f64().expect("a JSON number is an f64");
            TokenStream::from_str(&format!("{f:?}")).expect("an f64 is a literal")
        }
        (Schema::Boolean, Value::Bool(b)) => quote! { #b },
        (Schema::Named(name), Value::String(wire)) => {
            let Some(TypeDef::Enum(e)) = ir.types.get(name).map(|d| &d.def) else {
                unreachable!("checked by lowering")
            };
            let variant = e
                .variants
                .iter()
                .find(|v| &v.wire == wire)
                .expect("checked by lowering");
            let (ty, var) = (
                format_ident!("{}", name),
                format_ident!("{}", variant.ident),
            );
            quote! { #ty::#var }
        }
        (Schema::List(_), _) => quote! { Vec::new() },
        (Schema::Map { .. }, _) => quote! { BTreeMap::new() },
        _ => unreachable!("lowering refuses other defaults"),
    }
}

/// `#[schemars(...)]` for the validations of a field; list items get theirs through `inner(...)`.
fn schemars_attr(schema: &Schema, rules: &[Rule]) -> TokenStream {
    let mut args = validations(schema);
    let mut extend = Vec::new();
    match schema {
        Schema::List(list) => {
            let inner = validations(&list.items);
            if !inner.is_empty() {
                args.push(quote! { inner(#(#inner),*) });
            }
            if let Some(t) = list.list_type {
                let t = t.as_str();
                extend.push(quote! { "x-kubernetes-list-type" = #t });
            }
            if !list.map_keys.is_empty() {
                let keys = json_tokens(&serde_json::json!(list.map_keys));
                extend.push(quote! { "x-kubernetes-list-map-keys" = #keys });
            }
        }
        Schema::Map {
            max_properties: Some(n),
            ..
        } => {
            let n = proc_macro2::Literal::u64_unsuffixed(*n);
            extend.push(quote! { "maxProperties" = #n })
        }
        Schema::Json => extend.push(quote! { "x-kubernetes-preserve-unknown-fields" = true }),
        _ => {}
    }
    if !rules.is_empty() {
        let rules = json_tokens(&Value::Array(rules.iter().map(rule_json).collect()));
        extend.push(quote! { "x-kubernetes-validations" = #rules });
    }
    if !extend.is_empty() {
        args.push(quote! { extend(#(#extend),*) });
    }
    if args.is_empty() {
        quote!()
    } else {
        quote! { #[schemars(#(#args),*)] }
    }
}

fn validations(schema: &Schema) -> Vec<TokenStream> {
    let mut out = Vec::new();
    match schema {
        Schema::String(rules) => {
            if let Some(l) = length(rules.min_length, rules.max_length) {
                out.push(l);
            }
            if let Some(p) = &rules.pattern {
                out.push(quote! { regex(pattern = #p) });
            }
        }
        Schema::Integer { range, .. } | Schema::Number { range } => {
            let bound = |n: &Option<serde_json::Number>| {
                n.as_ref()
                    .map(|n| TokenStream::from_str(&n.to_string()).expect("literal"))
            };
            let mut parts = Vec::new();
            if let Some(min) = bound(&range.minimum) {
                parts.push(quote! { min = #min });
            }
            if let Some(max) = bound(&range.maximum) {
                parts.push(quote! { max = #max });
            }
            if !parts.is_empty() {
                out.push(quote! { range(#(#parts),*) });
            }
        }
        Schema::List(list) => {
            if let Some(l) = length(list.min_items, list.max_items) {
                out.push(l);
            }
        }
        _ => {}
    }
    out
}

fn length(min: Option<u64>, max: Option<u64>) -> Option<TokenStream> {
    let lit = proc_macro2::Literal::u64_unsuffixed;
    let parts: Vec<TokenStream> = [
        min.map(|n| (quote! { min }, lit(n))),
        max.map(|n| (quote! { max }, lit(n))),
    ]
    .into_iter()
    .flatten()
    .map(|(k, v)| quote! { #k = #v })
    .collect();
    (!parts.is_empty()).then(|| quote! { length(#(#parts),*) })
}

/// A JSON value as tokens for schemars' `extend` (which takes `json!` syntax).
fn json_tokens(value: &Value) -> TokenStream {
    TokenStream::from_str(&value.to_string()).expect("JSON is valid token syntax")
}

trait IdentExt {
    fn new_raw_or_plain(name: &str) -> Ident;
}

impl IdentExt for Ident {
    fn new_raw_or_plain(name: &str) -> Ident {
        match name.strip_prefix("r#") {
            Some(raw) => Ident::new_raw(raw, Span::call_site()),
            None => Ident::new(name, Span::call_site()),
        }
    }
}
