# The Consul agents' default token (acl.tokens.default): Consul DNS answers with it, NXDOMAIN without it
node_prefix "" {
  policy = "read"
}
service_prefix "" {
  policy = "read"
}
