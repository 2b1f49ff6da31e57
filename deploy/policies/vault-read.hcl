# VAULT_TOKEN: what cluster.vault.ha reads (vault policy write alice-acceptance-read vault-read.hcl)
path "sys/ha-status" {
  capabilities = ["read"]
}
