//! Risk monitoring (风险监测): configurable rules over facts about a payment, each with an
//! action. The strictest action of the rules that fire wins.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RiskAction {
    Allow,
    /// The payment waits for the consumer's confirmation (pay password) and moves no money
    /// until then.
    Hold,
    Block,
}

/// One rule: fires at or above `threshold`, then takes `action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub threshold: i64,
    pub action: RiskAction,
}

/// The rules, from the `[risk]` table of the config file. Amounts are minor units.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskRules {
    /// More than `threshold` payments within `velocity_window_secs`.
    pub velocity: Option<Rule>,
    pub velocity_window_secs: i64,
    /// A single payment of at least `threshold`.
    pub single_amount: Option<Rule>,
    /// Today's payments (this one included) reaching `threshold`.
    pub daily_amount: Option<Rule>,
    /// A first payment to a payee of at least `threshold`.
    pub new_payee_amount: Option<Rule>,
    /// At least `threshold` wrong pay passwords in the current streak.
    pub wrong_pay_passwords: Option<Rule>,
    /// At least `threshold` failed payment codes from the paying device in the failure window.
    pub code_failures: Option<Rule>,
}

impl Default for RiskRules {
    fn default() -> Self {
        RiskRules {
            velocity: Some(Rule { threshold: 60, action: RiskAction::Hold }),
            velocity_window_secs: 600,
            single_amount: None,
            daily_amount: Some(Rule { threshold: 5_000_000, action: RiskAction::Block }),
            new_payee_amount: Some(Rule { threshold: 500_000, action: RiskAction::Hold }),
            wrong_pay_passwords: Some(Rule { threshold: 3, action: RiskAction::Hold }),
            code_failures: Some(Rule { threshold: 3, action: RiskAction::Hold }),
        }
    }
}

/// What is known about a payment when it is decided.
#[derive(Debug, Clone, Copy, Default)]
pub struct RiskFacts {
    pub amount_minor: i64,
    /// Payments by this consumer within the velocity window, before this one.
    pub recent_payments: i64,
    /// Paid today before this one.
    pub spent_today_minor: i64,
    pub paid_payee_before: bool,
    pub pay_password_failures: i64,
    pub device_code_failures: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: RiskAction,
    /// The rules that fired, by name.
    pub reasons: Vec<&'static str>,
}

pub fn evaluate(rules: &RiskRules, f: &RiskFacts) -> Decision {
    let checks: [(&'static str, Option<Rule>, i64); 6] = [
        ("velocity", rules.velocity, f.recent_payments + 1),
        ("single_amount", rules.single_amount, f.amount_minor),
        ("daily_amount", rules.daily_amount, f.spent_today_minor + f.amount_minor),
        ("new_payee_amount", rules.new_payee_amount, if f.paid_payee_before { 0 } else { f.amount_minor }),
        ("wrong_pay_passwords", rules.wrong_pay_passwords, f.pay_password_failures),
        ("code_failures", rules.code_failures, f.device_code_failures),
    ];
    let mut decision = Decision { action: RiskAction::Allow, reasons: Vec::new() };
    for (name, rule, value) in checks {
        let Some(rule) = rule else { continue };
        // Velocity counts payments: it fires when this one would exceed the threshold.
        let fires = if name == "velocity" { value > rule.threshold } else { value >= rule.threshold && value > 0 };
        if fires && rule.action != RiskAction::Allow {
            decision.action = decision.action.max(rule.action);
            decision.reasons.push(name);
        }
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> RiskRules {
        RiskRules {
            velocity: Some(Rule { threshold: 3, action: RiskAction::Hold }),
            velocity_window_secs: 60,
            single_amount: Some(Rule { threshold: 100_000, action: RiskAction::Hold }),
            daily_amount: Some(Rule { threshold: 200_000, action: RiskAction::Block }),
            new_payee_amount: Some(Rule { threshold: 50_000, action: RiskAction::Hold }),
            wrong_pay_passwords: Some(Rule { threshold: 2, action: RiskAction::Hold }),
            code_failures: None,
        }
    }

    #[test]
    fn each_rule_fires_at_its_threshold() {
        let base = RiskFacts { amount_minor: 100, paid_payee_before: true, ..RiskFacts::default() };
        assert_eq!(evaluate(&rules(), &base).action, RiskAction::Allow);
        let cases: [(RiskFacts, RiskAction, &str); 5] = [
            (RiskFacts { recent_payments: 3, ..base }, RiskAction::Hold, "velocity"),
            (RiskFacts { amount_minor: 100_000, ..base }, RiskAction::Hold, "single_amount"),
            (RiskFacts { spent_today_minor: 199_950, ..base }, RiskAction::Block, "daily_amount"),
            (
                RiskFacts { amount_minor: 50_000, paid_payee_before: false, ..base },
                RiskAction::Hold,
                "new_payee_amount",
            ),
            (RiskFacts { pay_password_failures: 2, ..base }, RiskAction::Hold, "wrong_pay_passwords"),
        ];
        for (facts, action, reason) in cases {
            let d = evaluate(&rules(), &facts);
            assert_eq!(d.action, action, "{reason}");
            assert!(d.reasons.contains(&reason), "{reason}: {:?}", d.reasons);
        }
        assert_eq!(evaluate(&rules(), &RiskFacts { recent_payments: 2, ..base }).action, RiskAction::Allow);
    }

    #[test]
    fn the_strictest_action_wins() {
        let facts = RiskFacts { amount_minor: 150_000, spent_today_minor: 100_000, ..RiskFacts::default() };
        let d = evaluate(&rules(), &facts);
        assert_eq!(d.action, RiskAction::Block);
        assert_eq!(d.reasons, ["single_amount", "daily_amount", "new_payee_amount"]);
    }
}
