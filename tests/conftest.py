import sys
from pathlib import Path

# Test helpers (audiocheck, vconcheck, conserver, scripted) import as top-level modules.
sys.path.insert(0, str(Path(__file__).resolve().parent))
