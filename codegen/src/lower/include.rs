//! Included fields: an object that takes some fields of another kind's spec, so a shape declared
//! once (e.g. McallTask's) is reused without a copy that could drift.
//!
//! An included field keeps its schema, description and rules but is optional and has no default
//! in the including object: there it overrides something (a template, the kind's own default)
//! only when set, and a default would make it always set.

use super::*;

/// An `include` seen while lowering, resolved once every kind's spec type exists.
pub(super) struct PendingInclude {
    file: String,
    path: String,
    target: String,
    from: String,
    fields: Vec<String>,
}

impl PendingInclude {
    pub(super) fn new(file: &str, path: &str, target: &str, include: &raw::Include) -> Self {
        PendingInclude {
            file: file.to_owned(),
            path: format!("{path}.include"),
            target: target.to_owned(),
            from: include.from.clone(),
            fields: include.fields.clone(),
        }
    }
}

impl Lowerer {
    pub(super) fn resolve_includes(&mut self, kinds: &[Kind]) {
        for include in std::mem::take(&mut self.includes) {
            let Some(kind) = kinds.iter().find(|k| k.kind == include.from) else {
                let known: Vec<&str> = kinds.iter().map(|k| k.kind.as_str()).collect();
                let message = format!(
                    "include.from {:?} is not a kind of this spec (kinds: {})",
                    include.from,
                    known.join(", ")
                );
                self.error(&include.file, &include.path, message);
                continue;
            };
            // Within one kind the included fields could contain the object itself (a type
            // without end); across kinds they cannot, as no kind includes into another's spec.
            let target_module = self.types.get(&include.target).map(|d| &d.module);
            if target_module == Some(&Module::Kind(kind.module.clone())) {
                self.error(
                    &include.file,
                    &include.path,
                    "an object cannot include fields of its own kind's spec",
                );
                continue;
            }
            let fields = self.included_fields(&include, &kind.spec_type);
            if let Some(TypeDecl {
                def: TypeDef::Object(target),
                ..
            }) = self.types.get_mut(&include.target)
            {
                target.fields.extend(fields);
            }
        }
    }

    /// The requested fields of `source`, made optional and default-free; an error for each name
    /// that `source` lacks or that the including object already declares.
    fn included_fields(&mut self, include: &PendingInclude, source: &str) -> Vec<Field> {
        let source_fields = match self.types.get(source).map(|d| &d.def) {
            Some(TypeDef::Object(o)) => o.fields.clone(),
            _ => return Vec::new(),
        };
        let own: BTreeSet<String> = match self.types.get(&include.target).map(|d| &d.def) {
            Some(TypeDef::Object(o)) => o.fields.iter().map(|f| f.name.clone()).collect(),
            _ => BTreeSet::new(),
        };
        let mut taken = BTreeSet::new();
        let mut fields = Vec::new();
        for name in &include.fields {
            let path = format!("{}.fields", include.path);
            if own.contains(name) {
                let message = format!("{name:?} is declared in `fields` and included too");
                self.error(&include.file, &path, message);
            } else if !taken.insert(name.clone()) {
                self.error(&include.file, &path, format!("{name:?} is listed twice"));
            } else if let Some(field) = source_fields.iter().find(|f| &f.name == name) {
                fields.push(Field {
                    required: false,
                    default: None,
                    server_default: None,
                    ..field.clone()
                });
            } else {
                let message = format!("{} has no field {name:?}", include.from);
                self.error(&include.file, &path, message);
            }
        }
        fields
    }
}
