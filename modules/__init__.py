"""Apply time: the reconcilers terraform runs, each `python -m modules.<name> apply|destroy --spec FILE`."""
