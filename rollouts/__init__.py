"""Releases and rollouts: applications, releases rendered per site, rollout plans and their runs."""
