//! Parse + validate: raw spec files → [`Ir`]. Every problem is collected with its file and path.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::DeserializeOwned;

use crate::error::{SpecError, SpecErrors};
use crate::ir::*;
use crate::values::{self, Completeness};
use crate::{SpecFiles, naming, raw};

mod deploy;
mod include;
mod kind;
mod reasons;
mod rules;
mod schema;

const API_FILE: &str = "api.yaml";
const RBAC_FILE: &str = "rbac.yaml";
const ENVIRONMENTS_FILE: &str = "environments.yaml";
const REASONS_FILE: &str = "reasons.yaml";
const KINDS_DIR: &str = "kinds/";

/// Parses and validates the spec into the IR, or returns every problem found.
pub fn parse(files: &SpecFiles) -> Result<Ir, SpecErrors> {
    let mut cx = Lowerer::default();
    cx.check_file_names(files);
    let api: Option<raw::ApiFile> = cx.load(files, API_FILE);
    let rbac: Option<raw::RbacFile> = cx.load(files, RBAC_FILE);
    let environments: Option<raw::EnvironmentsFile> = cx.load(files, ENVIRONMENTS_FILE);
    let reasons: Option<raw::ReasonsFile> = cx.load(files, REASONS_FILE);
    let declared_kind_files = files.files.keys().filter(|name| is_kind_file(name)).count();
    let kind_files: Vec<(String, raw::KindFile)> = files
        .files
        .keys()
        .filter(|name| is_kind_file(name))
        .filter_map(|name| cx.load(files, name).map(|k| (name.clone(), k)))
        .collect();
    if kind_files.is_empty() && !files.files.keys().any(|n| n.starts_with(KINDS_DIR)) {
        cx.error(
            KINDS_DIR,
            "(directory)",
            "no kinds: add at least one kinds/<kind>.yaml",
        );
    }

    cx.kind_names = kind_files.iter().map(|(_, k)| k.kind.clone()).collect();
    let group = api.map(|api| cx.lower_api(api)).unwrap_or_default();

    let mut kinds = Vec::new();
    for (file, kind) in &kind_files {
        if let Some(k) = cx.lower_kind(file, kind) {
            kinds.push(k);
        }
    }
    cx.check_unique_kinds(&kinds);

    // Checks that need every type to be known.
    cx.resolve_includes(&kinds);
    cx.check_pending();
    for (file, kind) in kind_files
        .iter()
        .filter(|(_, k)| kinds.iter().any(|l| l.kind == k.kind))
    {
        let lowered = kinds
            .iter()
            .find(|l| l.kind == kind.kind)
            .expect("filtered");
        cx.check_printer_columns(file, lowered);
    }

    // Resource names are checked against the kinds only when every kind file lowered cleanly;
    // otherwise each missing kind would add a second, misleading error.
    let all_kinds = (kinds.len() == declared_kind_files).then_some(kinds.as_slice());
    let rbac = rbac.map(|r| cx.lower_rbac(&r, &group, all_kinds));
    let settings = environments.map(|e| cx.lower_settings(&e));
    let reasons = reasons.map(|r| cx.lower_reasons(&r, all_kinds));

    if !cx.errors.is_empty() {
        return Err(SpecErrors(cx.errors));
    }
    Ok(Ir {
        group,
        fingerprint: files.fingerprint(),
        kinds,
        types: cx.types,
        rbac: rbac.expect("no errors, so rbac.yaml loaded"),
        settings: settings.expect("no errors, so environments.yaml loaded"),
        reasons: reasons.expect("no errors, so reasons.yaml loaded"),
    })
}

impl Lowerer {
    fn check_file_names(&mut self, files: &SpecFiles) {
        for name in files.files.keys() {
            let known = [API_FILE, RBAC_FILE, ENVIRONMENTS_FILE, REASONS_FILE]
                .contains(&name.as_str())
                || is_kind_file(name);
            if !known {
                self.error(name, "(file)", "unknown spec file: expected api.yaml, rbac.yaml, environments.yaml, reasons.yaml or kinds/<kind>.yaml");
            }
        }
    }

    /// api.yaml: the group (returned) and the shared types.
    fn lower_api(&mut self, api: raw::ApiFile) -> String {
        if !is_dns_subdomain(&api.group) || !api.group.contains('.') {
            self.error(
                API_FILE,
                "group",
                format!(
                    "{:?} is not a DNS subdomain with a dot, e.g. mcall.tz.io",
                    api.group
                ),
            );
        }
        self.shared = api.types.keys().cloned().collect();
        for (name, node) in &api.types {
            self.lower_named(
                API_FILE,
                &format!("types.{name}"),
                node,
                name,
                &Module::Shared,
            );
        }
        api.group
    }

    fn check_unique_kinds(&mut self, kinds: &[Kind]) {
        let (mut seen_plurals, mut seen_kinds) = (BTreeSet::new(), BTreeSet::new());
        for k in kinds {
            if !seen_plurals.insert(k.plural.clone()) {
                self.error(
                    &k.file,
                    "plural",
                    format!("plural {:?} is used by two kinds", k.plural),
                );
            }
            if !seen_kinds.insert(k.kind.clone()) {
                self.error(
                    &k.file,
                    "kind",
                    format!("kind {:?} is declared by two files", k.kind),
                );
            }
        }
    }
}

/// A check that must wait until every type has been declared.
enum Pending {
    Default {
        file: String,
        path: String,
        schema: Schema,
        value: serde_json::Value,
    },
    ListMapKeys {
        file: String,
        path: String,
        items: Schema,
        keys: Vec<String>,
    },
}

#[derive(Default)]
struct Lowerer {
    errors: Vec<SpecError>,
    types: BTreeMap<String, TypeDecl>,
    /// Where each type was declared, for duplicate-name messages.
    origins: BTreeMap<String, String>,
    /// Names of the shared types of api.yaml, the only targets of `ref`.
    shared: BTreeSet<String>,
    /// Kind names: the root types kube-derive generates, so no spec type may take them.
    kind_names: BTreeSet<String>,
    pending: Vec<Pending>,
    /// Objects that take fields from a kind's spec, resolved once every kind is lowered.
    includes: Vec<include::PendingInclude>,
}

impl Lowerer {
    fn error(&mut self, file: &str, path: &str, message: impl Into<String>) {
        self.errors.push(SpecError {
            file: file.to_owned(),
            path: path.to_owned(),
            message: message.into(),
        });
    }

    fn load<T: DeserializeOwned>(&mut self, files: &SpecFiles, name: &str) -> Option<T> {
        let Some(text) = files.files.get(name) else {
            self.error(name, "(file)", "missing spec file");
            return None;
        };
        match serde_saphyr::from_str::<T>(text) {
            Ok(v) => Some(v),
            Err(e) => {
                let path = e.location().map_or_else(
                    || "(document)".to_owned(),
                    |l| format!("line {} column {}", l.line(), l.column()),
                );
                let message = e.without_snippet().to_string();
                self.error(name, &path, message.trim());
                None
            }
        }
    }

    fn declare(&mut self, file: &str, path: &str, module: &Module, def: TypeDef) {
        let name = match &def {
            TypeDef::Object(o) => o.name.clone(),
            TypeDef::Enum(e) => e.name.clone(),
        };
        if !naming::is_plain_ident(&name) || !name.starts_with(|c: char| c.is_ascii_uppercase()) {
            self.error(
                file,
                path,
                format!("type name {name:?} is not a PascalCase Rust identifier"),
            );
            return;
        }
        if RESERVED_TYPE_NAMES.contains(&name.as_str()) || self.kind_names.contains(&name) {
            self.error(file, path, format!("type name {name} is reserved (a kind, or a name the generated code imports or declares); set a different rustName"));
            return;
        }
        let origin = format!("spec/{file}: {path}");
        if let Some(first) = self.origins.get(&name) {
            let message = format!(
                "type name {name} is declared twice (first at {first}); set a distinct rustName or use a shared type with ref"
            );
            self.error(file, path, message);
            return;
        }
        self.origins.insert(name.clone(), origin);
        self.types.insert(
            name,
            TypeDecl {
                module: module.clone(),
                def,
            },
        );
    }

    // === schema nodes ===

    /// A named type of api.yaml (an object or an enum).
    fn lower_named(
        &mut self,
        file: &str,
        path: &str,
        node: &raw::Node,
        name: &str,
        module: &Module,
    ) {
        for (key, set) in [
            ("rustName", node.rust_name.is_some()),
            ("default", node.default.is_some()),
            ("required", node.required),
        ] {
            if set {
                self.error(file, path, format!("`{key}` does not apply to a named type (its key is its name; set `{key}` on the fields that use it)"));
            }
        }
        match node.ty.as_deref() {
            Some("object") => self.lower_object(file, path, node, name, module),
            Some("enum") => self.lower_enum(file, path, node, name, module),
            other => self.error(
                file,
                path,
                format!("a named type is an object or an enum, not {other:?}"),
            ),
        }
    }

    fn lower_object(
        &mut self,
        file: &str,
        path: &str,
        node: &raw::Node,
        name: &str,
        module: &Module,
    ) {
        let Some(raw_fields) = node.fields.as_ref().filter(|f| !f.is_empty()) else {
            self.error(
                file,
                path,
                "an object needs fields (use type json for free-form data)",
            );
            return;
        };
        let mut fields = Vec::new();
        let mut idents = BTreeSet::new();
        for (json_name, child) in raw_fields {
            let child_path = format!("{path}.fields.{json_name}");
            if !naming::is_json_field_name(json_name) {
                self.error(
                    file,
                    &child_path,
                    format!("field name {json_name:?} must be lowerCamelCase ASCII"),
                );
                continue;
            }
            let Some(ident) = naming::field_ident(json_name) else {
                self.error(
                    file,
                    &child_path,
                    format!("field name {json_name:?} has no Rust identifier"),
                );
                continue;
            };
            if !idents.insert(ident.clone()) {
                self.error(
                    file,
                    &child_path,
                    format!("two fields map to the Rust name {ident}"),
                );
                continue;
            }
            if let Some(field) =
                self.lower_field(file, &child_path, json_name, ident, child, module)
            {
                fields.push(field);
            }
        }
        let rules = rules::lower_rules(self, file, path, &node.rules);
        self.check_keys(file, path, node, "object");
        if let Some(include) = &node.include {
            self.includes
                .push(include::PendingInclude::new(file, path, name, include));
        }
        let def = ObjectType {
            name: name.to_owned(),
            description: node.description.clone(),
            fields,
            rules,
        };
        self.declare(file, path, module, TypeDef::Object(def));
    }

    fn lower_enum(
        &mut self,
        file: &str,
        path: &str,
        node: &raw::Node,
        name: &str,
        module: &Module,
    ) {
        let mut variants: Vec<Variant> = Vec::new();
        let wires = node.variants.clone().unwrap_or_default();
        if wires.is_empty() {
            self.error(
                file,
                path,
                "an enum needs a non-empty `enum` list of values",
            );
        }
        for wire in wires {
            match naming::variant_ident(&wire) {
                None => self.error(
                    file,
                    path,
                    format!("enum value {wire:?} has no Rust variant name"),
                ),
                Some(_) if variants.iter().any(|v| v.wire == wire) => {
                    self.error(file, path, format!("enum value {wire:?} is listed twice"))
                }
                Some(ident) if variants.iter().any(|v| v.ident == ident) => self.error(
                    file,
                    path,
                    format!(
                        "enum values {wire:?} and another map to the same Rust variant {ident}"
                    ),
                ),
                Some(ident) => variants.push(Variant { wire, ident }),
            }
        }
        self.check_keys(file, path, node, "enum");
        if !node.rules.is_empty() {
            self.error(
                file,
                path,
                "`rules` do not apply to an enum type; put them on the fields that use it",
            );
        }
        let def = EnumType {
            name: name.to_owned(),
            description: node.description.clone(),
            variants,
        };
        self.declare(file, path, module, TypeDef::Enum(def));
    }

    fn lower_field(
        &mut self,
        file: &str,
        path: &str,
        json_name: &str,
        ident: String,
        node: &raw::Node,
        module: &Module,
    ) -> Option<Field> {
        let schema = self.lower_schema(file, path, node, &naming::type_name(json_name), module)?;
        if let Some(value) = &node.default {
            if node.required {
                self.error(
                    file,
                    path,
                    "a field is either required or has a default, not both",
                );
            }
            self.pending.push(Pending::Default {
                file: file.into(),
                path: format!("{path}.default"),
                schema: schema.clone(),
                value: value.clone(),
            });
        }
        if let Some(value) = &node.server_default {
            if node.required || node.default.is_some() {
                self.error(
                    file,
                    path,
                    "serverDefault is for optional fields: not with required or default",
                );
            }
            self.pending.push(Pending::Default {
                file: file.into(),
                path: format!("{path}.serverDefault"),
                schema: schema.clone(),
                value: value.clone(),
            });
        }
        // Rules on an inline object belong to the object type; elsewhere they constrain the field.
        let rules = if node.ty.as_deref() == Some("object") {
            Vec::new()
        } else {
            rules::lower_rules(self, file, path, &node.rules)
        };
        let description = node.description.clone().or_else(|| match &schema {
            Schema::Named(n) => self
                .types
                .get(n)
                .and_then(|d| d.def.description().map(str::to_owned)),
            _ => None,
        });
        Some(Field {
            name: json_name.to_owned(),
            ident,
            description,
            required: node.required,
            default: node.default.clone(),
            server_default: node.server_default.clone(),
            schema,
            rules,
        })
    }

    fn check_pending(&mut self) {
        for pending in std::mem::take(&mut self.pending) {
            match pending {
                Pending::Default {
                    file,
                    path,
                    schema,
                    value,
                } => {
                    let non_empty_collection = match &value {
                        serde_json::Value::Array(a) => !a.is_empty(),
                        serde_json::Value::Object(o) => !o.is_empty(),
                        _ => false,
                    };
                    let object = matches!(&schema, Schema::Named(n) if matches!(self.types.get(n).map(|d| &d.def), Some(TypeDef::Object(_))));
                    if non_empty_collection
                        || object
                        || matches!(schema, Schema::DateTime | Schema::MicroTime | Schema::Json)
                    {
                        self.error(
                            &file,
                            &path,
                            "only scalar, enum, empty-list and empty-map defaults are supported",
                        );
                        continue;
                    }
                    for (p, message) in
                        values::check(&self.types, &schema, &value, &path, Completeness::Complete)
                    {
                        self.error(
                            &file,
                            &p,
                            format!("default does not fit the field: {message}"),
                        );
                    }
                }
                Pending::ListMapKeys {
                    file,
                    path,
                    items,
                    keys,
                } => {
                    let Schema::Named(name) = &items else {
                        self.error(&file, &path, "listType map needs object items");
                        continue;
                    };
                    let Some(TypeDecl {
                        def: TypeDef::Object(o),
                        ..
                    }) = self.types.get(name).cloned()
                    else {
                        self.error(&file, &path, "listType map needs object items");
                        continue;
                    };
                    for key in keys {
                        match o.fields.iter().find(|f| f.name == key) {
                            Some(f) if f.required || f.default.is_some() => {}
                            Some(_) => self.error(&file, &path, format!("list map key {key:?} must be a required field (or have a default) of {}", o.name)),
                            None => self.error(&file, &path, format!("list map key {key:?} is not a field of {}", o.name)),
                        }
                    }
                }
            }
        }
    }
}

/// `kinds/<name>.yaml`, directly in the kinds directory.
fn is_kind_file(name: &str) -> bool {
    name.strip_prefix(KINDS_DIR)
        .is_some_and(|rest| !rest.contains('/') && rest.ends_with(".yaml"))
}

/// Names the generated Rust imports or derives; a spec type with one of them would not compile.
const RESERVED_TYPE_NAMES: [&str; 9] = [
    "Time",
    "BTreeMap",
    "JsonSchema",
    "Serialize",
    "Deserialize",
    "CustomResource",
    "Values",
    // The enums of reasons.yaml, re-exported from the crate root beside the spec's types.
    "ConditionType",
    "Reason",
];

/// A DNS subdomain (RFC 1123): dot-separated labels.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(naming::is_dns_label)
}
