"""The HTTP side of the gateway: the auditor's session pages and JSON API (approvals join later).

Owns: HTTP routes, auditor authentication for them, and the HTML they render.
Never: writes to the session store, or shows anything from the store unescaped
(recorded SQL, identities and errors are attacker-controlled text).
"""
