"""One cell, from source to ``StepRun``: its spec, analysis, key, effects, capture and the runner.

Pure modules over values, except ``runner``, which drives the shell.
"""
