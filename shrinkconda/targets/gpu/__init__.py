"""Device code and libraries for GPUs: ``--target-gpu`` removes the cubins and PTX a
target GPU never runs from the libraries whose licence allows it.

:mod:`archs` reads the target, :mod:`fatbin` parses device code, :mod:`rewrite` writes a
library without what the target does not run.
"""
