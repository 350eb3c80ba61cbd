"""Records of what the gateway decided and did."""
