//! Lowering a schema node (a field, a list item or a map value): its type, its limits, and the
//! keys that only some types take.

use super::*;

impl Lowerer {
    /// The schema of a field, list item or map value; inline objects and enums become named types.
    pub(super) fn lower_schema(
        &mut self,
        file: &str,
        path: &str,
        node: &raw::Node,
        name_hint: &str,
        module: &Module,
    ) -> Option<Schema> {
        if let Some(target) = &node.reference {
            return self.lower_reference(file, path, node, target);
        }
        let Some(ty) = node.ty.as_deref() else {
            self.error(file, path, "missing type (or ref)");
            return None;
        };
        let type_name = || {
            node.rust_name
                .clone()
                .unwrap_or_else(|| name_hint.to_owned())
        };
        let schema = match ty {
            "string" => Schema::String(StringRules {
                pattern: node.pattern.clone(),
                min_length: node.min_length,
                max_length: node.max_length,
            }),
            "integer" => self.lower_integer(file, path, node)?,
            "number" => Schema::Number {
                range: Range {
                    minimum: node.minimum.clone(),
                    maximum: node.maximum.clone(),
                },
            },
            "boolean" => Schema::Boolean,
            "datetime" => Schema::DateTime,
            "microtime" => Schema::MicroTime,
            "json" => Schema::Json,
            "enum" => {
                let name = type_name();
                self.lower_enum(file, path, node, &name, module);
                return Some(Schema::Named(name));
            }
            "object" => {
                let name = type_name();
                self.lower_object(file, path, node, &name, module);
                return Some(Schema::Named(name));
            }
            "list" => self.lower_list(file, path, node, name_hint, module)?,
            "map" => self.lower_map(file, path, node, name_hint, module)?,
            other => {
                self.error(file, path, format!("unknown type {other:?} (expected string, integer, number, boolean, datetime, microtime, json, enum, object, list or map, or a ref)"));
                return None;
            }
        };
        self.check_keys(file, path, node, ty);
        self.check_rules(file, path, node);
        Some(schema)
    }

    /// `ref: Name`: one of api.yaml's shared types, and nothing else on the node.
    fn lower_reference(
        &mut self,
        file: &str,
        path: &str,
        node: &raw::Node,
        target: &str,
    ) -> Option<Schema> {
        if node.ty.is_some() {
            self.error(file, path, "set either type or ref, not both");
            return None;
        }
        if !self.shared.contains(target) {
            let known: Vec<_> = self.shared.iter().cloned().collect();
            self.error(
                file,
                path,
                format!(
                    "unknown type reference {target:?} (types of api.yaml: {})",
                    known.join(", ")
                ),
            );
            return None;
        }
        self.check_keys(file, path, node, "ref");
        Some(Schema::Named(target.to_owned()))
    }

    fn lower_integer(&mut self, file: &str, path: &str, node: &raw::Node) -> Option<Schema> {
        let format = match node.format.as_deref() {
            None | Some("int64") => IntFormat::Int64,
            Some("int32") => IntFormat::Int32,
            Some(other) => {
                self.error(
                    file,
                    &format!("{path}.format"),
                    format!("{other:?} is not int32 or int64"),
                );
                return None;
            }
        };
        Some(Schema::Integer {
            format,
            range: Range {
                minimum: node.minimum.clone(),
                maximum: node.maximum.clone(),
            },
        })
    }

    fn lower_list(
        &mut self,
        file: &str,
        path: &str,
        node: &raw::Node,
        name_hint: &str,
        module: &Module,
    ) -> Option<Schema> {
        let element = Element {
            node: node.items.as_deref(),
            key: "items",
            container: "a list",
            suffix: "Item",
        };
        let items = self.lower_element(file, path, element, name_hint, module)?;
        let list_type = self.list_type(file, path, node);
        let map_keys = node.list_map_keys.clone().unwrap_or_default();
        if (list_type == Some(ListType::Map)) == map_keys.is_empty() {
            self.error(
                file,
                path,
                "listMapKeys is required with listType map, and only allowed with it",
            );
        }
        if list_type == Some(ListType::Map) {
            self.pending.push(Pending::ListMapKeys {
                file: file.into(),
                path: path.into(),
                items: items.clone(),
                keys: map_keys.clone(),
            });
        }
        Some(Schema::List(Box::new(ListSchema {
            items,
            min_items: node.min_items,
            max_items: node.max_items,
            list_type,
            map_keys,
        })))
    }

    fn list_type(&mut self, file: &str, path: &str, node: &raw::Node) -> Option<ListType> {
        match node.list_type.as_deref() {
            None => None,
            Some("atomic") => Some(ListType::Atomic),
            Some("set") => Some(ListType::Set),
            Some("map") => Some(ListType::Map),
            Some(other) => {
                self.error(
                    file,
                    &format!("{path}.listType"),
                    format!("{other:?} is not atomic, set or map"),
                );
                None
            }
        }
    }

    fn lower_map(
        &mut self,
        file: &str,
        path: &str,
        node: &raw::Node,
        name_hint: &str,
        module: &Module,
    ) -> Option<Schema> {
        let element = Element {
            node: node.values.as_deref(),
            key: "values",
            container: "a map",
            suffix: "Value",
        };
        let values = self.lower_element(file, path, element, name_hint, module)?;
        Some(Schema::Map {
            values: Box::new(values),
            max_properties: node.max_properties,
        })
    }

    /// A list's items or a map's values: required, not a field, named after the container.
    fn lower_element(
        &mut self,
        file: &str,
        path: &str,
        element: Element<'_>,
        name_hint: &str,
        module: &Module,
    ) -> Option<Schema> {
        let Some(node) = element.node else {
            self.error(
                file,
                path,
                format!("{} needs {}", element.container, element.key),
            );
            return None;
        };
        let path = format!("{path}.{}", element.key);
        self.check_nested(file, &path, node);
        self.lower_schema(
            file,
            &path,
            node,
            &format!("{name_hint}{}", element.suffix),
            module,
        )
    }

    /// A pattern that compiles, and no minimum above its maximum.
    fn check_rules(&mut self, file: &str, path: &str, node: &raw::Node) {
        if let Some(p) = &node.pattern
            && let Err(e) = regex::Regex::new(p)
        {
            self.error(
                file,
                &format!("{path}.pattern"),
                format!("invalid regular expression: {e}"),
            );
        }
        if let (Some(min), Some(max)) = (
            node.minimum.as_ref().and_then(|n| n.as_f64()),
            node.maximum.as_ref().and_then(|n| n.as_f64()),
        ) && min > max
        {
            self.error(
                file,
                path,
                format!("minimum {min} is greater than maximum {max}"),
            );
        }
        for (what, min, max) in [
            ("Length", node.min_length, node.max_length),
            ("Items", node.min_items, node.max_items),
        ] {
            if let (Some(min), Some(max)) = (min, max)
                && min > max
            {
                self.error(
                    file,
                    path,
                    format!("min{what} {min} is greater than max{what} {max}"),
                );
            }
        }
    }

    /// List items and map values are not fields: defaults, `required` and field rules mean nothing there.
    pub(super) fn check_nested(&mut self, file: &str, path: &str, node: &raw::Node) {
        for (key, set) in [
            ("default", node.default.is_some()),
            ("required", node.required),
        ] {
            if set {
                self.error(
                    file,
                    path,
                    format!("`{key}` does not apply to list items or map values"),
                );
            }
        }
        if !node.rules.is_empty() && node.ty.as_deref() != Some("object") {
            self.error(file, path, "`rules` on list items or map values only apply to inline objects; put them on the list or map field");
        }
    }

    /// Refuses keys that mean nothing for the node's type, so they are never silently ignored.
    pub(super) fn check_keys(&mut self, file: &str, path: &str, node: &raw::Node, ty: &str) {
        let applies: [(&str, bool, &[&str]); 15] = [
            ("enum", node.variants.is_some(), &["enum"]),
            ("format", node.format.is_some(), &["integer"]),
            ("minimum", node.minimum.is_some(), &["integer", "number"]),
            ("maximum", node.maximum.is_some(), &["integer", "number"]),
            ("pattern", node.pattern.is_some(), &["string"]),
            ("minLength", node.min_length.is_some(), &["string"]),
            ("maxLength", node.max_length.is_some(), &["string"]),
            ("minItems", node.min_items.is_some(), &["list"]),
            ("maxItems", node.max_items.is_some(), &["list"]),
            ("listType", node.list_type.is_some(), &["list"]),
            ("listMapKeys", node.list_map_keys.is_some(), &["list"]),
            ("items", node.items.is_some(), &["list"]),
            ("values", node.values.is_some(), &["map"]),
            ("fields", node.fields.is_some(), &["object"]),
            ("include", node.include.is_some(), &["object"]),
        ];
        for (key, present, types) in applies {
            if present && !types.contains(&ty) {
                self.error(file, path, format!("`{key}` does not apply to type {ty}"));
            }
        }
        if node.max_properties.is_some() && ty != "map" {
            self.error(
                file,
                path,
                format!("`maxProperties` does not apply to type {ty}"),
            );
        }
        if node.rust_name.is_some() && !["object", "enum"].contains(&ty) {
            self.error(
                file,
                path,
                format!("`rustName` only applies to inline objects and enums, not {ty}"),
            );
        }
    }
}

/// What a list holds (`items`) or a map (`values`).
struct Element<'a> {
    node: Option<&'a raw::Node>,
    /// The key in the spec.
    key: &'static str,
    /// For the error when it is missing: "a list", "a map".
    container: &'static str,
    /// Appended to the container's type name for an inline object or enum.
    suffix: &'static str,
}
