"""One cell, from source to ``StepRun``: its spec, analysis, key, effects, capture and the runner.

Pure modules over values, except ``runner``, which drives the shell.
"""

# A cell whose source has none of these words seeds no generator, so no analysis is needed to know it. Here, in
# the package, because the extension's light hook asks it before the effects (and the analysis) are loaded.
SEEDING_WORDS = ("seed", "setstate", "set_state")
