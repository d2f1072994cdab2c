"""A supervisor over three small children, for the supervisor test:

    python -m tests.scenarios.supervised_probe PIDFILE_DIR

- `steady` prints a line and sleeps; it also forks a grandchild in its own group (like RQ's scheduler);
- `crashy` prints and exits 3 at once, so it is restarted;
- `stubborn` ignores SIGTERM, so it must be killed after its grace period.
"""

from __future__ import annotations

import signal
import sys

from forecaster.supervisor import Child, Supervisor

STEADY = """
import os, sys, time, subprocess
d = sys.argv[1]
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
open(os.path.join(d, "steady.pid"), "w").write(f"{os.getpid()} {grandchild.pid}")
print("steady up", flush=True)
time.sleep(600)
"""
CRASHY = "import sys; print('crashy says goodbye', flush=True); sys.exit(3)"
STUBBORN = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(os.path.join(sys.argv[1], "stubborn.pid"), "w").write(str(os.getpid()))
print("stubborn up", flush=True)
time.sleep(600)
"""

if __name__ == "__main__":
    folder = sys.argv[1]
    supervisor = Supervisor([
        Child("steady", [sys.executable, "-c", STEADY, folder], stop_grace_s=5),
        Child("crashy", [sys.executable, "-c", CRASHY], stop_grace_s=5),
        Child("stubborn", [sys.executable, "-c", STUBBORN, folder], stop_grace_s=1),
    ])
    signal.signal(signal.SIGINT, supervisor.request_stop)
    sys.exit(supervisor.run())
