# CONSUL_REMEDIATION_TOKEN: the remediation lock and state, and leadership transfers
session_prefix "" {
  policy = "write"
}
key_prefix "alice-acceptance/" {
  policy = "write"
}
operator = "write"
