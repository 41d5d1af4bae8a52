import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if not (HERE / "gen" / "browserd" / "v1" / "sessions_pb2.py").exists():
    raise SystemExit("Python stubs missing: run examples/python/gen_stubs.sh first")
sys.path.insert(0, str(HERE / "gen"))
sys.path.insert(0, str(HERE))

from browserd_server import Browserd  # noqa: E402

# Every test starts its own browserd, which knows only the keys the test
# makes: a key from the caller's environment would be refused by all of them.
os.environ.pop("BROWSERD_API_KEY", None)


@pytest.fixture
def browserd():
    """A fresh browserd (own temp data dir, SQLite) for one test."""
    server = Browserd()
    try:
        yield server
    finally:
        server.cleanup()
