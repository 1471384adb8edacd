"""The driver's MLflow side of a search: Tune callbacks, what a trial's run holds (shared with
sync), the tracking queue, restarted trials' records, and uploads that never change a record.

Within search, may import search.faults and search.space.
"""
