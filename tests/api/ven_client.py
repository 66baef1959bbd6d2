"""A VEN built on the PyPI package ``openadr3-client`` (ElaadNL), run under Python >= 3.12 by
``tests/api/test_openadr_ven.py``. It imports nothing of GridLedger.

Usage: python ven_client.py BASE_URL CLIENT_ID SECRET events
       python ven_client.py BASE_URL CLIENT_ID SECRET report EVENT_ID INTERVAL_ID VALUE_WH
       python ven_client.py BASE_URL CLIENT_ID SECRET subscribe CALLBACK_URL BEARER_TOKEN
Prints one JSON object on stdout; an HTTP error prints {"status", "body"} and exits 3.
"""

from __future__ import annotations

import json
import os
import sys

# oauthlib refuses http token URLs unless told (the test VTN listens on loopback http)
os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")
os.environ.setdefault("OAUTHLIB_RELAX_TOKEN_SCOPE", "1")

from openadr3_client._models.common.interval import Interval
from openadr3_client.oadr301.models.report.report import NewReport, ReportResource
from openadr3_client.oadr301.models.report.report_payload import (
    ReportPayload,
    ReportPayloadType,
)
from openadr3_client.oadr301.models.subscriptions.subscription import (
    NewSubscription,
    Object,
    ObjectOperation,
    Operation,
)
from openadr3_client.ven.http_factory import VirtualEndNodeHttpClientFactory
from openadr3_client.version import OADRVersion
from requests import HTTPError


def main() -> int:
    base, client_id, secret, action, *rest = sys.argv[1:]
    ven = VirtualEndNodeHttpClientFactory.create_http_ven_client(
        vtn_base_url=base, client_id=client_id, client_secret=secret,
        token_url=f"{base}/auth/token", allow_insecure_http=True,
        version=OADRVersion.OADR_301)
    try:
        if action == "events":
            programs = ven.programs.get_programs(target=None, pagination=None)
            events = ven.events.get_events(target=None, pagination=None, program_id=None)
            reports = ven.reports.get_reports(pagination=None, program_id=None, event_id=None,
                                              client_name=None)
            out = {"programs": [p.model_dump(mode="json", by_alias=True) for p in programs],
                   "events": [e.model_dump(mode="json", by_alias=True) for e in events],
                   "reports": [r.model_dump(mode="json", by_alias=True) for r in reports]}
        elif action == "report":
            event_id, interval_id, value = rest[0], int(rest[1]), int(rest[2])
            event = ven.events.get_event_by_id(event_id)
            report = NewReport(
                program_id=event.program_id, event_id=event.id, client_name=client_id,
                report_name="delivery", resources=(ReportResource(
                    resource_name="heat-pump", interval_period=event.interval_period,
                    intervals=(Interval[ReportPayload](id=interval_id, payloads=(
                        ReportPayload(type=ReportPayloadType.DELTA_USAGE, values=(value,)),)),)),))
            created = ven.reports.create_report(report)
            out = {"report": created.model_dump(mode="json", by_alias=True)}
        elif action == "subscribe":
            callback, token = rest[0], rest[1]
            (program,) = ven.programs.get_programs(target=None, pagination=None)
            created = ven.subscriptions.create_subscription(NewSubscription(
                client_name=client_id, program_id=program.id, object_operations=(ObjectOperation(
                    objects=(Object.EVENT, Object.REPORT), operations=(Operation.POST,),
                    callback_url=callback, bearer_token=token),)))
            subs = ven.subscriptions.get_subscriptions(pagination=None, target=None,
                                                       program_id=program.id,
                                                       client_name=client_id, objects=None)
            vens = ven.vens.get_vens(ven_name=client_id, target=None, pagination=None)
            out = {"subscription": created.model_dump(mode="json", by_alias=True),
                   "subscriptions": [x.model_dump(mode="json", by_alias=True) for x in subs],
                   "vens": [v.model_dump(mode="json", by_alias=True) for v in vens]}
        else:
            raise SystemExit(f"unknown action {action}")
    except HTTPError as exc:
        print(json.dumps({"status": exc.response.status_code, "body": exc.response.json()}))
        return 3
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
