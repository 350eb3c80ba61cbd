package system.log_test

import rego.v1

test_ast_and_claims_are_erased if {
	data.system.log.mask == {"/input/statement/ast", "/input/identity/claims"}
}
