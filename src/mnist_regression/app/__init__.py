"""The training application: one configured run, one job of the Hydra app, a
multirun's guard and parent run, and the job folders they write."""
