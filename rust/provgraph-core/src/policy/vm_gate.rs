//! Which bundles may run on regorus's bytecode VM (RVM).
//!
//! The RVM of regorus 0.14 does not report OPA's *conflict* errors: a complete rule or a
//! function producing two different values, an object key produced twice with different
//! values. Where OPA (and regorus's interpreter) fail, the VM returns one of the values or
//! undefined. Those errors make a decision fail closed, so a bundle whose rules could conflict
//! stays on the interpreter. The check is syntactic and conservative: a bundle runs on the VM
//! only when no rule can produce two values, that is when
//!
//! - no partial object rule (`o[k] := v`) and no object comprehension appears anywhere;
//! - every function has one definition;
//! - a complete rule with several definitions gives the same literal value in each (`allow if`
//!   written several times);
//! - a complete rule or function whose value is not a literal does not iterate at the top level
//!   of its bodies: no `some`, and no `a[x]` whose index is not a literal or a variable bound
//!   earlier in the body with `:=` (iteration inside comprehensions, `every` and `not` cannot
//!   produce two values of the rule).
use std::collections::{HashMap, HashSet};

use regorus::unstable::{
    AssignOp, Expr, Literal, Module, Parser, Query, Rule, RuleBody, RuleHead, Source,
};

/// Parse `modules` again (Rego v1) and tell whether their rules can never conflict. Any parse
/// problem answers `false` (the interpreter reports it).
pub(crate) fn conflict_free(modules: &[(String, String)]) -> bool {
    let mut parsed = Vec::with_capacity(modules.len());
    for (path, text) in modules {
        let Ok(source) = Source::from_contents(path.clone(), text.clone()) else {
            return false;
        };
        let Ok(mut parser) = Parser::new(&source) else {
            return false;
        };
        if parser.enable_rego_v1().is_err() {
            return false;
        }
        match parser.parse() {
            Ok(module) => parsed.push(module),
            Err(_) => return false,
        }
    }
    Gate::default().check(&parsed)
}

#[derive(Default)]
struct Gate {
    /// Complete rule path → the literal value text of each definition (`None`: not a literal).
    complete: HashMap<String, Vec<Option<String>>>,
    functions: HashMap<String, usize>,
}

impl Gate {
    fn check(mut self, modules: &[Module]) -> bool {
        for module in modules {
            let package = module.package.refr.span().text().to_string();
            for rule in &module.policy {
                let Rule::Spec { head, bodies, .. } = &**rule else {
                    continue; // defaults never conflict
                };
                let ok = match head {
                    RuleHead::Set { key, .. } => bodies_ok(bodies, key.as_deref(), false),
                    RuleHead::Func { refr, assign, .. } => {
                        let path = format!("{package}.{}", refr.span().text());
                        *self.functions.entry(path).or_default() += 1;
                        bodies_ok(bodies, assign.as_ref().map(|a| &*a.value), true)
                    }
                    RuleHead::Compr { refr, assign, .. } => {
                        let text = refr.span().text();
                        if !matches!(**refr, Expr::Var { .. } | Expr::RefDot { .. })
                            || text.contains('[')
                        {
                            return false; // partial object rule (or a ref head with a key)
                        }
                        let value = assign
                            .as_ref()
                            .map_or(Some("true".to_string()), |a| literal_text(&a.value));
                        self.complete
                            .entry(format!("{package}.{text}"))
                            .or_default()
                            .push(value.clone());
                        bodies_ok(bodies, assign.as_ref().map(|a| &*a.value), true)
                    }
                };
                if !ok {
                    return false;
                }
            }
        }
        self.functions.values().all(|&n| n == 1)
            && self.complete.values().all(|values| {
                values.len() == 1
                    || values
                        .iter()
                        .all(|v| v.is_some() && v.as_ref() == values[0].as_ref())
            })
    }
}

/// Bodies of one rule: no object comprehension anywhere; when the rule's value is not a
/// literal and a second solution would conflict (`single`), no top-level iteration either.
/// An `else` body's own value counts as the rule's value for that body.
/// `value` is the head's value expression (scanned after each body: it may iterate too).
fn bodies_ok(bodies: &[RuleBody], value: Option<&Expr>, single: bool) -> bool {
    if bodies.is_empty() {
        // `x := expr` without a body.
        let mut scan = Scan::default();
        if let Some(v) = value {
            scan.expr(v, true);
        }
        return !scan.object_compr && (value.is_none_or(is_literal) || !single || !scan.iterates);
    }
    bodies.iter().all(|body| {
        let value = match &body.assign {
            Some(assign) if body.is_else => Some(&*assign.value),
            _ => value,
        };
        let literal = value.is_none_or(is_literal);
        let mut scan = Scan::default();
        scan.query(&body.query, true);
        if let Some(v) = value {
            scan.expr(v, true);
        }
        !scan.object_compr && (literal || !single || !scan.iterates)
    })
}

fn is_literal(expr: &Expr) -> bool {
    literal_text(expr).is_some()
}

/// The text of a scalar literal (`"a"`, `1`, `true`, `null`), else `None`.
fn literal_text(expr: &Expr) -> Option<String> {
    match expr {
        Expr::String { span, .. }
        | Expr::RawString { span, .. }
        | Expr::Number { span, .. }
        | Expr::Bool { span, .. }
        | Expr::Null { span, .. } => Some(span.text().to_string()),
        _ => None,
    }
}

/// What a query contains: an object comprehension anywhere; iteration at its top level.
#[derive(Default)]
struct Scan {
    object_compr: bool,
    iterates: bool,
    /// Variables bound with `:=` so far at the top level of the body.
    bound: HashSet<String>,
}

impl Scan {
    fn query(&mut self, query: &Query, top: bool) {
        for stmt in &query.stmts {
            for m in &stmt.with_mods {
                self.expr(&m.refr, false);
                self.expr(&m.r#as, false);
            }
            match &stmt.literal {
                Literal::SomeVars { .. } => self.iterates |= top,
                Literal::SomeIn {
                    key,
                    value,
                    collection,
                    ..
                } => {
                    self.iterates |= top;
                    key.iter().for_each(|k| self.expr(k, false));
                    self.expr(value, false);
                    self.expr(collection, false);
                }
                Literal::Expr { expr, .. } => {
                    self.expr(expr, top);
                    if top {
                        if let Expr::AssignExpr {
                            op: AssignOp::ColEq,
                            lhs,
                            ..
                        } = &**expr
                        {
                            if let Expr::Var { span, .. } = &**lhs {
                                self.bound.insert(span.text().to_string());
                            }
                        }
                    }
                }
                // Neither can bind a variable of the enclosing body.
                Literal::NotExpr { expr, .. } => self.expr(expr, false),
                Literal::Every { domain, query, .. } => {
                    self.expr(domain, false);
                    self.query(query, false);
                }
            }
        }
    }

    fn expr(&mut self, expr: &Expr, top: bool) {
        match expr {
            Expr::String { .. }
            | Expr::RawString { .. }
            | Expr::Number { .. }
            | Expr::Bool { .. }
            | Expr::Null { .. }
            | Expr::Var { .. } => {}
            Expr::Array { items, .. } | Expr::Set { items, .. } => {
                items.iter().for_each(|e| self.expr(e, top));
            }
            Expr::Object { fields, .. } => {
                for (_, k, v) in fields {
                    self.expr(k, top);
                    self.expr(v, top);
                }
            }
            Expr::ArrayCompr { term, query, .. } | Expr::SetCompr { term, query, .. } => {
                self.expr(term, false);
                self.query(query, false);
            }
            Expr::ObjectCompr { .. } => self.object_compr = true,
            Expr::Call { fcn, params, .. } => {
                self.expr(fcn, top);
                params.iter().for_each(|e| self.expr(e, top));
            }
            Expr::UnaryExpr { expr, .. } => self.expr(expr, top),
            Expr::RefDot { refr, .. } => self.expr(refr, top),
            Expr::RefBrack { refr, index, .. } => {
                self.expr(refr, top);
                self.expr(index, top);
                let fixed = is_literal(index)
                    || matches!(&**index, Expr::Var { span, .. } if self.bound.contains(span.text()));
                if top && !fixed {
                    self.iterates = true;
                }
            }
            Expr::BinExpr { lhs, rhs, .. }
            | Expr::BoolExpr { lhs, rhs, .. }
            | Expr::ArithExpr { lhs, rhs, .. }
            | Expr::AssignExpr { lhs, rhs, .. } => {
                self.expr(lhs, top);
                self.expr(rhs, top);
            }
            Expr::Membership {
                key,
                value,
                collection,
                ..
            } => {
                key.iter().for_each(|k| self.expr(k, top));
                self.expr(value, top);
                self.expr(collection, top);
            }
            #[allow(unreachable_patterns)]
            _ => {
                // A construct added by a later regorus: assume the worst.
                self.object_compr = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::conflict_free;

    fn free(rego: &str) -> bool {
        conflict_free(&[("p.rego".into(), format!("package p\n{rego}"))])
    }

    #[test]
    fn conflict_prone_shapes_stay_on_the_interpreter() {
        assert!(!free("x := 1 if input.a\nx := 2 if input.b\n"));
        assert!(!free("x := v if { some v in input.xs }\n"));
        assert!(!free("x := v if { some v in input.xs } else := 0\n"));
        assert!(!free("x := input.xs[i] if { input.ok }\n"));
        assert!(!free("f(a) := 1 if a > 0\nf(a) := 2 if a > 1\n"));
        assert!(!free("o[k] := 1 if { some k in input.ks }\n"));
        assert!(!free("x := {k: 1 | some k in input.ks}\n"));
        assert!(!free(
            "s contains v if { v := {k: 1 | some k in input.ks} }\n"
        ));
        assert!(!free("broken := \n"));
    }

    #[test]
    fn single_valued_shapes_run_on_the_vm() {
        assert!(free(
            "default allow := false\nallow if input.a\nallow if input.b\n"
        ));
        assert!(free("x := 1 if input.a\nx := 1 if input.b\n"));
        assert!(free("x := v if { v := input.xs[0] }\n"));
        assert!(free("x := v if { r := input.r; v := data.m[r] }\n"));
        assert!(free("x := [v | some v in input.xs]\n"));
        assert!(free("s contains v if { some v in input.xs }\n"));
        assert!(free("allow if { some v in input.xs; v > 1 }\n"));
        assert!(free("f(a) := a + 1\nx := f(1)\n"));
        assert!(free(
            "x := y if { every v in input.xs { v > 0 }; y := count(input.xs) }\n"
        ));
    }

    #[test]
    fn example_bundle_runs_on_the_vm() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../python/provgraph/examples/bundles/authz/provgraph/authz"
        );
        let mut modules = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rego") {
                let text = std::fs::read_to_string(&path).unwrap();
                modules.push((path.display().to_string(), text));
            }
        }
        assert!(!modules.is_empty());
        assert!(conflict_free(&modules));
    }
}
