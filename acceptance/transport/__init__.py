"""How the suite reaches the nodes: ping, one ssh master connection per node, batched testinfra commands."""
