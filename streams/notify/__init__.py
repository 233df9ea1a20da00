"""First-response notifications: one chat message per incident, kept current as decisions and outcomes come in."""
