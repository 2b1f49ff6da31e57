# VAULT_REMEDIATION_TOKEN: step the active Vault down before its master is disrupted
path "sys/step-down" {
  capabilities = ["update", "sudo"]
}
