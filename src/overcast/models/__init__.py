"""Pure domain: entities, transition tables, errors. Imports nothing else of Overcast."""
