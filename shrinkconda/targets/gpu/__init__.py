"""GPU device code and the libraries a GPU host loads.

:mod:`families` and :mod:`ondemand` keep, under ``--used-by``, the libraries a GPU host
loads on demand that a trace on a CPU-only builder never sees. ``--target-gpu`` removes
the cubins and PTX a target GPU never runs from the libraries whose licence allows it:
:mod:`archs` reads the target, :mod:`fatbin` parses device code, :mod:`rewrite` writes a
library without what the target does not run, :mod:`wholefiles` removes files only other
GPUs load.
"""
