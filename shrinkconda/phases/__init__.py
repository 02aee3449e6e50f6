"""The phases that rewrite files after the strategies chose what goes: the code's form
(:mod:`bytecode`), :mod:`strip` (with the :mod:`elf` reader it needs) and :mod:`dedup`.
Each has the one shape of :class:`base.Phase`: predicted by an audit, made in staging
by a shrink."""
