//! One compiled revision of a policy bundle and its per-thread evaluation engines.
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::{Program, RegoVM};
use regorus::{CompiledPolicy, Engine, Value};
use std::collections::HashMap;

use crate::error::{Error, Result};

/// Per thread, the engines of the most recently used revisions (few: revisions are rare).
const ENGINES_PER_THREAD: usize = 4;

static NEXT_COMPILE_ID: AtomicU64 = AtomicU64::new(1);

/// Per thread, the bytecode VMs of the most recently used (revision, rule) programs.
const VMS_PER_THREAD: usize = 8;

/// Evaluations that went to the interpreter because the bytecode VM failed (process-wide).
static VM_FALLBACKS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// (compile id, engine) most recently used first.
    static ENGINES: RefCell<Vec<(u64, Engine)>> = const { RefCell::new(Vec::new()) };
    /// (id of the rule's `VmProgram`, VM loaded with it) most recently used first.
    static VMS: RefCell<Vec<(u64, RegoVM)>> = const { RefCell::new(Vec::new()) };
}

/// Instruction budget of one VM execution (beyond it the interpreter evaluates the rule).
const VM_MAX_INSTRUCTIONS: usize = 50_000_000;

/// A per-thread cache of evaluators keyed by a unique id, most recently used first.
type ThreadCache<T> = std::thread::LocalKey<RefCell<Vec<(u64, T)>>>;

/// Take `id`'s evaluator out of this thread's `cache` (it is put back with [`keep_cached`]).
fn take_cached<T>(cache: &'static ThreadCache<T>, id: u64) -> Option<T> {
    cache.with(|cell| {
        let mut list = cell.borrow_mut();
        list.iter()
            .position(|(k, _)| *k == id)
            .map(|i| list.remove(i).1)
    })
}

/// Put `value` back as the most recently used, keeping at most `cap` per thread.
fn keep_cached<T>(cache: &'static ThreadCache<T>, id: u64, value: T, cap: usize) {
    cache.with(|cell| {
        let mut list = cell.borrow_mut();
        list.insert(0, (id, value));
        list.truncate(cap);
    });
}

/// Evaluations that fell back from the bytecode VM to the interpreter since the process started.
pub fn vm_fallbacks() -> u64 {
    VM_FALLBACKS.load(Ordering::Relaxed)
}

/// A rule compiled to regorus's bytecode (RVM), shared by the threads that evaluate it.
struct VmProgram {
    /// Unique (keys the per-thread VMs; never reused, unlike an address).
    id: u64,
    program: Arc<Program>,
    policy: CompiledPolicy,
    data: Value,
}

/// One revision of a bundle: parsed, analysed modules plus the data document. Immutable;
/// evaluations run on per-thread clones of the prepared engine, so they share no mutable state.
#[derive(Clone)]
pub struct CompiledBundle {
    inner: Arc<Inner>,
}

struct Inner {
    id: u64,
    /// Prepared template; cloned once per (thread, revision). `Engine` is `Send + Sync` with
    /// regorus's `arc` feature, cloning needs only `&Engine`.
    template: Engine,
    /// The merged data document (what `set_data` of a VM gets).
    data: Value,
    /// No rule can conflict, so the bytecode VM (which does not report conflicts) is allowed.
    vm_eligible: bool,
    packages: Vec<String>,
    plans: RwLock<HashMap<String, Arc<Plan>>>,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CompiledBundle>();
};

/// regorus reports `\n--> file:line:col\n  |\n3 | source\n  | ^\nerror: reason`; lead with a
/// one-line `file:line:col: reason` (OPA-like) and keep the source excerpt after it.
fn located(err: impl std::fmt::Display) -> String {
    let full = format!("{err:#}");
    let full = full.trim();
    let loc = full
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("--> "))
        .map(str::trim);
    let reason = full
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("error: "))
        .map(str::trim);
    match (loc, reason) {
        (Some(loc), Some(reason)) => format!("{loc}: {reason}\n{full}"),
        _ => full.to_string(),
    }
}

fn compile_err(path: &str, err: impl std::fmt::Display) -> Error {
    let msg = located(err);
    if path.is_empty() || msg.contains(path) {
        Error::PolicyCompile(msg)
    } else {
        Error::PolicyCompile(format!("{path}: {msg}"))
    }
}

fn eval_err(err: impl std::fmt::Display) -> Error {
    Error::PolicyEval(located(err))
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// One component of a Data API path. As OPA's server does (`stringPathToRef`), a component
/// that parses as an integer is a number (an array index, or a number key), others strings.
#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(i64),
}

impl Seg {
    fn value(&self) -> Value {
        match self {
            Seg::Key(k) => Value::from(k.as_str()),
            Seg::Index(i) => Value::from(*i),
        }
    }
}

/// `"a/b/c"` (OPA's Data API) or `"a.b.c"` (leading `data` optional) → its components.
fn segments(path: &str) -> Vec<Seg> {
    let slash = path.contains('/');
    let sep: &[char] = if slash { &['/'] } else { &['.'] };
    let mut parts: Vec<&str> = path.split(sep).filter(|p| !p.is_empty()).collect();
    if !slash && parts.first() == Some(&"data") {
        parts.remove(0);
    }
    parts
        .into_iter()
        .map(|p| match p.parse::<i64>() {
            Ok(i) => Seg::Index(i),
            Err(_) => Seg::Key(p.to_string()),
        })
        .collect()
}

/// The Rego ref `data.a["x-y"][0]` of `segs`.
fn rego_ref(segs: &[Seg]) -> String {
    let mut out = String::from("data");
    for seg in segs {
        match seg {
            Seg::Key(k) if is_ident(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Key(k) => {
                out.push('[');
                out.push_str(&serde_json::to_string(k).unwrap_or_default());
                out.push(']');
            }
            Seg::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

#[cfg(test)]
pub(crate) fn data_ref(path: &str) -> String {
    rego_ref(&segments(path))
}

/// How a path is evaluated, found once per (revision, path).
enum Plan {
    /// `eval_rule` of a rule path, then the remaining components are looked up in its value.
    Rule {
        rule: String,
        tail: Vec<Value>,
        /// The rule as RVM bytecode, compiled on first use with the VM; `None` inside when the
        /// rule uses something the RVM compiler does not support (the interpreter runs it).
        vm: Arc<OnceLock<Option<Arc<VmProgram>>>>,
    },
    /// A general query (`data`, a package, a base-document path) up to the first numeric
    /// component, then the rest looked up in its value (regorus would look a number up in a
    /// data object as a string key; OPA does not).
    Query { query: String, tail: Vec<Value> },
}

/// Paths remembered per revision (Data API paths come from clients: keep the map bounded).
const MAX_PLANS: usize = 4096;

/// `value[tail[0]][tail[1]]…` (the components of a Data API path below a rule).
fn lookup(mut value: Value, tail: &[Value]) -> Value {
    for key in tail {
        if value == Value::Undefined {
            break;
        }
        let next = value[key].clone();
        value = next;
    }
    value
}

impl VmProgram {
    fn new_vm(&self) -> std::result::Result<RegoVM, String> {
        let mut vm = RegoVM::new_with_policy(self.policy.clone());
        vm.load_program(self.program.clone());
        // OPA's default, as for the interpreter: a built-in error makes the expression undefined.
        vm.set_strict_builtin_errors(false);
        // regorus's default budget (25,000 instructions) would send data-heavy rules back to
        // the interpreter on every call; the interpreter has no budget, so neither does this
        // in practice.
        vm.set_max_instructions(VM_MAX_INSTRUCTIONS);
        vm.set_data(self.data.clone()).map_err(|e| e.to_string())?;
        Ok(vm)
    }

    /// Execute on this thread's VM for the program (created on first use).
    fn run(&self, input: Value) -> std::result::Result<Value, String> {
        let mut vm = match take_cached(&VMS, self.id) {
            Some(vm) => vm,
            None => self.new_vm()?,
        };
        vm.set_input(input);
        let out = vm.execute().map_err(|e| e.to_string());
        keep_cached(&VMS, self.id, vm, VMS_PER_THREAD);
        out
    }
}

fn is_not_rule_path(err: &impl std::fmt::Display) -> bool {
    format!("{err}").contains("not a valid rule path")
}

impl CompiledBundle {
    /// Parse and analyse `modules` (file path inside the bundle, Rego v1 text) and load
    /// `data_json` (the bundle's merged data document, a JSON object; empty = `{}`).
    /// Errors name the file, line and column and the reason.
    pub fn compile(modules: &[(String, String)], data_json: &str) -> Result<CompiledBundle> {
        let mut engine = Engine::new();
        engine.set_rego_v0(false);
        // OPA's default: a built-in error makes the expression undefined instead of failing.
        engine.set_strict_builtin_errors(false);
        let mut packages = Vec::with_capacity(modules.len());
        for (path, rego) in modules {
            let pkg = engine
                .add_policy(path.clone(), rego.clone())
                .map_err(|e| compile_err(path, e))?;
            let pkg = pkg.strip_prefix("data.").unwrap_or(&pkg).to_string();
            if !packages.contains(&pkg) {
                packages.push(pkg);
            }
        }
        let data_json = data_json.trim();
        let mut data_doc = Value::new_object();
        if !data_json.is_empty() {
            let data = Value::from_json_str(data_json).map_err(|e| compile_err("data", e))?;
            if !matches!(data, Value::Object(_)) {
                return Err(Error::PolicyCompile(
                    "data: the data document must be a JSON object".into(),
                ));
            }
            data_doc = data.clone();
            engine.add_data(data).map_err(|e| compile_err("data", e))?;
        }
        // Analyse the modules now (schedule, rule gathering, imports) so that errors surface at
        // compile time and every clone starts prepared.
        engine
            .eval_query("true".to_string(), false)
            .map_err(|e| compile_err("", e))?;
        let id = NEXT_COMPILE_ID.fetch_add(1, Ordering::Relaxed);
        Ok(CompiledBundle {
            inner: Arc::new(Inner {
                id,
                template: engine,
                data: data_doc,
                vm_eligible: super::vm_gate::conflict_free(modules),
                packages,
                plans: RwLock::new(HashMap::new()),
            }),
        })
    }

    /// Unique id of this compilation (keys the per-thread engines).
    pub fn compile_id(&self) -> u64 {
        self.inner.id
    }

    /// Whether rules of this revision may run on the bytecode VM (no rule can conflict; see
    /// `vm_gate`). Rules the RVM compiler rejects still run on the interpreter.
    pub fn vm_eligible(&self) -> bool {
        self.inner.vm_eligible
    }

    /// Whether `path`, already evaluated once, runs on the bytecode VM (a rule of an eligible
    /// revision that the RVM compiler accepts).
    pub fn uses_vm(&self, path: &str) -> bool {
        self.vm_plan(path).is_some()
    }

    /// Packages defined by the modules, dotted, without the `data.` prefix (e.g. `provgraph.authz`).
    pub fn packages(&self) -> Vec<String> {
        self.inner.packages.clone()
    }

    fn with_engine<R>(&self, f: impl FnOnce(&mut Engine) -> R) -> R {
        let id = self.inner.id;
        // Take the engine out while it runs so a panic or re-entrant call cannot observe it.
        let mut engine = take_cached(&ENGINES, id).unwrap_or_else(|| self.inner.template.clone());
        let out = f(&mut engine);
        keep_cached(&ENGINES, id, engine, ENGINES_PER_THREAD);
        out
    }

    /// Find how to evaluate `path`: the longest prefix that is a rule (then look the rest up in
    /// its value, as OPA does for paths below a rule) or else a general query. Evaluates on the
    /// way and returns the value when the plan is a rule.
    fn plan(&self, engine: &mut Engine, path: &str) -> Result<(Arc<Plan>, Option<Value>)> {
        if let Some(plan) = self.inner.plans.read().get(path) {
            return Ok((plan.clone(), None));
        }
        let segs = segments(path);
        let mut found = None;
        // Rules live at data.<package...>.<name>: at least two components.
        for k in (2..=segs.len()).rev() {
            if segs[..k].iter().any(|s| matches!(s, Seg::Index(_))) {
                continue;
            }
            let rule = rego_ref(&segs[..k]);
            match engine.eval_rule(rule.clone()) {
                Ok(v) => {
                    let tail = segs[k..].iter().map(Seg::value).collect();
                    let vm = Arc::default();
                    found = Some((Plan::Rule { rule, tail, vm }, Some(v)));
                    break;
                }
                Err(e) if is_not_rule_path(&e) => continue,
                Err(e) => {
                    // A rule whose evaluation failed: remember the plan, report the error.
                    let tail = segs[k..].iter().map(Seg::value).collect();
                    let vm = Arc::default();
                    self.remember(path, Plan::Rule { rule, tail, vm });
                    return Err(eval_err(e));
                }
            }
        }
        let (plan, value) = found.unwrap_or_else(|| {
            let k = segs
                .iter()
                .position(|s| matches!(s, Seg::Index(_)))
                .unwrap_or(segs.len());
            let tail = segs[k..].iter().map(Seg::value).collect();
            (
                Plan::Query {
                    query: rego_ref(&segs[..k]),
                    tail,
                },
                None,
            )
        });
        Ok((self.remember(path, plan), value))
    }

    fn remember(&self, path: &str, plan: Plan) -> Arc<Plan> {
        let plan = Arc::new(plan);
        let mut plans = self.inner.plans.write();
        if plans.len() < MAX_PLANS {
            plans.insert(path.to_string(), plan.clone());
        }
        plan
    }

    /// Compile `rule` to RVM bytecode; `None` when the RVM compiler does not support the rule
    /// (or its data): then the interpreter keeps evaluating it.
    fn compile_vm(&self, rule: &str) -> Option<Arc<VmProgram>> {
        if !self.inner.vm_eligible {
            return None;
        }
        let mut engine = self.inner.template.clone();
        let policy = engine.compile_with_entrypoint(&rule.into()).ok()?;
        let program = Compiler::compile_from_policy(&policy, &[rule]).ok()?;
        let vm = VmProgram {
            id: NEXT_COMPILE_ID.fetch_add(1, Ordering::Relaxed),
            program,
            policy,
            data: self.inner.data.clone(),
        };
        // Loading the data checks it against the rule tree: do it once here, not per thread.
        vm.new_vm().ok()?;
        Some(Arc::new(vm))
    }

    /// The bytecode VM for a path already planned as a rule (`None`: not planned yet, not a
    /// rule, or not compilable to bytecode).
    fn vm_plan(&self, path: &str) -> Option<(Arc<VmProgram>, Arc<Plan>)> {
        let plan = self.inner.plans.read().get(path).cloned()?;
        match &*plan {
            Plan::Rule { rule, vm, .. } => {
                let program = vm.get_or_init(|| self.compile_vm(rule)).clone()?;
                Some((program, plan))
            }
            Plan::Query { .. } => None,
        }
    }

    /// Evaluate `data.<path>` with `input` already parsed; `Value::Undefined` when undefined.
    /// With `use_vm`, a rule runs on regorus's bytecode VM; should the VM fail, the interpreter
    /// evaluates it again (it defines the semantics, and reports the error if there is one).
    fn eval_value(&self, path: &str, input: Value, use_vm: bool) -> Result<Value> {
        if use_vm {
            if let Some((program, plan)) = self.vm_plan(path) {
                match program.run(input.clone()) {
                    Ok(value) => {
                        let tail = match &*plan {
                            Plan::Rule { tail, .. } | Plan::Query { tail, .. } => tail,
                        };
                        return Ok(lookup(value, tail));
                    }
                    Err(_) => {
                        VM_FALLBACKS.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        self.with_engine(|engine| {
            engine.set_input(input);
            let (plan, value) = self.plan(engine, path)?;
            let (value, tail) = match &*plan {
                Plan::Rule { rule, tail, .. } => {
                    let value = match value {
                        Some(v) => v,
                        None => engine.eval_rule(rule.clone()).map_err(eval_err)?,
                    };
                    (value, tail)
                }
                Plan::Query { query, tail } => {
                    let results = engine.eval_query(query.clone(), false).map_err(eval_err)?;
                    let value = results
                        .result
                        .into_iter()
                        .next()
                        .and_then(|r| r.expressions.into_iter().next())
                        .map(|e| e.value)
                        .unwrap_or(Value::Undefined);
                    (value, tail)
                }
            };
            Ok(lookup(value, tail))
        })
    }

    /// Evaluate `data.<path>` (`"a/b/c"` as in OPA's Data API, or `"a.b.c"`; empty = the whole
    /// data document) with `input_json` as `input` (None = no input). Returns the result as
    /// JSON text, or `None` when undefined.
    /// `use_vm` selects regorus's bytecode VM for rules (flag `policy.vm`), else the interpreter.
    pub fn eval_json(
        &self,
        path: &str,
        input_json: Option<&str>,
        use_vm: bool,
    ) -> Result<Option<String>> {
        let input = match input_json {
            Some(text) => Value::from_json_str(text)
                .map_err(|e| Error::InvalidArgument(format!("input: {e:#}")))?,
            None => Value::Undefined,
        };
        let value = self.eval_value(path, input, use_vm)?;
        if value == Value::Undefined {
            return Ok(None);
        }
        serde_json::to_string(&value).map(Some).map_err(eval_err)
    }

    /// Like [`Self::eval_json`] with `serde_json` values.
    pub fn eval(
        &self,
        path: &str,
        input: Option<serde_json::Value>,
        use_vm: bool,
    ) -> Result<Option<serde_json::Value>> {
        let input_text = input.map(|v| v.to_string());
        match self.eval_json(path, input_text.as_deref(), use_vm)? {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text).map(Some).map_err(eval_err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bundle(rego: &str, data: &str) -> CompiledBundle {
        CompiledBundle::compile(&[("authz/policy.rego".into(), rego.into())], data).unwrap()
    }

    #[test]
    fn data_ref_forms() {
        assert_eq!(data_ref(""), "data");
        assert_eq!(data_ref("a/b/c"), "data.a.b.c");
        assert_eq!(data_ref("a.b"), "data.a.b");
        assert_eq!(data_ref("/a/x-y/"), "data.a[\"x-y\"]");
        assert_eq!(data_ref("data.a"), "data.a");
        assert_eq!(data_ref("a/0/b"), "data.a[0].b");
    }

    #[test]
    fn v1_rules_packages_and_paths() {
        // Twice per mode: the first evaluation of a path plans it, later ones run the VM.
        for vm in [false, true, true] {
            v1_rules_packages_and_paths_with(vm);
        }
    }

    fn v1_rules_packages_and_paths_with(vm: bool) {
        let b = bundle(
            "package authz\ndefault allow := false\nallow if input.user == \"alice\"\ndeny contains msg if { input.user == \"bob\"; msg := \"bob\" }\ndecision := {\"allow\": allow}\n",
            r#"{"roles": {"admin": ["alice"]}}"#,
        );
        assert_eq!(b.packages(), vec!["authz".to_string()]);
        assert_eq!(
            b.eval("authz/allow", Some(json!({"user": "alice"})), vm)
                .unwrap(),
            Some(json!(true))
        );
        assert_eq!(
            b.eval("authz.allow", Some(json!({"user": "carol"})), vm)
                .unwrap(),
            Some(json!(false))
        );
        assert_eq!(
            b.eval("authz/deny", Some(json!({"user": "bob"})), vm)
                .unwrap(),
            Some(json!(["bob"]))
        );
        assert_eq!(
            b.eval("authz/decision/allow", Some(json!({"user": "alice"})), vm)
                .unwrap(),
            Some(json!(true))
        );
        assert_eq!(
            b.eval("roles/admin", None, vm).unwrap(),
            Some(json!(["alice"]))
        );
        assert_eq!(b.eval("nope/x", None, vm).unwrap(), None);
        let all = b
            .eval("", Some(json!({"user": "alice"})), vm)
            .unwrap()
            .unwrap();
        assert_eq!(all["authz"]["allow"], json!(true));
        assert_eq!(all["roles"]["admin"], json!(["alice"]));
        let pkg = b
            .eval("authz", Some(json!({"user": "x"})), vm)
            .unwrap()
            .unwrap();
        assert_eq!(pkg["allow"], json!(false));
    }

    #[test]
    fn compile_error_names_file_line_col() {
        let err = CompiledBundle::compile(
            &[(
                "authz/bad.rego".into(),
                "package authz\n\nallow if {\n  input.x ==\n".into(),
            )],
            "{}",
        )
        .err()
        .unwrap();
        let msg = err.to_string();
        assert!(msg.contains("authz/bad.rego:"), "{msg}");
    }

    #[test]
    fn conflict_is_eval_error() {
        let b = bundle("package p\nx := 1 if true\nx := 2 if true\n", "{}");
        for vm in [false, true, true] {
            assert!(matches!(
                b.eval_json("p/x", None, vm),
                Err(Error::PolicyEval(_))
            ));
        }
    }

    #[test]
    fn threads_agree() {
        let b = bundle("package p\nallow if input.n > 10\n", "{}");
        std::thread::scope(|s| {
            for t in 0..4 {
                let b = b.clone();
                s.spawn(move || {
                    for i in 0..200 {
                        let n = i + t;
                        let vm = i % 2 == 0;
                        let r = b.eval("p/allow", Some(json!({"n": n})), vm).unwrap();
                        assert_eq!(r, if n > 10 { Some(json!(true)) } else { None });
                    }
                });
            }
        });
    }

    #[test]
    fn data_heavy_rule_stays_on_the_vm() {
        let items: Vec<i64> = (0..30_000).map(|i| i % 7 - 3).collect();
        let data = json!({"items": items}).to_string();
        let b = bundle(
            "package p\npositive := count([x | some x in data.items; x > input.min])\n",
            &data,
        );
        let before = vm_fallbacks();
        let want = b.eval("p/positive", Some(json!({"min": 0})), false).unwrap();
        assert!(b.uses_vm("p/positive"));
        let got = b.eval("p/positive", Some(json!({"min": 0})), true).unwrap();
        assert_eq!(got, want);
        assert_eq!(want, Some(json!(12_856)));
        assert_eq!(vm_fallbacks(), before, "the VM ran out of its instruction budget");
    }

    #[test]
    fn vm_agrees_with_interpreter() {
        let rego = r#"package authz
default allow := false
allow if {
    some role in input.user.roles
    some grant in data.grants[role]
    grant.action == input.action
    glob.match(grant.resource, ["/"], input.resource)
}
reasons contains sprintf("no grant for %s", [input.action]) if not allow
needs := {r | some r in input.user.roles; startswith(r, "need-")}
default all_small := false
all_small if { every x in input.xs { x < 10 } }
decision := {"allow": allow, "reasons": reasons, "needs": needs, "all_small": all_small, "n": count(input.xs)}
"#;
        let data = r#"{"grants": {"admin": [{"action": "write", "resource": "/svc/*"}],
                                  "viewer": [{"action": "read", "resource": "/svc/*"}]}}"#;
        let b = bundle(rego, data);
        let before = vm_fallbacks();
        let mut allowed = 0;
        for i in 0..300 {
            let roles = match i % 4 {
                0 => json!(["admin"]),
                1 => json!(["viewer", "need-x"]),
                2 => json!([]),
                _ => json!(["need-a", "need-b"]),
            };
            let input = json!({
                "user": {"roles": roles},
                "action": if i % 3 == 0 { "write" } else { "read" },
                "resource": format!("/svc/{}", i % 7),
                "xs": (0..(i % 5)).map(|k| k * (i % 13)).collect::<Vec<_>>(),
            });
            let want = b
                .eval("authz/decision", Some(input.clone()), false)
                .unwrap();
            let got = b.eval("authz/decision", Some(input), true).unwrap();
            assert_eq!(got, want, "input #{i}");
            if want.as_ref().unwrap()["allow"] == json!(true) {
                allowed += 1;
            }
        }
        assert!(allowed > 50 && allowed < 250, "{allowed}");
        assert_eq!(
            vm_fallbacks(),
            before,
            "the VM failed on a supported policy"
        );
    }
}
