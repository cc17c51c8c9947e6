"""The review console: pages under ``/review`` where people decide the ``review`` queue, its
accounts, statistics, the export of reviewers' labels and the replay of a new policy."""
