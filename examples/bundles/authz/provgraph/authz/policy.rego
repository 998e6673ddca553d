# provgraph authorization: RBAC from data.roles, ABAC (tenant match, restricted resources)
# and a dual-control obligation on hazardous actions. Rego v1.
#
# Entry point: data.provgraph.authz.decision, always defined (deny when the input is empty or
# malformed), shaped {"allow": bool, "reasons": [string], "obligations": [object]}.
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

resource := input.resource if {
	is_object(input.resource)
} else := {}

resource_type := resource.type if {
	is_string(resource.type)
} else := ""

attributes := resource.attributes if {
	is_object(resource.attributes)
} else := {}

request_context := input.context if {
	is_object(input.context)
} else := {}

actor := input.actor if {
	is_object(input.actor)
} else := {}

actor_roles contains role if {
	is_array(actor.roles)
	some role in actor.roles
	is_string(role)
}

# --- RBAC: a role grants a list of actions per resource type; "*" matches any type or action.

granting_roles contains role if {
	some role in actor_roles
	some granted_type, granted_actions in data.provgraph.authz.roles[role]
	granted_type in {resource_type, "*"}
	some granted in granted_actions
	granted in {action, "*"}
}

# --- ABAC: restricted resources need the "cleared" role or an allowed purpose.

restricted_resource if {
	attributes.classification in data.provgraph.authz.restricted.classifications
}

cleared if data.provgraph.authz.restricted.clearance_role in actor_roles

purpose_allowed if {
	request_context.purpose in data.provgraph.authz.restricted.allowed_purposes
}

# A resource of another tenant is never reachable, whatever the roles (admin included).
tenant_mismatch if {
	"tenant_id" in object.keys(attributes)
	attributes.tenant_id != tenant_id
}

# --- Reasons. The decision allows exactly when there is no deny reason.

deny_reasons contains "request has no action" if action == ""

deny_reasons contains "request has no resource type" if resource_type == ""

deny_reasons contains msg if {
	resource_type != ""
	not resource_type in data.provgraph.authz.resource_types
	msg := sprintf("unknown resource type %v", [resource_type])
}

deny_reasons contains msg if {
	action != ""
	count(granting_roles) == 0
	msg := sprintf("no role grants %s on %s", [action, resource_type])
}

deny_reasons contains msg if {
	tenant_mismatch
	msg := sprintf("resource belongs to tenant %v, not %v", [attributes.tenant_id, tenant_id])
}

deny_reasons contains "restricted resource requires clearance" if {
	restricted_resource
	not cleared
	not purpose_allowed
}

allow_reasons contains msg if {
	some role in granting_roles
	msg := sprintf("role %s grants %s on %s", [role, action, resource_type])
}

allow_reasons contains "restricted resource: actor is cleared" if {
	restricted_resource
	cleared
}

allow_reasons contains msg if {
	restricted_resource
	not cleared
	purpose_allowed
	msg := sprintf("restricted resource: purpose %s is allowed", [request_context.purpose])
}

default allow := false

allow if count(deny_reasons) == 0

# --- Obligations. Hazardous actions, when allowed, need dual control: the service holds
# the action until `required_approvers` (2) approvers OTHER than the requester have granted
# it; the requester's own approval never counts.

obligations contains {"type": "dual_control", "required_approvers": n} if {
	action in data.provgraph.authz.hazardous_actions
	n := data.provgraph.authz.dual_control.required_approvers
}

reasons := sort(deny_reasons) if {
	count(deny_reasons) > 0
} else := sort(allow_reasons)

# A denied request carries no obligations: there is nothing to approve.
obligation_list := [o | some o in obligations] if {
	allow
} else := []

decision := {
	"allow": allow,
	"reasons": reasons,
	"obligations": obligation_list,
}
