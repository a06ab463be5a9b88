"""The health manager: compares desired with actual state and restarts, re-places and stops
instances to make them meet (DESIGN.md section 7). `converge` is its pure planner; `restarts`
holds the crash restart policy."""
