"""The demo's default mode, in a module light enough for the command line to import."""

from __future__ import annotations

DEMO_PRIVACY = False
"""Whether ``gridledger demo`` runs in privacy mode unless told ``--privacy on|off`` (issue 19).
Not yet: the day costs about 2× clear mode's CPU (verify-chain ~3.7×; the bound is 1.5×).
Its honest day (``--attacks none``), which once gave 2 false surveillance findings that
opened 2 honest households' identities, is clean since 2026-11-30 (every detection 0).
``--privacy on`` runs it (docs/demo.md, "Privacy mode"); ``Scenario``'s own default is
clear mode too: a test names the mode it measures."""
