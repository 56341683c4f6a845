"""Prefect tasks: each takes a batch of items (paths and ids) and returns one
result row per item, recording an item's failure in its row instead of raising,
so one bad video never stops a batch. The algorithms live in ``motionmasks``.
"""
