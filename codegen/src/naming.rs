//! Names: JSON names → Rust identifiers, and the checks that keep them valid.

use heck::{ToPascalCase, ToSnakeCase};

/// The Rust field identifier for a JSON field name: snake case, raw when it is a keyword
/// (`type` → `r#type`). `None` when no valid identifier results.
pub fn field_ident(json_name: &str) -> Option<String> {
    let snake = json_name.to_snake_case();
    if syn::parse_str::<syn::Ident>(&snake).is_ok() {
        return Some(snake);
    }
    let raw = format!("r#{snake}");
    syn::parse_str::<syn::Ident>(&raw).is_ok().then_some(raw)
}

/// The Rust variant identifier for an enum's wire value (`startsWith` → `StartsWith`, `True` → `True`).
pub fn variant_ident(wire: &str) -> Option<String> {
    let pascal = wire.to_pascal_case();
    is_plain_ident(&pascal).then_some(pascal)
}

/// A name that is at once its wire string and its Rust variant, as condition types and reasons
/// are (`InvalidSpec`): ASCII letters and digits, PascalCase, and unchanged by PascalCase
/// conversion (so `HTTPFailed`, whose variant would be `HttpFailed`, is not one).
pub fn is_pascal_case_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_alphanumeric())
        && variant_ident(name).as_deref() == Some(name)
}

/// A Rust type name derived from a field name (`httpValidation` → `HttpValidation`).
pub fn type_name(json_name: &str) -> String {
    json_name.to_pascal_case()
}

/// The Rust module for a kind (`McallTask` → `mcall_task`).
pub fn module_name(kind: &str) -> String {
    kind.to_snake_case()
}

/// Whether `name` is usable as a plain (non-raw) Rust identifier.
pub fn is_plain_ident(name: &str) -> bool {
    !name.is_empty() && syn::parse_str::<syn::Ident>(name).is_ok()
}

/// The JSON name serde derives for a Rust field under `rename_all = "camelCase"`; the emitter adds
/// an explicit `#[serde(rename)]` whenever this differs from the spec's name.
pub fn serde_camel_case(ident: &str) -> String {
    let unraw = ident.strip_prefix("r#").unwrap_or(ident);
    let mut out = String::with_capacity(unraw.len());
    let mut upper_next = false;
    for c in unraw.chars() {
        if c == '_' {
            upper_next = true;
        } else if upper_next {
            out.extend(c.to_uppercase());
            upper_next = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A DNS-1123 label (`mcall-dev`), as Kubernetes requires for namespaces and release names.
pub fn is_dns_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// A JSON field name the spec may declare: lower camel case ASCII, starting with a letter.
pub fn is_json_field_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase()) && chars.all(|c| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_idents() {
        for (json, rust) in [
            ("type", "r#type"),
            ("retryCount", "retry_count"),
            ("httpValidation", "http_validation"),
            ("executionTimeMs", "execution_time_ms"),
            ("configMapKeyRef", "config_map_key_ref"),
            ("input", "input"),
            ("match", "r#match"),
            ("async", "r#async"),
        ] {
            assert_eq!(field_ident(json).as_deref(), Some(rust), "{json}");
        }
        assert_eq!(
            field_ident("self"),
            None,
            "`self` cannot be a raw identifier"
        );
    }

    #[test]
    fn serde_round_trips_our_field_names() {
        for json in [
            "type",
            "retryCount",
            "executionTimeMs",
            "configMapKeyRef",
            "failFast",
        ] {
            let ident = field_ident(json).unwrap();
            assert_eq!(serde_camel_case(&ident), json);
        }
        // Names that snake-case lossily need an explicit rename.
        assert_ne!(
            serde_camel_case(&field_ident("httpURL").unwrap()),
            "httpURL"
        );
    }

    #[test]
    fn variant_idents() {
        for (wire, rust) in [
            ("cmd", "Cmd"),
            ("startsWith", "StartsWith"),
            ("True", "True"),
            ("DEBUG", "Debug"),
            ("IfNotPresent", "IfNotPresent"),
        ] {
            assert_eq!(variant_ident(wire).as_deref(), Some(rust), "{wire}");
        }
        assert_eq!(variant_ident("1x"), None);
        assert_eq!(variant_ident(""), None);
    }

    #[test]
    fn pascal_case_names() {
        for (name, ok) in [
            ("InvalidSpec", true),
            ("Ready", true),
            ("Retry2", true),
            ("invalidSpec", false),
            ("HTTPFailed", false),
            ("ALL", false),
            ("Invalid_Spec", false),
            ("Invalid-Spec", false),
            ("Self", false),
            ("", false),
        ] {
            assert_eq!(is_pascal_case_name(name), ok, "{name}");
        }
    }

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("mcall-dev"));
        assert!(!is_dns_label("Mcall"));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label(""));
        assert!(!is_dns_label(&"a".repeat(64)));
    }

    #[test]
    fn json_field_names() {
        assert!(is_json_field_name("retryCount"));
        assert!(!is_json_field_name("RetryCount"));
        assert!(!is_json_field_name("retry_count"));
        assert!(!is_json_field_name(""));
    }
}
