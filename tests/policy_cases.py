"""Rego semantics cases: (policy modules, data, input, query path, expected result).

Each case is a dict with
  name      unique id
  modules   {path inside the bundle: Rego v1 text}
  data      the bundle's data document (a JSON object)
  input     the input document, or NO_INPUT (the query runs without `input`)
  query     the Data API path ("pkg/rule" = `data.pkg.rule`; "" = `data`)
  expected  the JSON result, UNDEFINED (OPA answers without `result`) or ERROR (evaluation error)
  deviation (optional) why regorus's interpreter answers differently from OPA here: the test is a
              strict xfail on the interpreter (the bytecode VM answers as OPA does)

The expected values were written from OPA v1.x's documented semantics (policy language and
built-in reference) -- the OPA binary is not available in this environment, so they were not
produced by running `opa eval`. They are what `POST /v1/data/<query>` on OPA returns in
`result`: sets serialize as arrays in OPA's sort order, objects by key, numbers as JSON
numbers (OPA prints 4 / 2 as 2). Policies use Rego v1 syntax without `import rego.v1`.
"""

from __future__ import annotations

from typing import Any


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


UNDEFINED: Any = _Marker("UNDEFINED")
ERROR: Any = _Marker("ERROR")
NO_INPUT: Any = _Marker("NO_INPUT")

CASES: list[dict[str, Any]] = []


def case(name: str, rego: str | dict[str, str], query: str, expected: Any, *,
         input: Any = NO_INPUT, data: dict[str, Any] | None = None, deviation: str | None = None) -> None:
    modules = rego if isinstance(rego, dict) else {f"cases/{name}.rego": rego}
    CASES.append({"name": name, "modules": modules, "data": data or {}, "input": input,
                  "query": query, "expected": expected, "deviation": deviation})


def t(body: str) -> str:
    """A module of package `t`."""
    return "package t\n\n" + body.strip() + "\n"


# --- rule defaults and undefined ---------------------------------------------------------
ALLOW_ADMIN = t("""
default allow := false
allow if input.user == "admin"
""")
case("default_applies", ALLOW_ADMIN, "t/allow", False, input={"user": "bob"})
case("default_overridden", ALLOW_ADMIN, "t/allow", True, input={"user": "admin"})
case("default_without_input", ALLOW_ADMIN, "t/allow", False)
case("undefined_without_default", t('allow if input.x == 1'), "t/allow", UNDEFINED, input={"x": 2})
case("undefined_missing_input", t('allow if input.x == 1'), "t/allow", UNDEFINED)
case("undefined_value_ref", t('v := input.missing'), "t/v", UNDEFINED, input={"present": 1})
case("undefined_unknown_rule_path", t('a := 1'), "t/nope", UNDEFINED)
case("undefined_unknown_package", t('a := 1'), "nope/a", UNDEFINED)
case("default_object_value", t("""
default decision := {"allow": false, "reasons": []}
decision := {"allow": true, "reasons": ["owner"]} if input.owner
"""), "t/decision", {"allow": False, "reasons": []}, input={"owner": False})

# --- some / every ------------------------------------------------------------------------
case("some_in_array", t('has_admin if { some r in input.roles; r == "admin" }'), "t/has_admin", True,
     input={"roles": ["dev", "admin"]})
case("some_in_array_no_match", t('has_admin if { some r in input.roles; r == "admin" }'),
     "t/has_admin", UNDEFINED, input={"roles": ["dev"]})
case("some_index_value", t('idx contains i if { some i, r in input.roles; r == "b" }'), "t/idx", [1, 2],
     input={"roles": ["a", "b", "b"]})
case("some_object_key_value", t('ks contains k if { some k, v in input.obj; v > 1 }'), "t/ks", ["b", "c"],
     input={"obj": {"a": 1, "b": 2, "c": 3}})
case("some_pairs", t('pairs contains [x, y] if { some x in [1, 2, 3]; some y in [1, 2, 3]; x < y; x + y == 4 }'),
     "t/pairs", [[1, 3]])
case("some_vars_unification", t('hit if { some i; input.xs[i] == "z" }'), "t/hit", True,
     input={"xs": ["a", "z"]})
case("every_true", t('all_pos if { every x in input.nums { x > 0 } }'), "t/all_pos", True,
     input={"nums": [1, 2, 3]})
case("every_false", t('all_pos if { every x in input.nums { x > 0 } }'), "t/all_pos", UNDEFINED,
     input={"nums": [1, -2, 3]})
case("every_empty_is_true", t('all_pos if { every x in input.nums { x > 0 } }'), "t/all_pos", True,
     input={"nums": []})
case("every_key_value", t('ok if { every k, v in input.o { startswith(k, "x"); v > 0 } }'), "t/ok", True,
     input={"o": {"xa": 1, "xb": 2}})

# --- comprehensions ----------------------------------------------------------------------
# The head of a comprehension is a term: `[x * 2 | some x in xs]` is a parse error in OPA
# (parseArray reads a plain term before `|`), and in regorus too.
case("array_comprehension", t('doubled := [y | some x in input.nums; y := x * 2]'), "t/doubled", [2, 4, 6],
     input={"nums": [1, 2, 3]})
case("array_comprehension_paren_head", t('doubled := [(x * 2) | some x in input.nums]'), "t/doubled", [2, 4, 6],
     input={"nums": [1, 2, 3]})
case("set_comprehension", t('s := {x | some x in input.nums; x > 1}'), "t/s", [2, 3],
     input={"nums": [3, 1, 2, 3]})
case("object_comprehension", t('o := {k: count(v) | some k, v in input.m}'), "t/o", {"a": 1, "b": 2},
     input={"m": {"a": [1], "b": [1, 2]}})
case("comprehension_over_data", t('admins := {u | some u, rs in data.user_roles; "admin" in rs}'),
     "t/admins", ["ann", "cid"],
     data={"user_roles": {"cid": ["admin"], "bob": ["dev"], "ann": ["dev", "admin"]}})
case("empty_comprehension", t('xs := [x | some x in input.nums; x > 10]'), "t/xs", [],
     input={"nums": [1]})

# --- sets --------------------------------------------------------------------------------
case("set_union", t('u := {1, 2} | {2, 3}'), "t/u", [1, 2, 3])
case("set_intersection", t('i := {1, 2, 3} & {2, 3, 4}'), "t/i", [2, 3])
case("set_difference", t('d := {1, 2, 3} - {2}'), "t/d", [1, 3])
case("set_equality_unordered", t('e := {1, 2} == {2, 1}'), "t/e", True)
case("set_count_distinct", t('n := count({x | some x in input.a})'), "t/n", 2, input={"a": [1, 1, 2]})
case("set_sort_order_mixed_types", t('s := {"b", 1, "a", true, null, [1]}'), "t/s",
     [None, True, 1, "a", "b", [1]])

# --- partial sets / partial objects / incremental definitions ----------------------------
DENY = t("""
deny contains msg if {
    input.age < 18
    msg := "too young"
}

deny contains msg if {
    not input.email
    msg := "no email"
}
""")
case("partial_set_members", DENY, "t/deny", ["no email", "too young"], input={"age": 10})
case("partial_set_empty", DENY, "t/deny", [], input={"age": 30, "email": "a@b"})
PERMS = t("""
perms[r] := ps if {
    some r, ps in data.roles
    count(ps) > 1
}
""")
ROLES = {"roles": {"admin": ["read", "write"], "viewer": ["read"]}}
case("partial_object", PERMS, "t/perms", {"admin": ["read", "write"]}, data=ROLES)
case("partial_object_key_path", PERMS, "t/perms/admin", ["read", "write"], data=ROLES)
case("partial_object_missing_key", PERMS, "t/perms/viewer", UNDEFINED, data=ROLES)
case("incremental_complete_rule", t("""
allow if input.a
allow if input.b
"""), "t/allow", True, input={"b": True})
case("incremental_partial_set_two_files", {
    "cases/m1.rego": t('members contains "b"'),
    "cases/m2.rego": t('members contains "a"'),
}, "t/members", ["a", "b"])
case("ref_head_rule", t('a.b.c := 1'), "t/a", {"b": {"c": 1}})

# --- with --------------------------------------------------------------------------------
case("with_input_as", t("""
allow if input.user == "alice"
check if allow with input as {"user": "alice"}
"""), "t/check", True)
case("with_input_path", t("""
allow if {
    "admin" in input.actor.roles
    input.actor.id == "x"
}
check if allow with input.actor.roles as ["admin"]
"""), "t/check", True, input={"actor": {"id": "x", "roles": []}})
WITH_DATA = t("""
allowed_role if "admin" in data.roles
check if allowed_role with data.roles as ["admin"]
""")
case("with_data_as", WITH_DATA, "t/check", True, data={"roles": ["viewer"]})
case("with_data_scoped", WITH_DATA, "t/allowed_role", UNDEFINED, data={"roles": ["viewer"]})

# --- not / else / functions ------------------------------------------------------------------
NOT = t("""
blocked if input.user == "eve"
allow if not blocked
""")
case("not_true", NOT, "t/allow", True, input={"user": "bob"})
case("not_false", NOT, "t/allow", UNDEFINED, input={"user": "eve"})
ELSE = t("""
level := "high" if {
    input.score > 80
} else := "mid" if {
    input.score > 50
} else := "low"
""")
case("else_middle", ELSE, "t/level", "mid", input={"score": 60})
case("else_last", ELSE, "t/level", "low", input={"score": 10})
case("else_first", ELSE, "t/level", "high", input={"score": 99})
case("function_multiple_bodies", t("""
f(x) := "neg" if x < 0
f(x) := "pos" if x > 0
f(0) := "zero"
r := [f(-1), f(0), f(5)]
"""), "t/r", ["neg", "zero", "pos"])
case("function_undefined", t("""
g(x) := 1 if x > 0
r := g(-1)
"""), "t/r", UNDEFINED)
case("function_boolean", t("""
is_admin(u) if "admin" in data.user_roles[u]
r := [u | some u in ["ann", "bob"]; is_admin(u)]
"""), "t/r", ["ann"], data={"user_roles": {"ann": ["admin"], "bob": []}})

# --- conflicts (evaluation errors in OPA) ------------------------------------------------
case("conflict_complete_rule", t("""
x := 1 if true
x := 2 if true
"""), "t/x", ERROR)
case("conflict_partial_object_key", t("""
o["k"] := 1 if true
o["k"] := 2 if true
"""), "t/o", ERROR)
case("conflict_function_outputs", t("""
f(_) := 1
f(_) := 2
r := f(1)
"""), "t/r", ERROR)
case("no_conflict_same_value", t("""
x := 1 if true
x := 1 if input.z
"""), "t/x", 1, input={"z": True})

# --- strings -----------------------------------------------------------------------------
case("glob_match_single_label", t('r := glob.match("*.example.com", ["."], "api.example.com")'), "t/r", True)
case("glob_match_no_cross_delimiter",
     t('r := glob.match("*.example.com", ["."], "a.b.example.com")'), "t/r", False)
case("glob_match_super_wildcard", t('r := glob.match("/api/**", ["/"], "/api/v1/users")'), "t/r", True)
case("glob_match_default_delimiter", t('r := [glob.match("a*", [], "a.b"), glob.match("a*", null, "a.b")]'),
     "t/r", [False, True])
case("glob_match_charclass", t('r := glob.match("file-[0-9].txt", [], "file-7.txt")'), "t/r", True)
case("startswith_endswith", t('r := [startswith("foobar", "foo"), endswith("foobar", "bar"), startswith("foo", "bar")]'),
     "t/r", [True, True, False])
case("contains_string", t('r := [contains("hello world", "lo w"), contains("abc", "x")]'), "t/r", [True, False])
case("sprintf_formats", t('r := sprintf("%s has %d items costing %.2f", ["cart", 3, 4.5])'), "t/r",
     "cart has 3 items costing 4.50")
case("sprintf_v", t('r := sprintf("%v-%v", [1, "a"])'), "t/r", "1-a")
case("concat_array", t('r := concat(", ", ["a", "b", "c"])'), "t/r", "a, b, c")
case("concat_set_sorted", t('r := concat("-", {"b", "a"})'), "t/r", "a-b")
case("split", t('r := split("a/b/c", "/")'), "t/r", ["a", "b", "c"])
case("lower_upper", t('r := [lower("AbC"), upper("AbC")]'), "t/r", ["abc", "ABC"])
case("string_misc", t("""
r := [replace("a-b-c", "-", "_"), trim_space("  x "), trim("xxhixx", "x"), trim_prefix("prefix-x", "prefix-"),
      trim_suffix("x.rego", ".rego"), substring("hello", 1, 3), indexof("abc", "c"), format_int(255, 16)]
"""), "t/r", ["a_b_c", "x", "hi", "x", "x", "ell", 2, "ff"])
case("count_string_runes", t('r := count("héllo")'), "t/r", 5)
case("regex_match", t('r := [regex.match(`^a.c$`, "abc"), regex.match(`^a.c$`, "abcd")]'), "t/r", [True, False])
case("string_comparison", t('r := ["a" < "b", "abc" < "abd", "B" < "a", "a" < "aa", "b" > "abc"]'), "t/r",
     [True, True, True, True, True])
case("to_number", t('r := [to_number("42"), to_number("1.5")]'), "t/r", [42, 1.5])

# --- numbers and aggregates --------------------------------------------------------------
case("int_float_equality", t('r := [1 == 1.0, 1.0 == 1, {"a": 1} == {"a": 1.0}, [1, 2] == [1.0, 2.0]]'), "t/r",
     [True, True, True, True])
case("arithmetic", t('r := [2 / 4, 4 / 2, 7 % 3, 3 * 1.5, 1 - 3, abs(-2), round(2.5), ceil(1.2), floor(1.8)]'), "t/r",
     [0.5, 2, 1, 4.5, -2, 2, 3, 2, 1])
case("count_sum_max_min", t('r := [count([1, 2, 3]), sum([1, 2, 3.5]), max([3, 7, 2]), min([3, 7, 2]), sum([])]'),
     "t/r", [3, 6.5, 7, 2, 0])
case("max_empty_undefined", t('r := max([])'), "t/r", UNDEFINED)
case("count_object_and_set", t('r := [count({"a": 1, "b": 2}), count({1, 2, 2})]'), "t/r", [2, 2])
case("numbers_range", t('r := numbers.range(1, 3)'), "t/r", [1, 2, 3])
case("total_order_across_types", t('r := [null < false, false < 0, 1 < "a", "z" < [], [] < {}]'), "t/r",
     [True, True, True, True, True])
case("compare_input_number", t('big if input.n >= 10'), "t/big", True, input={"n": 10.0})

# --- arrays and objects ------------------------------------------------------------------
case("array_concat", t('r := array.concat([1, 2], [3])'), "t/r", [1, 2, 3])
case("array_slice", t('r := [array.slice([1, 2, 3, 4], 1, 3), array.slice([1, 2, 3], 2, 10)]'), "t/r",
     [[2, 3], [3]])
case("array_reverse_sort", t('r := [array.reverse([1, 2, 3]), sort([3, 1, 2])]'), "t/r", [[3, 2, 1], [1, 2, 3]])
case("object_get", t('r := [object.get({"a": 1}, "b", "dflt"), object.get({"a": {"b": 2}}, ["a", "b"], 0), object.get({"a": 1}, "a", 0)]'),
     "t/r", ["dflt", 2, 1])
case("object_union_remove_keys", t("""
r := [object.union({"a": 1, "c": {"x": 1}}, {"b": 2, "c": {"y": 2}}), object.remove({"a": 1, "b": 2}, ["a"]), object.keys({"b": 1, "a": 2})]
"""), "t/r", [{"a": 1, "b": 2, "c": {"x": 1, "y": 2}}, {"b": 2}, ["a", "b"]])
case("in_membership", t('r := [2 in [1, 2], "x" in {"x"}, 3 in [1, 2], "v" in {"k": "v"}, "k" in {"k": "v"}]'),
     "t/r", [True, True, False, True, False])
case("in_key_value", t("""
kv if "k", "v" in {"k": "v"}
idx if 1, "b" in ["a", "b"]
r := [kv, idx]
"""), "t/r", [True, True])
case("json_marshal_sorted", t('r := json.marshal({"b": 1, "a": [true, null]})'), "t/r", '{"a":[true,null],"b":1}')
case("type_checks", t('r := [is_string("x"), is_number(1), type_name([]), type_name({}), type_name(set())]'), "t/r",
     [True, True, "array", "object", "set"])

# --- other built-ins enabled in the build ------------------------------------------------
case("encoding", t('r := [base64.encode("hi"), hex.encode("hi"), urlquery.encode("a b&c"), base64url.decode("aGk")]'),
     "t/r", ["aGk=", "6869", "a+b%26c", "hi"])
case("net_semver", t('r := [net.cidr_contains("10.0.0.0/8", "10.1.2.3"), semver.compare("1.2.3", "1.10.0")]'),
     "t/r", [True, -1])
case("time_parse", t('r := time.parse_rfc3339_ns("2020-01-01T00:00:00Z")'), "t/r", 1577836800000000000)

# --- built-in errors are undefined (OPA's non-strict default) ----------------------------
case("builtin_error_undefined", t('r := to_number("abc")'), "t/r", UNDEFINED)
case("divide_by_zero_undefined", t('r := 1 / 0'), "t/r", UNDEFINED)
case("builtin_error_in_negation", t('ok if not to_number("abc") == 1'), "t/ok", True)

# --- documents: packages, data, and the whole tree ----------------------------------------
case("data_document_path", t('a := 1'), "roles/admin", ["read", "write"], data=ROLES)
case("package_object_excludes_functions", t("""
a := 1
b := "x"
f(x) := x
"""), "t", {"a": 1, "b": "x"})
case("package_merges_base_documents", t('a := 1'), "t", {"a": 1, "d": 5}, data={"t": {"d": 5}})
case("whole_data_tree", {"cases/p.rego": "package p.q\n\nv := 2\n"}, "", {"p": {"q": {"v": 2}}, "k": 1},
     data={"k": 1})
case("nested_package_path", {"cases/p.rego": "package p.q\n\nv := input.x\n"}, "p/q/v", "y", input={"x": "y"})
case("rule_value_subpath", t('decision := {"allow": true, "reasons": ["r1"]}'), "t/decision/reasons", ["r1"])
# Data API path components that parse as integers are numbers (OPA's stringPathToRef).
case("path_array_index_in_data", t('a := 1'), "arr/1", 20, data={"arr": [10, 20]})
case("path_array_index_in_rule_value", t('xs := ["a", "b"]'), "t/xs/1", "b")
case("path_numeric_object_key_is_number", t('a := 1'), "o/1", UNDEFINED, data={"o": {"1": "x"}})
case("path_below_partial_set_member", DENY, "t/deny/too young", "too young", input={"age": 10})
case("path_below_undefined_rule", t('v := input.x'), "t/v/k", UNDEFINED, input={})
case("number_index_on_data_object_in_policy", t('q := data.o[1]'), "t/q", UNDEFINED, data={"o": {"1": "x"}},
     deviation="regorus looks a number up in a base-document object as a string key ({\"1\": ...}[1] "
               "finds it); OPA compares keys by type. Object literals behave like OPA.")
case("number_index_on_object_literal", t('q := {"1": "x"}[1]'), "t/q", UNDEFINED)
case("import_data_alias", {
    "cases/lib.rego": "package lib\n\nadmins := {\"ann\"}\n",
    "cases/main.rego": "package t\n\nimport data.lib\n\nallow if input.user in lib.admins\n",
}, "t/allow", True, input={"user": "ann"})
case("import_input_alias", {"cases/main.rego": "package t\n\nimport input.actor\n\nid := actor.id\n"}, "t/id", "u1",
     input={"actor": {"id": "u1"}})

# --- an RBAC + ABAC decision like the example bundle's -------------------------------------
AUTHZ = """package provgraph.authz

default allow := false

role_perms := data.roles

allow if {
    some role in input.actor.roles
    input.action in role_perms[role]
}

allow if {
    input.resource.attributes.owner == input.actor.id
    input.action in {"read", "update"}
}

reasons contains sprintf("role %s grants %s", [role, input.action]) if {
    some role in input.actor.roles
    input.action in role_perms[role]
}

reasons contains "owner" if input.resource.attributes.owner == input.actor.id

obligations contains {"type": "dual_control", "approvers": 2} if {
    input.action in data.hazardous
}

decision := {"allow": allow, "reasons": reasons, "obligations": obligations}
"""
AUTHZ_DATA = {"roles": {"analyst": ["read", "query"], "admin": ["read", "query", "delete", "export"]},
              "hazardous": ["delete", "export"]}


def _authz_input(roles: list[str], action: str, owner: str = "user:zed") -> dict[str, Any]:
    return {"tenant_id": "acme", "actor": {"id": "user:al", "roles": roles}, "action": action,
            "resource": {"type": "doc", "id": "d1", "attributes": {"owner": owner}}, "context": {}}


case("authz_rbac_allow", {"authz/policy.rego": AUTHZ}, "provgraph/authz/decision",
     {"allow": True, "reasons": ["role analyst grants read"], "obligations": []},
     data=AUTHZ_DATA, input=_authz_input(["analyst"], "read"))
case("authz_rbac_deny", {"authz/policy.rego": AUTHZ}, "provgraph/authz/decision",
     {"allow": False, "reasons": [], "obligations": [{"approvers": 2, "type": "dual_control"}]},
     data=AUTHZ_DATA, input=_authz_input(["analyst"], "delete"))
case("authz_rbac_deny_plain", {"authz/policy.rego": AUTHZ}, "provgraph/authz/decision",
     {"allow": False, "reasons": [], "obligations": []},
     data=AUTHZ_DATA, input=_authz_input(["analyst"], "export_none"))
case("authz_abac_owner", {"authz/policy.rego": AUTHZ}, "provgraph/authz/decision",
     {"allow": True, "reasons": ["owner"], "obligations": []},
     data=AUTHZ_DATA, input=_authz_input([], "update", owner="user:al"))
case("authz_obligation", {"authz/policy.rego": AUTHZ}, "provgraph/authz/decision",
     {"allow": True, "reasons": ["role admin grants delete"],
      "obligations": [{"approvers": 2, "type": "dual_control"}]},
     data=AUTHZ_DATA, input=_authz_input(["admin"], "delete"))
case("authz_allow_only", {"authz/policy.rego": AUTHZ}, "provgraph/authz/allow", False,
     data=AUTHZ_DATA, input=_authz_input(["nobody"], "read"))
