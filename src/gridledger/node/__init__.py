"""Everything with I/O: stores, orderers, admission, validators, networks, HTTP."""
