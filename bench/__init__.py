"""Benchmark of the image pipeline against a naive Pillow baseline and the codec floor (issue 7).

`python -m bench` measures; `python -m bench.settings` sweeps encoder settings to choose them.
"""
