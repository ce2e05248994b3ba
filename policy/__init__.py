"""Policy: tokens, the role matrix, the workspace guard, the audit log (and, later, rate and loop controls)."""
