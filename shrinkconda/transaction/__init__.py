"""A shrink as one transaction, and everything that keeps it one: :mod:`.preflight`
checks permissions and room before anything changes, :mod:`.journal` stages, commits,
rolls back and recovers, :mod:`.faults` turns a failing filesystem into a rollback and
one line, :mod:`.interrupt` does the same for signals, :mod:`.testhooks` lets tests stop
or fill the disk at named points."""
