"""The demo's default mode, in a module light enough for the command line to import."""

from __future__ import annotations

DEMO_PRIVACY = False
"""Whether ``gridledger demo`` runs in privacy mode unless told ``--privacy on|off`` (issue 19).
Not yet: under privacy mode an honest day (``--attacks none``) still gives 2 surveillance
findings against honest pseudonyms, and the trustees then open those households' identities
(a privacy harm the default must not carry), and the day costs about 2× clear mode's CPU
(verify-chain ~3.7×). ``--privacy on`` runs it (docs/demo.md, "Privacy mode");
``Scenario``'s own default is clear mode too: a test names the mode it measures."""
