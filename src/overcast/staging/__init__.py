"""Staging: turning app source into droplets, and the droplet archive format they share with
cells (DESIGN.md section 9)."""
