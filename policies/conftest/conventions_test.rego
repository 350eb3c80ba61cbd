package conventions_test

import rego.v1

test_production_names if {
	every name in ["prod", "shop-prod", "PROD_EU", "production.orders", "eu.prod.internal"] {
		data.conventions.production(name)
	}
}

test_names_that_merely_contain_prod_are_not_production if {
	every name in ["products", "reprod", "demo", "staging", "", "prd"] {
		not data.conventions.production(name)
	}
	not data.conventions.production(42)
}

test_shared_store if {
	data.conventions.shared_store("postgresql://pgwarden@db/audit")
	data.conventions.shared_store("postgres://pgwarden@db/audit")
	not data.conventions.shared_store("/var/lib/pgwarden/approvals.sqlite")
	not data.conventions.shared_store("sqlite:approvals.sqlite")
	not data.conventions.shared_store(null)
}

test_url_with_password if {
	data.conventions.url_with_password("postgresql://pgwarden:s3cret@db/audit")
	not data.conventions.url_with_password("postgresql://pgwarden@db/audit")
	not data.conventions.url_with_password("postgresql://db/audit?user=a:b")
}
