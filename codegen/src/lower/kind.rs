//! Lowering a kind file: the kind's names, its spec and status roots, and its printer columns.

use super::*;

impl Lowerer {
    pub(super) fn lower_kind(&mut self, file: &str, k: &raw::KindFile) -> Option<Kind> {
        let errors_before = self.errors.len();
        self.check_names(file, k);
        let namespaced = match k.scope.as_str() {
            "Namespaced" => true,
            "Cluster" => false,
            other => {
                self.error(
                    file,
                    "scope",
                    format!("{other:?} is not Namespaced or Cluster"),
                );
                true
            }
        };
        let version = self.the_version(file, k)?;
        let module = Module::Kind(naming::module_name(&k.kind));
        let spec_type = self.lower_root(
            file,
            "versions[0].spec",
            &version.spec,
            &format!("{}Spec", k.kind),
            &module,
        );
        let status_type = version.status.as_ref().and_then(|s| {
            self.lower_root(
                file,
                "versions[0].status",
                s,
                &format!("{}Status", k.kind),
                &module,
            )
        });
        let printer_columns = version
            .printer_columns
            .iter()
            .map(|c| PrinterColumn {
                name: c.name.clone(),
                ty: c.ty.clone(),
                json_path: c.json_path.clone(),
                description: c.description.clone(),
                priority: c.priority,
                format: c.format.clone(),
            })
            .collect();
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Kind {
            file: file.to_owned(),
            kind: k.kind.clone(),
            plural: k.plural.clone(),
            singular: k.singular.clone(),
            short_names: k.short_names.clone(),
            categories: k.categories.clone(),
            namespaced,
            description: k.description.clone(),
            version: version.name.clone(),
            served: version.served,
            storage: version.storage,
            printer_columns,
            spec_type: spec_type?,
            status_type,
            module: naming::module_name(&k.kind),
        })
    }

    /// The kind, plural, singular, short names and categories: the names Kubernetes accepts.
    fn check_names(&mut self, file: &str, k: &raw::KindFile) {
        if !naming::is_plain_ident(&k.kind) || !k.kind.starts_with(|c: char| c.is_ascii_uppercase())
        {
            self.error(
                file,
                "kind",
                format!("{:?} is not a PascalCase kind name", k.kind),
            );
        }
        for (what, value) in [("plural", &k.plural), ("singular", &k.singular)] {
            if !naming::is_dns_label(value) || value.contains('-') {
                self.error(
                    file,
                    what,
                    format!("{value:?} must be lowercase letters and digits"),
                );
            }
        }
        if k.plural == k.singular {
            self.error(file, "plural", "plural and singular must differ");
        }
        for (i, s) in k.short_names.iter().chain(&k.categories).enumerate() {
            if !naming::is_dns_label(s) {
                self.error(
                    file,
                    &format!("shortNames/categories[{i}]"),
                    format!("{s:?} must be a lowercase DNS label"),
                );
            }
        }
    }

    /// The kind's one version (several would need a conversion webhook), served and stored.
    fn the_version<'k>(&mut self, file: &str, k: &'k raw::KindFile) -> Option<&'k raw::Version> {
        let [version] = k.versions.as_slice() else {
            self.error(file, "versions", format!("exactly one version is supported (found {}); several versions need a conversion webhook, which mcall does not have", k.versions.len()));
            return None;
        };
        let version_ok =
            regex::Regex::new(r"^v[1-9][0-9]*((alpha|beta)[1-9][0-9]*)?$").expect("static");
        if !version_ok.is_match(&version.name) {
            self.error(
                file,
                "versions[0].name",
                format!(
                    "{:?} is not a Kubernetes version name such as v1",
                    version.name
                ),
            );
        }
        if !version.served || !version.storage {
            self.error(
                file,
                "versions[0]",
                "the only version must be served and the storage version",
            );
        }
        Some(version)
    }

    /// The spec or status node of a kind: always an object.
    pub(super) fn lower_root(
        &mut self,
        file: &str,
        path: &str,
        node: &raw::Node,
        default_name: &str,
        module: &Module,
    ) -> Option<String> {
        if node.ty.as_deref().is_some_and(|t| t != "object") || node.reference.is_some() {
            self.error(
                file,
                path,
                "spec and status are objects: leave out type and ref",
            );
            return None;
        }
        let name = node
            .rust_name
            .clone()
            .unwrap_or_else(|| default_name.to_owned());
        self.lower_object(file, path, node, &name, module);
        Some(name)
    }

    pub(super) fn check_printer_columns(&mut self, file: &str, kind: &Kind) {
        for (i, col) in kind.printer_columns.iter().enumerate() {
            let path = format!("versions[0].printerColumns[{i}]");
            if !["integer", "number", "string", "boolean", "date"].contains(&col.ty.as_str()) {
                self.error(
                    file,
                    &format!("{path}.type"),
                    format!(
                        "{:?} is not one of integer, number, string, boolean, date",
                        col.ty
                    ),
                );
            }
            if col.priority.is_some_and(|p| p < 0) {
                self.error(
                    file,
                    &format!("{path}.priority"),
                    "priority must not be negative",
                );
            }
            if let Err(message) = self.resolve_column_path(kind, &col.json_path) {
                self.error(file, &format!("{path}.jsonPath"), message);
            }
        }
    }

    pub(super) fn resolve_column_path(&self, kind: &Kind, json_path: &str) -> Result<(), String> {
        let dangling = |why: String| Err(format!("{json_path:?} does not resolve: {why}"));
        let mut segments = json_path
            .strip_prefix('.')
            .ok_or("a column path starts with '.'")?
            .split('.');
        let mut current = match segments.next() {
            Some("metadata") => return Ok(()),
            Some("spec") => kind.spec_type.clone(),
            Some("status") => match &kind.status_type {
                Some(s) => s.clone(),
                None => return dangling("the kind has no status".into()),
            },
            other => {
                return dangling(format!(
                    "the first segment {other:?} is not spec, status or metadata"
                ));
            }
        };
        let mut schema_is_object = true;
        for seg in segments {
            if !schema_is_object {
                return dangling(format!("{seg:?} is below a field that is not an object"));
            }
            let Some(TypeDecl {
                def: TypeDef::Object(o),
                ..
            }) = self.types.get(&current)
            else {
                return dangling(format!("{current} is not an object"));
            };
            let Some(field) = o.fields.iter().find(|f| f.name == seg) else {
                return dangling(format!("{} has no field {seg:?}", o.name));
            };
            match &field.schema {
                Schema::Named(n) => current = n.clone(),
                _ => schema_is_object = false,
            }
        }
        Ok(())
    }
}
