import os
import sys

# Lets the tests import the stand-ins in arbiter_harness.py (also run as a script).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
