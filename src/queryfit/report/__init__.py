"""The report stage: per-query details, the one-file HTML report and its SVG plots."""
