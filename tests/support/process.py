"""Commands run in a child process, for the tests whose subject is the process boundary itself (what
`python -m ...` prints and exits with)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence


class BackgroundCommand:
    """A command started now and awaited later. The suite runs torch on one thread, so a child started
    by a module-scoped fixture does its seconds of imports on the second core while the module's other
    tests run; the test that checks it waits for it with `result()`."""

    def __init__(self, args: Sequence[str], timeout: float = 120, **popen) -> None:
        self.args, self.timeout = list(args), timeout
        self.process = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        **popen)
        self._result: subprocess.CompletedProcess | None = None

    def result(self) -> subprocess.CompletedProcess:
        if self._result is None:
            try:
                out, err = self.process.communicate(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.communicate()
                raise
            self._result = subprocess.CompletedProcess(self.args, self.process.returncode, out, err)
        return self._result

    def stop(self) -> None:
        """End the child if no test waited for it (a deselected test, an interrupted run)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()
