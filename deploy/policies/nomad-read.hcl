# NOMAD_TOKEN: what the checks read (nomad acl policy apply alice-acceptance-read nomad-read.hcl)
namespace "default" {
  capabilities = ["list-jobs", "read-job"]
}
node {
  policy = "read"
}
operator {
  policy = "read"
}
