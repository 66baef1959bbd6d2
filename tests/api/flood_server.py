"""A node API in its own process for the flood test: the embedded network of four
validators behind the production server settings (``api.limits.make_server``).

Usage: python -m tests.api.flood_server PORT DATA_DIR REQUEST_TIMEOUT_S [unguarded]
("unguarded": uvicorn's defaults, for the test that removes the defence)
"""

from __future__ import annotations

import sys
from pathlib import Path

from gridledger.api import create_app
from gridledger.api.limits import make_server
from gridledger.node.embedded import EmbeddedNetwork
from gridledger.node.service import EmbeddedService
from tests.conftest import make_chain


def main() -> None:
    port, data, timeout_s = int(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    chain = make_chain()
    net = EmbeddedNetwork(chain.genesis, chain.validators, data)
    svc = EmbeddedService(net)
    svc.submit(chain.transfer(0, 1, 5))
    svc.tick(900)
    if sys.argv[4:] == ["unguarded"]:
        import uvicorn

        server = uvicorn.Server(uvicorn.Config(create_app(svc), host="127.0.0.1", port=port,
                                               log_level="warning", lifespan="off"))
    else:
        server = make_server(create_app(svc), "127.0.0.1", port, request_timeout_s=timeout_s)
    server.run()


if __name__ == "__main__":
    main()
