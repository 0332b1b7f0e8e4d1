"""The study: our runs against the 2019 course study, the report and its figures,
and the comparison of a rebuilt study with the committed one."""
