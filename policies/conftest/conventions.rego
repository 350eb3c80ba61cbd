# Conventions the configuration checks share: what counts as production, what is a shared store.
#
# A connection is *production* when its name has a word "prod" or "production", words
# being what is left between characters other than letters and digits, case-insensitive:
# prod, shop-prod, PROD_EU, production.orders are; products, reprod, demo are not. The policy
# data (data.json) knows connections by name only, so name production connections this way;
# main.warn flags a connection whose host says production but whose name does not.
package conventions

import rego.v1

production_words := {"prod", "production"}

words(s) := {w | some w in regex.split(`[^a-z0-9]+`, lower(s)); w != ""}

production(name) if {
	is_string(name)
	some w in words(name)
	w in production_words
}

# A store shared by several gateway instances: a postgresql:// URL (SQLite files are per host).
shared_store(url) if {
	is_string(url)
	startswith(url, "postgresql://")
}

shared_store(url) if {
	is_string(url)
	startswith(url, "postgres://")
}

# user:password@ in a connection URL.
url_with_password(url) if {
	is_string(url)
	regex.match(`^[a-z]+://[^/@]*:[^/@]*@`, url)
}
