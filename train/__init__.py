"""Offline training: a CHIMERA-layout cohort → honest validation, reports and the bundles the container loads."""
