"""The spill: every file logship writes in a spill folder, and only this package touches them.

- ``store``: one handler's spill files: append sealed batches, claim and
  replay (its own and those of dead processes), acknowledge, release. It
  counts nothing itself: what the accounting must hear of comes back as
  ``SpillNews``.
- ``folder``: names, owners and their liveness, listing, frames read back.
- ``region``: the segments of ``durability="crash"`` (mapped files the
  application's threads write to): made, marked, deleted, released, read
  back; claimed through ``store``, like spill files.
- ``deadletters``: batches the server rejected for good, capped and rotated.
- ``safefiles``: opening a folder and its files without following links or
  blocking, and the folder lock (``filelock``).

What only ``logship spill`` reads (summaries, dead letters, purging) is in
``logship.cli.spillinspect``.
"""
