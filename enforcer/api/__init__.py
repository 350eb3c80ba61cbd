"""The HTTP side of the gateway: recorded sessions for auditors, held statements for approvers.

Owns: HTTP routes, who may use each of them, the HTML they render, and the terminal client
of the approvals API (``pgwarden approvals``).
Never: writes to the session store, decides an approval without the approval service's
checks, or shows anything from a store unescaped (recorded and held SQL, identities,
reasons and errors are attacker-controlled text).
"""
