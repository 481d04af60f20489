"""Serving a human-subject study to raters, torch-free: the answer store (SQLite), the
server and its page, the load generator and the statistics of the analysis.

Kept apart from :mod:`underfire.studies.human` (which builds the stimuli with torch) so that
``underfire study serve`` and ``simulate`` start in a fraction of a second: a server restarted
after a crash is back before the raters' retries give up.
"""
