# CONSUL_HTTP_TOKEN: what the checks read (consul acl policy create -name alice-acceptance-read -rules @consul-read.hcl)
node_prefix "" {
  policy = "read"
}
service_prefix "" {
  policy = "read"
}
operator = "read"
