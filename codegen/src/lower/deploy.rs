//! The deployment side of the spec: operator permissions (rbac.yaml) and the Helm values of each
//! environment (environments.yaml).

use std::collections::BTreeMap;

use super::{ENVIRONMENTS_FILE, Lowerer, RBAC_FILE};
use crate::ir::*;
use crate::values::{self, Completeness};
use crate::{naming, raw};

const VERBS: [&str; 8] = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];
const SUBRESOURCES: [&str; 2] = ["status", "finalizers"];

impl Lowerer {
    pub(super) fn lower_rbac(
        &mut self,
        file: &raw::RbacFile,
        group: &str,
        kinds: Option<&[Kind]>,
    ) -> Rbac {
        let mut lower = |section: &str, rules: &[raw::RbacRule]| -> Vec<RbacRule> {
            rules
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let path = format!("{section}[{i}]");
                    self.check_rbac_rule(&path, r, group, kinds);
                    RbacRule {
                        api_groups: r.api_groups.clone(),
                        resources: r.resources.clone(),
                        verbs: r.verbs.clone(),
                        why: r.why.clone(),
                    }
                })
                .collect()
        };
        let rules = lower("rules", &file.rules);
        let operator_namespace_rules =
            lower("operatorNamespaceRules", &file.operator_namespace_rules);
        let cluster_rules = lower("clusterRules", &file.cluster_rules);
        Rbac {
            rules,
            operator_namespace_rules,
            cluster_rules,
        }
    }

    fn check_rbac_rule(
        &mut self,
        path: &str,
        r: &raw::RbacRule,
        group: &str,
        kinds: Option<&[Kind]>,
    ) {
        for (what, list) in [
            ("apiGroups", &r.api_groups),
            ("resources", &r.resources),
            ("verbs", &r.verbs),
        ] {
            if list.is_empty() {
                self.error(RBAC_FILE, &format!("{path}.{what}"), "must not be empty");
            }
            if list.iter().any(|v| v.contains('*')) {
                self.error(
                    RBAC_FILE,
                    &format!("{path}.{what}"),
                    "wildcards are not allowed: name exactly what the operator needs",
                );
            }
        }
        for verb in &r.verbs {
            if !VERBS.contains(&verb.as_str()) && verb != "*" {
                self.error(
                    RBAC_FILE,
                    &format!("{path}.verbs"),
                    format!("unknown verb {verb:?} (known: {})", VERBS.join(", ")),
                );
            }
        }
        if r.why.trim().is_empty() {
            self.error(
                RBAC_FILE,
                &format!("{path}.why"),
                "say why the operator needs this",
            );
        }
        if let Some(kinds) = kinds
            && r.api_groups.iter().any(|g| g == group)
        {
            for resource in &r.resources {
                let (base, sub) = resource
                    .split_once('/')
                    .map_or((resource.as_str(), None), |(b, s)| (b, Some(s)));
                let Some(kind) = kinds.iter().find(|k| k.plural == base) else {
                    self.error(
                        RBAC_FILE,
                        &format!("{path}.resources"),
                        format!(
                            "{resource:?} is not a resource of {group} (kinds: {})",
                            kinds
                                .iter()
                                .map(|k| k.plural.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                    continue;
                };
                match sub {
                    None => {}
                    Some("status") if kind.status_type.is_none() => self.error(
                        RBAC_FILE,
                        &format!("{path}.resources"),
                        format!("{} has no status subresource", kind.kind),
                    ),
                    Some(s) if !SUBRESOURCES.contains(&s) => self.error(
                        RBAC_FILE,
                        &format!("{path}.resources"),
                        format!("unknown subresource {s:?} (known: status, finalizers)"),
                    ),
                    Some(_) => {}
                }
            }
        }
    }

    /// The generated RBAC template reads these values; without them the chart cannot render.
    fn check_chart_settings(&mut self, fields: &[Field]) {
        let has = |name: &str| fields.iter().find(|f| f.name == name);
        if !has("watchNamespaces").is_some_and(
            |f| matches!(&f.schema, Schema::List(l) if matches!(l.items, Schema::String(_))),
        ) {
            self.error(
                ENVIRONMENTS_FILE,
                "settings.watchNamespaces",
                "the chart's RBAC template needs a setting watchNamespaces: a list of strings",
            );
        }
        let rbac_create = has("rbac").and_then(|f| match &f.schema {
            Schema::Named(n) => match self.types.get(n).map(|d| &d.def) {
                Some(TypeDef::Object(o)) => o
                    .fields
                    .iter()
                    .find(|f| f.name == "create")
                    .map(|f| f.schema == Schema::Boolean),
                _ => None,
            },
            _ => None,
        });
        if rbac_create != Some(true) {
            self.error(
                ENVIRONMENTS_FILE,
                "settings.rbac",
                "the chart's RBAC template needs a setting rbac with a boolean field create",
            );
        }
    }

    pub(super) fn lower_settings(&mut self, file: &raw::EnvironmentsFile) -> Settings {
        let fields: Vec<_> = file
            .settings
            .iter()
            .filter_map(|(name, node)| self.lower_setting(name, node))
            .collect();
        // Environment values are checked against the settings once their types exist.
        self.check_pending();
        self.check_chart_settings(&fields);
        let root = ObjectType {
            name: "Values".into(),
            description: None,
            fields: fields.clone(),
            rules: Vec::new(),
        };
        let mut types = self.types.clone();
        types.insert(
            root.name.clone(),
            TypeDecl {
                module: Module::Settings,
                def: TypeDef::Object(root),
            },
        );
        if file.environments.is_empty() {
            self.error(
                ENVIRONMENTS_FILE,
                "environments",
                "declare at least one environment",
            );
        }
        let environments = file
            .environments
            .iter()
            .map(|(name, env)| (name.clone(), self.lower_environment(&types, name, env)))
            .collect();
        Settings {
            fields,
            environments,
        }
    }

    /// One chart value: its name must suit Helm and JSON, its schema is a field's.
    fn lower_setting(&mut self, name: &str, node: &raw::Node) -> Option<Field> {
        let path = format!("settings.{name}");
        if !naming::is_json_field_name(name) {
            self.error(
                ENVIRONMENTS_FILE,
                &path,
                format!("setting name {name:?} must be lowerCamelCase ASCII"),
            );
            return None;
        }
        if name == "global" {
            self.error(
                ENVIRONMENTS_FILE,
                &path,
                "`global` is Helm's own value (shared with subcharts); choose another name",
            );
            return None;
        }
        let ident = naming::field_ident(name).unwrap_or_else(|| name.to_owned());
        self.lower_field(
            ENVIRONMENTS_FILE,
            &path,
            name,
            ident,
            node,
            &Module::Settings,
        )
    }

    /// One environment: its names, and its values checked against the settings (`types` holds
    /// them as the object `Values`).
    fn lower_environment(
        &mut self,
        types: &BTreeMap<String, TypeDecl>,
        name: &str,
        env: &raw::Environment,
    ) -> Environment {
        let path = format!("environments.{name}");
        if !naming::is_dns_label(name) {
            self.error(
                ENVIRONMENTS_FILE,
                &path,
                format!("environment name {name:?} must be a lowercase DNS label"),
            );
        }
        for (what, value) in [
            ("namespace", &env.namespace),
            ("releaseName", &env.release_name),
        ] {
            if !naming::is_dns_label(value) {
                self.error(
                    ENVIRONMENTS_FILE,
                    &format!("{path}.{what}"),
                    format!("{value:?} must be a lowercase DNS label"),
                );
            }
        }
        let values = serde_json::Value::Object(env.values.clone());
        for (p, message) in values::check(
            types,
            &Schema::Named("Values".into()),
            &values,
            &format!("{path}.values"),
            Completeness::Partial,
        ) {
            self.error(ENVIRONMENTS_FILE, &p, message);
        }
        Environment {
            name: name.to_owned(),
            namespace: env.namespace.clone(),
            release_name: env.release_name.clone(),
            values: env.values.clone(),
        }
    }
}
