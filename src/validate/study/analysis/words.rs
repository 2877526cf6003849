//! A run configuration (as a header records it) in words: its training kind and objective, and
//! the attack behind its robust accuracies.

/// The fine-tuning objective of a run configuration (as recorded in a header): "standard",
/// "pgd-at" or "trades".
pub fn training_kind(config: &serde_json::Value) -> &str {
    config["training"].as_str().unwrap_or("standard")
}

/// The fine-tuning objective of a run configuration (as recorded in a header) in words:
/// "standard fine-tuning", or e.g. "pgd-at fine-tuning (train attack ε = 4/255, α = 1/255, 5
/// steps)" and "trades fine-tuning (β = 6, train attack …)" as written.
pub fn describe_training(config: &serde_json::Value) -> String {
    let kind = training_kind(config);
    if kind == "standard" {
        return "standard fine-tuning".into();
    }
    let a = &config["train_attack"];
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "ε/4".into(),
        v => v.to_string(),
    };
    let beta = config["trades_beta"].as_f64().unwrap_or(6.0);
    format!(
        "{kind} fine-tuning ({}train attack ε = {}, α = {}, {} steps)",
        if kind == "trades" {
            format!("β = {beta}, ")
        } else {
            String::new()
        },
        text(&a["eps"]),
        text(&a["alpha"]),
        a["steps"].as_u64().unwrap_or(0)
    )
}

/// The `attack` table of a run configuration (as recorded in a header) in words: kind and budget,
/// e.g. "pgd, 15 steps, α = ε/4" or "autoattack (apgd-ce → apgd-t → fab-t → square), 100 iterations, 9
/// targets, 5000 queries"; defaults are the engine's.
pub fn describe_attack(config: &serde_json::Value) -> String {
    let a = &config["attack"];
    let kind = a["kind"].as_str().unwrap_or("pgd");
    let num = |k: &str, d: u64| a[k].as_u64().unwrap_or(d);
    match kind {
        "pgd" => format!(
            "pgd, {} steps, {}",
            num("steps", 15),
            a["alpha"].as_f64().map_or("α = ε/4".into(), |v| format!("α = {v}"))
        ),
        "apgd" | "apgd-ce" | "apgd-dlr" => format!("{kind}, {} iterations", num("steps", 100)),
        "apgd-t" | "fab-t" => format!(
            "{kind}, {} iterations × {} targets",
            num("steps", 100),
            num("targets", 9)
        ),
        "square" => format!("square, {} queries", num("queries", 5000)),
        "autoattack" => format!(
            "autoattack (apgd-ce → apgd-t → fab-t → square), {} iterations, {} targets, {} queries",
            num("steps", 100),
            num("targets", 9),
            num("queries", 5000)
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::describe_attack;
    use serde_json::json;

    /// The report names the attack and its budget, with the engine's defaults where the config
    /// leaves them out.
    #[test]
    fn attacks_in_words() {
        for (attack, want) in [
            (json!({"kind": "pgd", "steps": 15}), "pgd, 15 steps, α = ε/4"),
            (
                json!({"kind": "pgd", "steps": 7, "alpha": 0.001}),
                "pgd, 7 steps, α = 0.001",
            ),
            (
                json!({"kind": "apgd-t", "steps": 50}),
                "apgd-t, 50 iterations × 9 targets",
            ),
            (
                json!({"kind": "fab-t", "targets": 4}),
                "fab-t, 100 iterations × 4 targets",
            ),
            (json!({"kind": "square"}), "square, 5000 queries"),
            (
                json!({"kind": "autoattack", "targets": 3, "queries": 100}),
                "autoattack (apgd-ce → apgd-t → fab-t → square), 100 iterations, 3 targets, 100 queries",
            ),
        ] {
            assert_eq!(describe_attack(&json!({ "attack": attack })), want);
        }
    }
}
