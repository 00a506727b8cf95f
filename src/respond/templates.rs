//! The variables of notification templates: a respond stage's `subject`, `body`, `text`,
//! `message`, `annotations` and `command` may use those the incident gives them (`vigil
//! explain templates`); any other is a typo that would render as empty. The checker and
//! the operators' validation report it at compile time, with a suggestion.

/// The variables of a notification template, as `[a-z_.]` paths. `labels.*` and
/// `incident.labels.*` take any label name.
pub const TEMPLATE_VARIABLES: &[&str] = &[
    "pipeline",
    "stage",
    "series",
    "labels",
    "transition",
    "incident",
    "incident.id",
    "incident.key",
    "incident.status",
    "incident.score",
    "incident.value",
    "incident.series",
    "incident.all_series",
    "incident.labels",
    "incident.opened_at",
    "incident.timestamp",
    "incident.acknowledged",
    "incident.acknowledged_by",
    "incident.transition",
    "incident.samples",
];

/// The parameters of respond operators that hold notification templates.
pub const TEMPLATED_PARAMS: &[&str] = &["subject", "body", "text", "message", "annotations", "command"];

/// What is wrong with a template's variables (or its syntax), in words with a fix; empty
/// when it is fine.
pub fn problems(source: &str) -> Vec<String> {
    if !source.contains("{{") && !source.contains("{%") {
        return Vec::new();
    }
    let env = minijinja::Environment::new();
    let t = match env.template_from_str(source) {
        Ok(t) => t,
        Err(e) => return vec![format!("not a valid template: {e}")],
    };
    let mut used: Vec<String> = t.undeclared_variables(true).into_iter().collect();
    used.sort();
    let mut out = Vec::new();
    for path in used {
        let known = TEMPLATE_VARIABLES.contains(&path.as_str()) || path.starts_with("labels.") || path.starts_with("incident.labels.");
        if known {
            continue;
        }
        let hint = crate::diagnostic::did_you_mean(&path, TEMPLATE_VARIABLES.iter().copied())
            .map(|s| format!("did you mean `{s}`? "))
            .unwrap_or_default();
        out.push(format!("unknown template variable `{path}`: {hint}`vigil explain templates` lists them"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_are_found_and_known_variables_pass() {
        assert!(problems("{{ incident.status }} {{ labels.service }} {{ incident.labels.x }} {{ incident.score | round(1) }}").is_empty());
        assert!(problems("{% for s in incident.all_series %}{{ s }}{% endfor %}").is_empty());
        assert!(problems("no template here").is_empty());
        let p = problems("{{ incident.staus }}");
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("`incident.staus`") && p[0].contains("did you mean `incident.status`"), "{p:?}");
        assert!(problems("{{ incidnt.key }}")[0].contains("unknown template variable `incidnt.key`"));
        assert!(problems("{{ oops")[0].starts_with("not a valid template"));
    }
}
