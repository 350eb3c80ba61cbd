# What OPA erases from its own decision log before writing it (decision_logs.mask_decision).
#
# The gateway sends the full libpg_query AST of every statement; pgwarden's own log leaves it out
# (audit.record_ast: false) because it can be re-derived from statement.text, and OPA's log does
# the same. Token claims can hold a person's e-mail address and name: the subject and groups
# identify the client well enough in a log that is shipped off the host.
package system.log

import rego.v1

mask contains "/input/statement/ast"

mask contains "/input/identity/claims"
