"""The demo's default mode, in a module light enough for the command line to import."""

from __future__ import annotations

DEMO_PRIVACY = True
"""Whether ``gridledger demo`` runs in privacy mode unless told ``--privacy on|off`` (issue 19):
households trade, meter, settle, offer flexibility and earn certificates under per-slot
pseudonyms; ``--privacy off`` runs the same day in clear mode for comparison (there the
two passive privacy scenarios report the leak). ``Scenario``'s own default stays clear
mode: a test names the mode it measures."""
