//! CEL validation rules (`x-kubernetes-validations`). The API server compiles them when the CRD is
//! applied; here we catch what is checkable without a CEL compiler, so a typo fails at generate time.

use super::Lowerer;
use crate::ir::Rule;
use crate::raw;

const REASONS: [&str; 4] = [
    "FieldValueInvalid",
    "FieldValueForbidden",
    "FieldValueRequired",
    "FieldValueDuplicate",
];

pub(super) fn lower_rules(
    cx: &mut Lowerer,
    file: &str,
    path: &str,
    rules: &[raw::Rule],
) -> Vec<Rule> {
    let mut out = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let rule_path = format!("{path}.rules[{i}]");
        if let Err(problem) = check_syntax(&r.rule) {
            cx.error(
                file,
                &format!("{rule_path}.rule"),
                format!("invalid CEL rule {:?}: {problem}", r.rule),
            );
            continue;
        }
        if r.message.trim().is_empty() {
            cx.error(
                file,
                &format!("{rule_path}.message"),
                "a rule needs a message that tells the user what to fix",
            );
        }
        if r.field_path.as_deref().is_some_and(|p| !p.starts_with('.')) {
            cx.error(
                file,
                &format!("{rule_path}.fieldPath"),
                "fieldPath starts with '.', e.g. .tasks",
            );
        }
        if let Some(reason) = &r.reason
            && !REASONS.contains(&reason.as_str())
        {
            cx.error(
                file,
                &format!("{rule_path}.reason"),
                format!("{reason:?} is not one of {}", REASONS.join(", ")),
            );
        }
        out.push(Rule {
            rule: r.rule.clone(),
            message: r.message.clone(),
            field_path: r.field_path.clone(),
            reason: r.reason.clone(),
        });
    }
    out
}

/// Lexical checks: not empty, string literals closed, brackets balanced and matched, no operator
/// dangling at the end.
pub fn check_syntax(rule: &str) -> Result<(), String> {
    let trimmed = rule.trim();
    if trimmed.is_empty() {
        return Err("the rule is empty".into());
    }
    let mut stack = Vec::new();
    let mut chars = trimmed.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                let mut closed = false;
                while let Some(s) = chars.next() {
                    if s == '\\' {
                        chars.next();
                    } else if s == c {
                        closed = true;
                        break;
                    }
                }
                if !closed {
                    return Err(format!("unterminated string literal starting with {c}"));
                }
            }
            '(' | '[' | '{' => stack.push(c),
            ')' | ']' | '}' => {
                let open = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if stack.pop() != Some(open) {
                    return Err(format!("unbalanced {c:?}"));
                }
            }
            _ => {}
        }
    }
    if let Some(open) = stack.pop() {
        return Err(format!("{open:?} is never closed"));
    }
    let dangling = [
        "&&", "||", "==", "!=", "<", ">", "+", "-", "*", "/", "!", "?", ":", ".", ",",
    ];
    if let Some(op) = dangling.iter().find(|op| trimmed.ends_with(**op)) {
        return Err(format!("the rule ends with the operator {op:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_syntax;

    #[test]
    fn accepts_real_rules() {
        for rule in [
            "has(self.input) || has(self.inputTemplate)",
            "!has(self.body) || self.type == 'post'",
            "self.tasks.all(t, !has(t.dependencies) || t.dependencies.all(d, self.tasks.exists(o, o.name == d)))",
            "self.name.matches('^[a-z]+$')",
            r#"self.x == "a)b""#,
        ] {
            assert_eq!(check_syntax(rule), Ok(()), "{rule}");
        }
    }

    #[test]
    fn refuses_broken_rules() {
        for rule in [
            "",
            "has(self.input",
            "self.a == 'x",
            "self.a ||",
            "self.a)",
            "[1, 2)",
        ] {
            assert!(check_syntax(rule).is_err(), "{rule:?} should be refused");
        }
    }
}
