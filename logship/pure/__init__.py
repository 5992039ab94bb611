"""Pure logic shared by the caller's side and the worker: no threads, no network, no disk.

Event schema and JSON writing, wire encodings, the spill's frame format,
UUIDv7, retry policy, options and spill encryption, each testable from
tables of cases.
"""
