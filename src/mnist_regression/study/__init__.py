"""The study: our runs against the 2019 course study, the report and its figures,
and the check of a rebuilt study against the committed one."""
