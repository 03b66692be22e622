"""The image pipeline's policy pack: rules in `rules`, the CLI entry in `__main__`, a CLI-free runner in `harness`."""
