import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# The engine test files with the longest runs (summed, measured), longest first: the parallel phase of
# scripts/test.sh hands tests to its workers in collection order, so these go first and the short ones fill the gaps
# at the end, instead of one long test starting last on a worker while the others idle. The Swarm tests are one
# chain on one worker. Order only: each test still has its own project.
LONGEST_FIRST = ["test_swarm.py", "test_proxy_nginx.py", "test_proxy_haproxy.py", "test_release.py",
                 "test_interruptions.py", "test_zero_downtime.py", "test_recovery.py", "test_safety.py",
                 "test_setups.py"]


def pytest_collection_modifyitems(session, config, items):
    def weight(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST) + ("unit" in item.path.parts)

    items.sort(key=weight)  # stable: within a file, the file's own order
