"""Policy: the input document, the Rego engines, decisions and the policy test runner."""
