import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if not (HERE / "gen" / "browserd" / "v1" / "sessions_pb2.py").exists():
    raise SystemExit("Python stubs missing: run examples/python/gen_stubs.sh first")
sys.path.insert(0, str(HERE / "gen"))
sys.path.insert(0, str(HERE))

from browserd_server import Browserd  # noqa: E402


@pytest.fixture
def browserd():
    """A fresh browserd (own temp data dir, SQLite) for one test."""
    server = Browserd()
    try:
        yield server
    finally:
        server.cleanup()
