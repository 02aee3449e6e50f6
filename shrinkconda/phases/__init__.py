"""The phases that rewrite files after the strategies chose what goes: strip (with the
ELF reader it needs) and dedup, each predicted by an audit and made by a shrink."""
