# Allows everything. Used by the wire-fidelity tests, which check that the proxy is
# transparent; the shipped policies in policies/rego are tested on their own.
package pgwarden

import rego.v1

decision := {
	"action": "allow",
	"reasons": ["allow-all test policy"],
	"masks": [],
	"review": null,
}
