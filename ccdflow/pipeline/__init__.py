"""The nightly pipeline: scan a raw folder, build masters, reduce science frames, report.

Work is split into picklable tasks (one per master group, one per science frame) that run
serially or on any Dask cluster; workers share the caldb through its URL.
"""
