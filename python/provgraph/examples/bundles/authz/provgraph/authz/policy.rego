# provgraph authorization: RBAC from data.roles, ABAC (tenant match, restricted resources)
# and a dual-control obligation on hazardous actions. Rego v1.
#
# Entry point: data.provgraph.authz.decision, always defined (deny when the input is empty or
# malformed), shaped {"allow": bool, "reasons": [string], "obligations": [object]}.
#
# Written for evaluation speed: the decision is computed in one rule body over local
# variables. In the evaluator, every reference to another rule or to a `data.` path costs a
# path resolution, so each is referenced once and bound to a local; grants are looked up by
# key (`roles[role][type]`) instead of iterating every type and action a role has.
package provgraph.authz

import rego.v1

# --- Input, normalized. Every field falls back to a neutral value, so that a missing or
# mistyped field leads to a deny with a reason instead of an undefined decision.

action := input.action if {
	is_string(input.action)
} else := ""

tenant_id := input.tenant_id if {
	is_string(input.tenant_id)
} else := null

resource_type := input.resource.type if {
	is_object(input.resource)
	is_string(input.resource.type)
} else := ""

attributes := input.resource.attributes if {
	is_object(input.resource)
	is_object(input.resource.attributes)
} else := {}

purpose := input.context.purpose if {
	is_object(input.context)
} else := null

actor_roles := {role | some role in input.actor.roles; is_string(role)} if {
	is_object(input.actor)
	is_array(input.actor.roles)
} else := set()

# --- The decision. `allow` is true exactly when there is no deny reason; `reasons` are the
# deny reasons when denied, else the grant reasons (sorted); a denied request carries no
# obligations: there is nothing to approve.

decision := {"allow": allowed, "reasons": sort(deny | grant), "obligations": obligations} if {
	roles_data := data.provgraph.authz.roles
	restriction := data.provgraph.authz.restricted
	act := action
	typ := resource_type
	attrs := attributes
	roles := actor_roles
	tid := tenant_id

	# RBAC: roles[role][type] lists the actions a role grants on a type; "*" matches any
	# type or action.
	granting := {role |
		some role in roles
		grants := roles_data[role]
		some t in [typ, "*"]
		some a in [act, "*"]
		a in grants[t]
	}

	# ABAC: restricted resources need the clearance role or an allowed purpose.
	restricted := object.get(attrs, "classification", null) in restriction.classifications
	cleared := restriction.clearance_role in roles
	purpose_ok := purpose in restriction.allowed_purposes

	deny := {m | act == ""; m := "request has no action"} |
		{m | typ == ""; m := "request has no resource type"} |
		{m |
			typ != ""
			not typ in data.provgraph.authz.resource_types
			m := sprintf("unknown resource type %v", [typ])
		} |
		{m |
			act != ""
			count(granting) == 0
			m := concat("", ["no role grants ", act, " on ", typ])
		} |
		# A resource of another tenant is never reachable, whatever the roles (admin included).
		{m |
			object.get(attrs, "tenant_id", tid) != tid
			m := sprintf("resource belongs to tenant %v, not %v", [attrs.tenant_id, tid])
		} |
		{m | restricted; not cleared; not purpose_ok; m := "restricted resource requires clearance"}

	allowed := count(deny) == 0

	grant := {m | allowed; some role in granting; m := concat("", ["role ", role, " grants ", act, " on ", typ])} |
		{m | allowed; restricted; cleared; m := "restricted resource: actor is cleared"} |
		{m |
			allowed
			restricted
			not cleared
			purpose_ok
			m := concat("", ["restricted resource: purpose ", purpose, " is allowed"])
		}

	# Dual control: an allowed hazardous action is held until `required_approvers` (2)
	# approvers OTHER than the requester have granted it; the requester's own approval never
	# counts.
	obligations := [o |
		allowed
		act in data.provgraph.authz.hazardous_actions
		o := {"type": "dual_control", "required_approvers": data.provgraph.authz.dual_control.required_approvers}
	]
}

# Parts of the decision, for Data API clients that ask for them alone.
allow := decision.allow

reasons := decision.reasons
