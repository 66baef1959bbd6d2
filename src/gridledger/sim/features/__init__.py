"""The demo's features, in the order the engine calls them each phase.

To add a feature: write one module here with a ``Feature`` subclass (``sim.feature``) that
overrides the phases it takes part in, and add its class to ``FEATURES``. The order fixes
the order in which transactions are signed and submitted within a block, so a new feature
usually goes at the end. See docs/demo.md, "Extending the demo".
"""

from __future__ import annotations

from gridledger.sim.feature import Feature
from gridledger.sim.features.aggregation import SecureAggregation
from gridledger.sim.features.certificates import Certificates
from gridledger.sim.features.dashboard import LiveDashboard
from gridledger.sim.features.delivery import Delivery
from gridledger.sim.features.dso import DsoGrid
from gridledger.sim.features.firmware import FirmwareFleet
from gridledger.sim.features.flexibility import Flexibility
from gridledger.sim.features.governance import Governance
from gridledger.sim.features.grid_fees import GridFees
from gridledger.sim.features.metering import Metering
from gridledger.sim.features.onboarding import Onboarding
from gridledger.sim.features.privacy import PrivacyMode
from gridledger.sim.features.publication import DsoPublication
from gridledger.sim.features.surveillance import Surveillance
from gridledger.sim.features.trading import Trading

# PrivacyMode first: it fills the first epoch's pool before the first slot and installs the
# pseudonym identities the others sign with; LiveDashboard last (it only publishes blocks)
FEATURES: tuple[type[Feature], ...] = (PrivacyMode, DsoGrid, Trading, Delivery, Metering,
                                       SecureAggregation, FirmwareFleet, Governance, GridFees,
                                       Certificates, Surveillance, Onboarding, Flexibility,
                                       DsoPublication, LiveDashboard)

__all__ = ["FEATURES", "Certificates", "Delivery", "DsoGrid", "DsoPublication", "FirmwareFleet",
           "Flexibility", "Governance", "GridFees", "LiveDashboard", "Metering", "Onboarding",
           "PrivacyMode", "SecureAggregation", "Surveillance", "Trading"]
