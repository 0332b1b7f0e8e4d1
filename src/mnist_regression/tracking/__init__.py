"""MLflow: the one way to open a session, what a run logs, the store and its
faults, the logged model, migration and a team server."""
