"""App-aware shrinking (``--used-by``): :mod:`.trace` runs the user's workloads under a
trace and learns what they used; :mod:`.used_by` turns that into the selection the plan
honours, and into the modules verification must import again."""
