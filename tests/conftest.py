import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))



def pytest_collection_modifyitems(config, items):
    """The tests of an xdist group (Swarm, each proxy) run one after another on one worker: they are the longest
    chains of the parallel phase, so they are handed out first, and the other tests fill the other workers around
    them (collected last, a group ended minutes after the rest). The order within a group is kept."""
    items.sort(key=lambda item: item.get_closest_marker("xdist_group") is None)
